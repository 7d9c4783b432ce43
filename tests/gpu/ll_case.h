/*************************************************************************
 * epcomm GPU suites (LL): the LL communicator, device buffers, one
 * dispatch + combine "case" and its host reference checks.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every rank regenerates every rank's routing (tests/common/routing.h), token
 * rows and expert outputs from the seed, so each rank predicts on the host,
 * with no exchange, exactly what it must receive:
 *  - dispatch rows bitwise (FP8: the same quantisation -- amax clamped at
 *    1e-4, scale = amax/448 or its power-of-two ceiling, e4m3 RNE satfinite),
 *    scales bitwise, counts, (begin, count) ranges, source info, weights;
 *  - combine against a float64 sum with the stated tolerance
 *    |got - ref| <= 2^-7 * sum_k |w_k * y_k| + 1e-6 per element (BF16 output
 *    rounding is 2^-9 of that sum; sender-side reduction adds one BF16
 *    rounding of each partial sum, another 2^-9: 2^-7 leaves a 2x margin).
 * Outputs are poisoned (0xFF: NaN in BF16 and e4m3) before each call, and
 * the expert-output rows the combine must NOT read hold NaN too.
 *************************************************************************/
#ifndef EP_TESTS_GPU_LL_CASE_H_
#define EP_TESTS_GPU_LL_CASE_H_

#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "epcomm.h"
#include "tests/common/dev_buffer.h"
#include "tests/common/routing.h"
#include "tests/common/world.h" /* epTestErrText, epTestNoGpuReason */

#define EP_LL_TEST_M 128
#define EP_LL_TEST_H 7168
#define EP_LL_TEST_E 256
#define EP_LL_TEST_K 16

struct LlEnv {
  bool initialised = false;
  std::string skipReason, initError;
  epTestWorld world;
  int rank = 0, nranks = 1;
  epComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  epLlHandle_t handle = nullptr;
  // Device buffers sized for the largest case.
  epTestDevBuf x, topk, weights, recvX, recvScales, recvCount, range, srcInfo, recvW, cumStats, y, out;
};

/* The LL communicator (collective on first use). */
LlEnv& llEnv();
/* A second LL comm with a short timeout (fault tests). Collective. */
epComm_t llFaultComm(int timeoutMs, std::string* error);
void llResetFaultComm();

#define EP_LL_REQUIRE_GPU()                                        \
  do {                                                             \
    LlEnv& env_ = llEnv();                                         \
    if (!env_.skipReason.empty()) GTEST_SKIP() << env_.skipReason; \
    if (!env_.initError.empty()) FAIL() << env_.initError;         \
  } while (0)

struct LlCase {
  epTestRoutingSpec routing;  // numTokens, numTopk, numExperts, kind, maskRate, zeroTokenRank, seed
  int hidden = 7168;
  int fp8 = 1, roundScale = 0, ue8m0 = 0;
  epLlScaleLayout_t scaleLayout = epLlScalesMnMajor;
  int dedup = 1;
  int hook = 0;
  int reduce = 0;
  int zeroCopy = 0;
  int int32Idx = 0;
  int numSms = 0;
  int withWeights = 1;        // pass topkWeights to the dispatch
  std::vector<std::pair<int, int>> badIds;  // (token, slot) set to an out-of-range id on every rank
  std::string name() const;
};

/* Host side of a case on this rank: every rank's routing and the layout. */
struct LlPlan {
  LlCase c;
  int R = 1, L = 1, M = 0, RM = 0;
  std::vector<epTestRouting> routing;        // [R], ids with badIds applied
  std::vector<std::vector<int>> j;           // [R][T*K]: rank of the token among its source's tokens of that expert
  std::vector<std::vector<int>> cnt;         // [R][E]: tokens of source s per expert
  int rowOf(int d, int e, int s, int t, int k) const;  // row of (s, t, pick k) in expert e (on rank d = e / L)
};
LlPlan llMakePlan(const LlCase& c, int nranks);

/* Deterministic inputs. */
void llTokenRow(uint64_t seed, int rank, int t, int H, uint16_t* row);   // BF16
uint16_t llExpertOut(uint64_t seed, int rank, int le, int row, int h);   // BF16

/* Runs dispatch (+ recv for hooks) of the case on env's comm, checks it, then
 * combine, checks it. Adds gtest failures; returns false on any failure. */
bool llRunCase(LlEnv& env, const LlCase& c, bool doCombine = true);

/* Pieces, for tests that drive the calls themselves (hooks, graphs). */
bool llUploadInputs(LlEnv& env, const LlPlan& plan);
bool llPoisonOutputs(LlEnv& env);
void llFillDispatchArgs(LlEnv& env, const LlPlan& plan, epLlDispatchInput_t* in, epLlDispatchOutput_t* out);
bool llCheckDispatch(LlEnv& env, const LlPlan& plan);
bool llUploadExpertOutputs(LlEnv& env, const LlPlan& plan, void* dst);
void llFillCombineArgs(LlEnv& env, const LlPlan& plan, epLlCombineInput_t* in, epLlCombineOutput_t* out);
bool llCheckCombine(LlEnv& env, const LlPlan& plan, const void* devOut);

#endif  // EP_TESTS_GPU_LL_CASE_H_
