/*************************************************************************
 * epcomm: group-limited gating, validation and host reference (see gating_ref.h).
 * SPDX-License-Identifier: Apache-2.0
 *
 * The reference is written independently of the kernel (sorts instead of
 * warp arg-max scans) but uses the same correctly rounded arithmetic
 * (eplb_math.h) and the same summation order, so results match bitwise.
 *************************************************************************/
#include "eplb/gating_ref.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/checks.h"
#include "eplb/eplb_math.h"

namespace ep {
namespace eplb {

epResult_t validateGatingDesc(const epGatingDesc_t* d, int numTokens, epDataType_t scoreType, epDataType_t idType,
                              bool wantNodes, const char* fn) {
  EP_PTR_CHECK(d, fn);
  EP_ARG_CHECK(numTokens >= 0, "%s: numTokens must be >= 0, got %d", fn, numTokens);
  EP_ARG_CHECK(scoreType == epFloat32 || scoreType == epBfloat16,
               "%s: scoreType must be epFloat32 or epBfloat16, got %d", fn, (int)scoreType);
  EP_ARG_CHECK(idType == epInt32 || idType == epInt64, "%s: idType must be epInt32 or epInt64, got %d", fn,
               (int)idType);
  const int E = d->numExperts;
  EP_ARG_CHECK(E >= 1 && E <= kGatingMaxExperts, "%s: numExperts must be in [1, %d], got %d", fn, kGatingMaxExperts, E);
  EP_ARG_CHECK(d->numGroups >= 1 && E % d->numGroups == 0,
               "%s: numGroups must be >= 1 and divide numExperts=%d, got %d", fn, E, d->numGroups);
  EP_ARG_CHECK(d->topkGroups >= 1 && d->topkGroups <= d->numGroups,
               "%s: topkGroups must be in [1, numGroups=%d], got %d", fn, d->numGroups, d->topkGroups);
  EP_ARG_CHECK(d->topk >= 1 && d->topk <= kGatingMaxTopk && d->topk <= E,
               "%s: topk must be in [1, min(%d, numExperts=%d)], got %d", fn, kGatingMaxTopk, E, d->topk);
  EP_ARG_CHECK((long long)d->topkGroups * (E / d->numGroups) >= d->topk,
               "%s: topkGroups=%d groups of %d experts cannot hold topk=%d experts", fn, d->topkGroups,
               E / d->numGroups, d->topk);
  EP_ARG_CHECK(std::isfinite(d->routedScalingFactor), "%s: routedScalingFactor must be finite", fn);
  EP_ARG_CHECK((d->flags & ~(EP_GATING_FLAG_INPUT_IS_SCORES | EP_GATING_FLAG_NO_RENORMALIZE)) == 0,
               "%s: unknown flags 0x%x", fn, d->flags);
  EP_ARG_CHECK(d->maxNodes >= 0, "%s: maxNodes must be >= 0, got %d", fn, d->maxNodes);
  if (d->maxNodes > 0 || wantNodes) {
    EP_ARG_CHECK(d->numRanks > 0 && d->ranksPerNode > 0,
                 "%s: the node limit and nodesPerTokenMax need numRanks > 0 and ranksPerNode > 0, got %d and %d", fn,
                 d->numRanks, d->ranksPerNode);
    EP_ARG_CHECK(d->numRanks % d->ranksPerNode == 0, "%s: numRanks=%d is not a multiple of ranksPerNode=%d", fn,
                 d->numRanks, d->ranksPerNode);
    EP_ARG_CHECK(E % d->numRanks == 0, "%s: numExperts=%d is not a multiple of numRanks=%d", fn, E, d->numRanks);
  }
  if (d->maxNodes > 0) {
    const int nodes = gatingNumNodes(*d);
    EP_ARG_CHECK(d->maxNodes <= nodes, "%s: maxNodes=%d exceeds the %d nodes", fn, d->maxNodes, nodes);
    EP_ARG_CHECK((long long)d->maxNodes * (E / nodes) >= d->topk,
                 "%s: maxNodes=%d nodes of %d experts cannot hold topk=%d experts", fn, d->maxNodes, E / nodes,
                 d->topk);
  }
  return epSuccess;
}

namespace {

struct Cand {
  float v;
  int i;
};
bool candLess(const Cand& a, const Cand& b) { return betterCandidate(a.v, a.i, b.v, b.i); }

/* Keeps the `keep` best of `numSets` contiguous sets of c (set score: the sum of
 * its top `perSet` eligible values, best first); masks the others with -inf. */
void limitSets(std::vector<float>* c, int numSets, int keep, int perSet) {
  const int setSize = (int)c->size() / numSets;
  std::vector<Cand> scores;
  for (int g = 0; g < numSets; g++) {
    std::vector<Cand> members;
    for (int j = 0; j < setSize; j++) {
      float v = (*c)[g * setSize + j];
      if (v != -INFINITY) members.push_back({v, g * setSize + j});
    }
    std::sort(members.begin(), members.end(), candLess);
    float s = -INFINITY;
    if (!members.empty()) {
      s = 0.0f;
      for (int j = 0; j < perSet && j < (int)members.size(); j++) s = fadd(s, members[j].v);
    }
    scores.push_back({s, g});
  }
  std::sort(scores.begin(), scores.end(), candLess);
  std::vector<char> kept(numSets, 0);
  for (int j = 0; j < keep; j++)
    if (scores[j].v != -INFINITY) kept[scores[j].i] = 1;
  for (int e = 0; e < (int)c->size(); e++)
    if (!kept[e / setSize]) (*c)[e] = -INFINITY;
}

}  // namespace

void gatingRef(const float* logits, const float* bias, int numTokens, const epGatingDesc_t& d, int64_t* idx,
               float* weights, int* nodesPerTokenMax) {
  const int E = d.numExperts, K = d.topk;
  const int nodes = gatingNumNodes(d);
  const bool sigmoid = (d.flags & EP_GATING_FLAG_INPUT_IS_SCORES) == 0;
  const bool renorm = (d.flags & EP_GATING_FLAG_NO_RENORMALIZE) == 0;
  int maxNodesSeen = 0;
  std::vector<float> s(E), c(E);
  for (int t = 0; t < numTokens; t++) {
    const float* x = logits + (size_t)t * E;
    for (int e = 0; e < E; e++) {
      s[e] = sigmoid ? sigmoidDet(x[e]) : x[e];
      c[e] = bias ? fadd(s[e], bias[e]) : s[e];
      if (std::isnan(c[e])) c[e] = -INFINITY;
    }
    if (d.numGroups > 1 && d.topkGroups < d.numGroups) limitSets(&c, d.numGroups, d.topkGroups, std::max(1, K / d.topkGroups));
    if (d.maxNodes > 0 && d.maxNodes < nodes) limitSets(&c, nodes, d.maxNodes, std::max(1, K / d.maxNodes));

    std::vector<Cand> all;
    for (int e = 0; e < E; e++)
      if (c[e] != -INFINITY) all.push_back({c[e], e});
    std::sort(all.begin(), all.end(), candLess);
    const int n = std::min(K, (int)all.size());
    float sum = 0.0f;
    for (int k = 0; k < n; k++) sum = fadd(sum, s[all[k].i]);
    const float denom = (renorm && sum != 0.0f) ? sum : 1.0f;
    std::vector<int> nodeList;
    for (int k = 0; k < K; k++) {
      int64_t* oi = idx + (size_t)t * K + k;
      float* ow = weights + (size_t)t * K + k;
      if (k >= n) {
        *oi = -1;
        *ow = 0.0f;
        continue;
      }
      *oi = all[k].i;
      float w = renorm ? fdiv(s[all[k].i], denom) : s[all[k].i];
      *ow = fmul(w, d.routedScalingFactor);
      if (nodes > 0) {
        int nd = all[k].i / (E / nodes);
        if (std::find(nodeList.begin(), nodeList.end(), nd) == nodeList.end()) nodeList.push_back(nd);
      }
    }
    maxNodesSeen = std::max(maxNodesSeen, (int)nodeList.size());
  }
  if (nodesPerTokenMax) *nodesPerTokenMax = maxNodesSeen;
}

}  // namespace eplb
}  // namespace ep
