/*************************************************************************
 * epcomm: epMapLogicalToPhysical, logical top-k ids -> physical slot ids.
 * One thread per token (the FewestNodes policy decides a token's slots in
 * sequence). The rules are spelled out in map_ref.cc; this is an independent
 * implementation of them, checked against that reference by the GPU tests.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <cuda_runtime.h>

#include <cstdint>

#include "core/checks.h"
#include "eplb/eplb_internal.h"
#include "eplb/eplb_math.h"
#include "eplb/map_ref.h"

namespace ep {
namespace eplb {
namespace {

struct MapParams {
  const void* in;
  void* out;
  const int* log2phy;
  const int* logcnt;
  int* errorInfo;
  int numTokens, topk;
  int E, R, X;
  int slotsPerRank, ranksPerNode, myNode;
  int policy;
  long long tokenOffset;
  bool ids64;
};

__device__ __forceinline__ int nodeOfSlot(const MapParams& p, int slot) { return slot / p.slotsPerRank / p.ranksPerNode; }

/* Replica count of e, or 0 when e or its table row is invalid. */
__device__ int replicaCount(const MapParams& p, long long e) {
  if (e < 0 || e >= p.E) return 0;
  const int cnt = p.logcnt[e];
  if (cnt < 1 || cnt > p.X) return 0;
  for (int j = 0; j < cnt; j++) {
    const int s = p.log2phy[(size_t)e * p.X + j];
    if (s < 0 || s >= p.R) return 0;
  }
  return cnt;
}

__device__ void recordError(int* info, int code, int t, int k, long long value) {
  if (info == nullptr) return;
  if (atomicCAS(info, EP_MAP_ERR_NONE, code) == EP_MAP_ERR_NONE) {
    info[1] = t;
    info[2] = k;
    info[3] = (int)value;
  }
}

__global__ void mapKernel(MapParams p) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= p.numTokens) return;
  const int K = p.topk;
  long long ids[kMapMaxTopk];
  int cnts[kMapMaxTopk];
  int used[kMapMaxTopk + 1];
  int numUsed = 1;
  used[0] = p.myNode;
  for (int k = 0; k < K; k++) {
    const size_t o = (size_t)t * K + k;
    ids[k] = p.ids64 ? static_cast<const long long*>(p.in)[o] : static_cast<const int*>(p.in)[o];
    cnts[k] = replicaCount(p, ids[k]);
  }
  for (int k = 0; k < K; k++) {
    const long long e = ids[k];
    long long res = -1;
    if (e != -1 && cnts[k] == 0) {
      recordError(p.errorInfo, (e >= 0 && e < p.E) ? EP_MAP_ERR_BAD_TABLE : EP_MAP_ERR_BAD_EXPERT_ID, t, k, e);
    } else if (e != -1) {
      const int cnt = cnts[k];
      const int* row = p.log2phy + (size_t)e * p.X;
      const uint32_t h = replicaHash(p.tokenOffset + t, (int)e);
      int chosen = row[h % (uint32_t)cnt];
      if (p.policy == epMapPreferLocalNode) {
        int nLocal = 0;
        for (int j = 0; j < cnt; j++) nLocal += nodeOfSlot(p, row[j]) == p.myNode;
        if (nLocal > 0) {
          int want = (int)(h % (uint32_t)nLocal);
          for (int j = 0; j < cnt; j++) {
            if (nodeOfSlot(p, row[j]) != p.myNode) continue;
            if (want-- == 0) {
              chosen = row[j];
              break;
            }
          }
        }
      } else if (p.policy == epMapFewestNodes) {
        int best = -1;
        for (int i = 0; i < cnt; i++) {
          const int slot = row[(h + (uint32_t)i) % (uint32_t)cnt];
          const int node = nodeOfSlot(p, slot);
          int score;
          if (node == p.myNode) {
            score = K + 2;
          } else {
            bool isUsed = false;
            for (int u = 1; u < numUsed; u++) isUsed |= used[u] == node;
            if (isUsed) {
              score = K + 1;
            } else {
              score = 0;
              for (int k2 = k + 1; k2 < K; k2++) {
                if (cnts[k2] == 0) continue;
                const int* row2 = p.log2phy + (size_t)ids[k2] * p.X;
                bool there = false;
                for (int j = 0; j < cnts[k2] && !there; j++) there = nodeOfSlot(p, row2[j]) == node;
                score += there;
              }
            }
          }
          if (score > best) best = score, chosen = slot;
        }
        const int node = nodeOfSlot(p, chosen);
        bool seen = false;
        for (int u = 0; u < numUsed; u++) seen |= used[u] == node;
        if (!seen) used[numUsed++] = node;
      }
      res = chosen;
    }
    const size_t o = (size_t)t * K + k;
    if (p.ids64)
      static_cast<long long*>(p.out)[o] = res;
    else
      static_cast<int*>(p.out)[o] = (int)res;
  }
}

}  // namespace
}  // namespace eplb
}  // namespace ep

EP_API epResult_t epMapLogicalToPhysical(const void* topkIdx, void* topkPhysIdx, epDataType_t idType, int numTokens,
                                         int topk, const int* log2phy, const int* logcnt,
                                         const epExpertMapDesc_t* desc, int* errorInfo, cudaStream_t stream) {
  using namespace ep::eplb;
  static const char* fn = "epMapLogicalToPhysical";
  EPCHECK(validateMapDesc(desc, numTokens, topk, idType, fn));
  if (numTokens == 0) return epSuccess;
  EP_PTR_CHECK(topkIdx, fn);
  EP_PTR_CHECK(topkPhysIdx, fn);
  EP_PTR_CHECK(log2phy, fn);
  EP_PTR_CHECK(logcnt, fn);
  MapParams p;
  p.in = topkIdx;
  p.out = topkPhysIdx;
  p.log2phy = log2phy;
  p.logcnt = logcnt;
  p.errorInfo = errorInfo;
  p.numTokens = numTokens;
  p.topk = topk;
  p.E = desc->numExperts;
  p.R = desc->numSlots;
  p.X = desc->maxReplicas;
  p.slotsPerRank = desc->numSlots / desc->numRanks;
  p.ranksPerNode = desc->numRanks / desc->numNodes;
  p.myNode = desc->rank / p.ranksPerNode;
  p.policy = (int)desc->policy;
  p.tokenOffset = desc->tokenOffset;
  p.ids64 = idType == epInt64;
  const int threads = 128;
  mapKernel<<<(unsigned)((numTokens + threads - 1) / threads), threads, 0, stream>>>(p);
  CUDACHECK_LAUNCH();
  return epSuccess;
}
