/*************************************************************************
 * epcomm tests: host reference of HT layout, dispatch and combine.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Inputs are the routings of every rank (epTestMakeAllRoutings), which each
 * rank rebuilds locally, so no reference data crosses ranks.
 *
 * Conventions (include/epcomm/ht.h):
 *  - expert e lives on rank e / (E / R), as local expert e % (E / R);
 *  - a token goes to a rank once, however many of its experts live there;
 *  - received rows are ordered by source rank, then by source token index;
 *  - combine sums, per original token, the row each destination rank returns
 *    (+ biases). What a rank returns for a received row is the pure function
 *    epTestCombineInputRow(seed, holder, srcRank, srcIdx) so the source can
 *    predict the sum; the reference sums in float64.
 *************************************************************************/
#ifndef EP_TESTS_HT_REFERENCE_H_
#define EP_TESTS_HT_REFERENCE_H_

#include <cstdint>
#include <vector>

#include "tests/common/routing.h"

/* epGetDispatchLayout of one rank's routing. */
struct epTestHtLayout {
  std::vector<int> tokensPerRank;    /* [R] */
  std::vector<int> tokensPerNode;    /* [nNodes]; ranks are numbered node by node */
  std::vector<int> tokensPerExpert;  /* [E] */
  std::vector<uint8_t> isTokenInRank; /* [T x R] 0/1 */
};
epTestHtLayout epTestHtLayoutRef(const epTestRouting& r, int nranks, int nNodes);

/* What rank `me` receives from a dispatch. */
struct epTestHtRecvRef {
  int numRecv = 0;
  std::vector<int> fromRank;   /* [R] rows from each source rank */
  std::vector<int> rankPrefix; /* [R + 1] first row of each source rank */
  std::vector<int> srcRank;    /* [numRecv] */
  std::vector<int> srcIdx;     /* [numRecv] token index on the source */
  std::vector<int32_t> topkIdx; /* [numRecv x K] local expert id or -1 */
  std::vector<float> topkWeights; /* [numRecv x K] weight, 0 where topkIdx is -1 */
  std::vector<int> perExpert;  /* [E / R] rows that hold each local expert */
  std::vector<int> perExpertAligned; /* rounded up to the alignment */
};
epTestHtRecvRef epTestHtRecvRefCompute(const std::vector<epTestRouting>& all, int me, int alignment);

/* Rows a rank feeds to combine: BF16 [hidden], pure function of its arguments. */
void epTestCombineInputRow(uint64_t seed, int holder, int srcRank, int srcIdx, int hidden, uint16_t* row);
/* Builds the combine input of rank `me` for its received rows (ref.srcRank/srcIdx order
 * or, better, the order the GPU actually produced: pass those vectors). */
void epTestCombineInput(uint64_t seed, int me, const std::vector<int>& srcRank, const std::vector<int>& srcIdx,
                        int hidden, std::vector<uint16_t>* x);
/* Deterministic BF16 bias [T x H] of a rank (which = 0 or 1). */
void epTestCombineBias(uint64_t seed, int rank, int which, int numTokens, int hidden, std::vector<uint16_t>* bias);

/* Expected combine output of rank `me` in float64, and the sum of |terms| per
 * element (for the tolerance). bias0/bias1 may be NULL. Tokens sent nowhere
 * get 0 (+ biases). */
void epTestHtCombineRef(const std::vector<epTestRouting>& all, int me, int hidden, uint64_t seed,
                        const uint16_t* bias0, const uint16_t* bias1, std::vector<double>* out,
                        std::vector<double>* sumAbs);
/* Expected outTopkWeights when combine gets the dispatch's recvTopkWeights:
 * the original weight where the slot's expert is valid, 0 where it is -1. */
std::vector<float> epTestHtCombineWeightsRef(const epTestRouting& mine);

/* Combine tolerance for one BF16 element (stated in docs and test output):
 *   |got - ref| <= 2^-8 * |ref| + 2^-18 * sum|terms|
 * 2^-8|ref| is one round-to-nearest-even to BF16 (8 significant bits) of the
 * fp32 sum; 2^-18 * sum|terms| bounds the fp32 accumulation error of up to
 * 64 terms (n * 2^-24) with room to spare. A dropped or doubled row, a BF16
 * (not fp32) accumulator, or a wrong row all exceed it. */
double epTestCombineTolerance(double ref, double sumAbs);

#endif  // EP_TESTS_HT_REFERENCE_H_
