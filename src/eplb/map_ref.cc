/*************************************************************************
 * epcomm: logical -> physical mapping, validation and host reference.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Policy semantics (the kernel in map_kernel.cu implements the same rules):
 *  h = replicaHash(tokenOffset + t, e); the replicas of e are log2phy[e][0..cnt).
 *  Spread:        replica h % cnt.
 *  PreferLocal:   the replicas on the token's node, in log2phy order; pick h % count
 *                 of them; none there -> Spread.
 *  FewestNodes:   for k = 0..K-1 in order, look at the replicas in rotation order
 *                 (h + i) % cnt and take the first of best score: own node K+2,
 *                 a node already used by this token K+1, otherwise the number of
 *                 this token's later valid experts with a replica on that node.
 *  The node of slot p is (p / (R/P)) / (P/N).
 *************************************************************************/
#include "eplb/map_ref.h"

#include <vector>

#include "core/checks.h"
#include "eplb/eplb_math.h"

namespace ep {
namespace eplb {

epResult_t validateMapDesc(const epExpertMapDesc_t* d, int numTokens, int topk, epDataType_t idType, const char* fn) {
  EP_PTR_CHECK(d, fn);
  EP_ARG_CHECK(numTokens >= 0, "%s: numTokens must be >= 0, got %d", fn, numTokens);
  EP_ARG_CHECK(topk >= 1 && topk <= kMapMaxTopk, "%s: topk must be in [1, %d], got %d", fn, kMapMaxTopk, topk);
  EP_ARG_CHECK(idType == epInt32 || idType == epInt64, "%s: idType must be epInt32 or epInt64, got %d", fn,
               (int)idType);
  EP_ARG_CHECK(d->numExperts >= 1, "%s: numExperts must be >= 1, got %d", fn, d->numExperts);
  EP_ARG_CHECK(d->numSlots >= d->numExperts, "%s: numSlots=%d is smaller than numExperts=%d", fn, d->numSlots,
               d->numExperts);
  EP_ARG_CHECK(d->maxReplicas >= 1, "%s: maxReplicas must be >= 1, got %d", fn, d->maxReplicas);
  EP_ARG_CHECK(d->numRanks >= 1 && d->numSlots % d->numRanks == 0,
               "%s: numRanks must be >= 1 and divide numSlots=%d, got %d", fn, d->numSlots, d->numRanks);
  EP_ARG_CHECK(d->numNodes >= 1 && d->numRanks % d->numNodes == 0,
               "%s: numNodes must be >= 1 and divide numRanks=%d, got %d", fn, d->numRanks, d->numNodes);
  EP_ARG_CHECK(d->rank >= 0 && d->rank < d->numRanks, "%s: rank=%d is outside [0, numRanks=%d)", fn, d->rank,
               d->numRanks);
  EP_ARG_CHECK(d->policy == epMapSpread || d->policy == epMapPreferLocalNode || d->policy == epMapFewestNodes,
               "%s: unknown policy %d", fn, (int)d->policy);
  return epSuccess;
}

namespace {

struct Placement {
  int slotsPerRank, ranksPerNode;
  int nodeOf(int slot) const { return slot / slotsPerRank / ranksPerNode; }
};

/* The replicas of e, or an empty list when e or its table row is invalid. */
std::vector<int> replicasOf(int64_t e, const int* log2phy, const int* logcnt, const epExpertMapDesc_t& d, bool* valid) {
  std::vector<int> r;
  *valid = false;
  if (e < 0 || e >= d.numExperts) return r;
  int cnt = logcnt[e];
  if (cnt < 1 || cnt > d.maxReplicas) return r;
  for (int j = 0; j < cnt; j++) {
    int p = log2phy[(size_t)e * d.maxReplicas + j];
    if (p < 0 || p >= d.numSlots) return std::vector<int>();
    r.push_back(p);
  }
  *valid = true;
  return r;
}

void recordError(int* info, int code, int t, int k, int64_t value) {
  if (info == nullptr || info[0] != EP_MAP_ERR_NONE) return;
  info[0] = code;
  info[1] = t;
  info[2] = k;
  info[3] = (int)value;
}

}  // namespace

void mapLogicalToPhysicalRef(const int64_t* ids, int64_t* out, int numTokens, int topk, const int* log2phy,
                             const int* logcnt, const epExpertMapDesc_t& d, int* errorInfo) {
  const Placement pl{d.numSlots / d.numRanks, d.numRanks / d.numNodes};
  const int myNode = d.rank / pl.ranksPerNode;
  for (int t = 0; t < numTokens; t++) {
    std::vector<int64_t> in(ids + (size_t)t * topk, ids + (size_t)(t + 1) * topk);
    std::vector<std::vector<int>> reps(topk);
    std::vector<bool> valid(topk);
    for (int k = 0; k < topk; k++) {
      bool v;
      reps[k] = replicasOf(in[k], log2phy, logcnt, d, &v);
      valid[k] = v;
    }
    std::vector<int> usedNodes{myNode};
    for (int k = 0; k < topk; k++) {
      int64_t* o = out + (size_t)t * topk + k;
      const int64_t e = in[k];
      if (e == -1) {
        *o = -1;
        continue;
      }
      if (!valid[k]) {
        bool idOk = e >= 0 && e < d.numExperts;
        recordError(errorInfo, idOk ? EP_MAP_ERR_BAD_TABLE : EP_MAP_ERR_BAD_EXPERT_ID, t, k, e);
        *o = -1;
        continue;
      }
      const std::vector<int>& r = reps[k];
      const int cnt = (int)r.size();
      const uint32_t h = replicaHash(d.tokenOffset + t, (int)e);
      int chosen = r[h % cnt];
      if (d.policy == epMapPreferLocalNode) {
        std::vector<int> local;
        for (int p : r)
          if (pl.nodeOf(p) == myNode) local.push_back(p);
        if (!local.empty()) chosen = local[h % local.size()];
      } else if (d.policy == epMapFewestNodes) {
        int bestScore = -1;
        for (int i = 0; i < cnt; i++) {
          const int p = r[(h + (uint32_t)i) % cnt];
          const int node = pl.nodeOf(p);
          int score = 0;
          if (node == myNode) {
            score = topk + 2;
          } else {
            bool used = false;
            for (int u : usedNodes) used |= (u == node);
            if (used) {
              score = topk + 1;
            } else {
              for (int k2 = k + 1; k2 < topk; k2++) {
                if (!valid[k2]) continue;
                bool there = false;
                for (int p2 : reps[k2]) there |= (pl.nodeOf(p2) == node);
                score += there ? 1 : 0;
              }
            }
          }
          if (score > bestScore) bestScore = score, chosen = p;
        }
        bool seen = false;
        for (int u : usedNodes) seen |= (u == pl.nodeOf(chosen));
        if (!seen) usedNodes.push_back(pl.nodeOf(chosen));
      }
      *o = chosen;
    }
  }
}

}  // namespace eplb
}  // namespace ep
