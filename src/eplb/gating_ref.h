/*************************************************************************
 * epcomm: group-limited (and node-limited) gating: argument validation and
 * the host reference of epGroupLimitedGating. Shared by the library (the
 * validation) and the tests (the reference).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_EPLB_GATING_REF_H_
#define EP_EPLB_GATING_REF_H_

#include <cstdint>

#include "epcomm.h"

namespace ep {
namespace eplb {

constexpr int kGatingMaxExperts = 4096;
constexpr int kGatingMaxTopk = 64;

/* Number of nodes of the node-limit placement (numRanks / ranksPerNode), or 0 when not given. */
inline int gatingNumNodes(const epGatingDesc_t& d) {
  return (d.numRanks > 0 && d.ranksPerNode > 0) ? d.numRanks / d.ranksPerNode : 0;
}

/* Shapes and options; epInvalidArgument with a WARN naming the problem.
 * wantNodes: the caller asked for nodesPerTokenMax. */
epResult_t validateGatingDesc(const epGatingDesc_t* d, int numTokens, epDataType_t scoreType, epDataType_t idType,
                              bool wantNodes, const char* fn);

/* Host reference. logits [T x E] as float (bf16 inputs converted exactly
 * beforehand), bias [E] or null, outputs idx [T x K] (int64), weights [T x K],
 * *nodesPerTokenMax (may be null). The desc must be valid. */
void gatingRef(const float* logits, const float* bias, int numTokens, const epGatingDesc_t& d, int64_t* idx,
               float* weights, int* nodesPerTokenMax);

}  // namespace eplb
}  // namespace ep

#endif  // EP_EPLB_GATING_REF_H_
