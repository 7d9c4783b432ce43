/*************************************************************************
 * epcomm GPU suites: one HT round trip (layout, notify, dispatch, combine)
 * on the host-checked path, parameterised by HtCase.
 * SPDX-License-Identifier: Apache-2.0
 *
 * htRunCase() on every rank, collectively:
 *  1. builds every rank's routing and its own rows (deterministic, no data
 *     exchange), uploads them;
 *  2. epGetDispatchLayout -> compared with the host layout;
 *  3. notify + dispatch in the case's sizing mode, outputs poisoned before
 *     the call and followed by a guard region that must stay untouched ->
 *     rows, scales, local top-k ids, weights, source indices and per-expert
 *     counts compared BITWISE with the host reference; mode c then re-sends
 *     new rows with the cached handle and checks again;
 *  4. combine of rows each rank derives from (its rank, source rank, source
 *     token) -> compared with the float64 sum within epTestCombineTolerance,
 *     and the combined top-k weights bitwise;
 *  5. epCommGetAsyncError must stay epSuccess throughout.
 * With `direct`, the dispatch outputs and the combine input are registered
 * first (every rank, same order), and the calls must take the direct path
 * (checked), with the same results bit for bit.
 *************************************************************************/
#ifndef EP_TESTS_GPU_HT_CASE_H_
#define EP_TESTS_GPU_HT_CASE_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "epcomm.h"
#include "tests/common/routing.h"

struct HtCase {
  std::string name;
  int numTokens = 512;
  int hidden = 7168;
  int numTopk = 8;
  int numExperts = 256;  /* rounded up to a multiple of the ranks */
  epTestRoutingKind routing = epTestRoutingKind::Uniform;
  double zipfAlpha = 1.2;
  double maskRate = 0.05;
  int zeroTokenRank = -1;  /* -1: none, -2: the last rank */
  epDataType_t xType = epBfloat16;
  epScaleFormat_t scaleFormat = epScaleNone;
  bool scalesColMajor = false; /* FP8 scales with strides (1, T) like DeepEP's */
  char mode = 'a';             /* sizing mode a, b or c */
  bool int32Idx = false;
  bool withTopk = true;        /* top-k weights in, recv ids/weights out, combined weights */
  bool withSrcIdx = true;
  bool withLayout = false;     /* pass the layout from epGetDispatchLayout to dispatch */
  bool bias = false;
  int alignment = 1;
  int numSms = 0;
  bool direct = false;         /* outputs and combine input registered (epCommRegister): direct path */
  uint64_t seed = 20261122;
};

void PrintTo(const HtCase& c, std::ostream* os);

/* Runs the case with gtest assertions (call from a TEST body). */
void htRunCase(const HtCase& c);

// The HT path a call should have taken: 1 direct (registered buffers), 0 ring.
// A communicator that spans nodes (real or EP_EMULATE_NODES) runs the
// internode path, which has no intranode HT call at all: -1 there.
int htExpectedPath(epComm_t comm, int wantDirect);

/* Case builders shared by the intranode and internode suites. */
inline HtCase htCaseBase(const char* name, int T, int H) {
  HtCase c;
  c.name = name;
  c.numTokens = T;
  c.hidden = H;
  return c;
}
inline HtCase htCaseFp8(HtCase c, epScaleFormat_t f = epScaleFloat32) {
  c.xType = epFloat8E4M3;
  c.scaleFormat = f;
  return c;
}
inline HtCase htCaseDirect(HtCase c) {
  c.direct = true;
  c.name += "_direct";
  return c;
}
inline HtCase htCaseMode(HtCase c, char m) {
  c.mode = m;
  return c;
}

#endif  // EP_TESTS_GPU_HT_CASE_H_
