/*************************************************************************
 * epcomm tests: compare HT outputs (copied to the host) with the reference.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Dispatch: every received row, its scales, local top-k ids, weights and
 * source index are compared BITWISE with what the source rank generated
 * (epTestTokenRow). Combine: BF16 output against the float64 reference
 * within epTestCombineTolerance. Shared by tests/gpu and the -c mode of the
 * perf binaries.
 *************************************************************************/
#ifndef EP_TESTS_HT_CHECK_H_
#define EP_TESTS_HT_CHECK_H_

#include <cstdint>
#include <vector>

#include "tests/common/check.h"
#include "tests/common/ht_reference.h"
#include "tests/common/payload.h"

void epTestCheckLayout(const epTestHtLayout& ref, const int* perRank, const int* perNode, const int* perExpert,
                       const uint8_t* inRank, epTestCheck* chk);

/* Host copies of epDispatch outputs; any pointer may be NULL (not checked). */
struct epTestHtDispatchGot {
  int numRecv = -1;                /* from out.numRecvTokens or notify */
  const uint8_t* x = nullptr;      /* [numRecv x rowBytes] */
  const uint8_t* scales = nullptr; /* [numRecv x scaleBytes] row-major */
  const int32_t* topkIdx = nullptr;
  const float* topkWeights = nullptr;
  const int32_t* srcIdx = nullptr;
  const int32_t* perExpert = nullptr; /* [E/R] aligned counts */
};

/* requireOrder: rows of one source must come in increasing token order (the
 * documented order); otherwise any permutation inside a source block passes.
 * Without srcIdx the reference order is assumed. */
void epTestCheckDispatch(const epTestHtRecvRef& ref, const epTestPayloadSpec& p, int numTopk,
                         const epTestHtDispatchGot& got, bool requireOrder, epTestCheck* chk);

/* The (srcRank, srcIdx) of each received row as the GPU ordered them: the
 * reference's source blocks with the GPU's srcIdx (for building combine input). */
void epTestRecvOrder(const epTestHtRecvRef& ref, const int32_t* gotSrcIdx, std::vector<int>* srcRank,
                     std::vector<int>* srcIdx);

void epTestCheckCombine(const std::vector<double>& ref, const std::vector<double>& sumAbs, const uint16_t* got,
                        int hidden, epTestCheck* chk);

/* Bytes [from, to) of buf must all equal `byte` (poison / guard regions). */
void epTestCheckUntouched(const uint8_t* buf, size_t from, size_t to, uint8_t byte, const char* what,
                          epTestCheck* chk);

#endif  // EP_TESTS_HT_CHECK_H_
