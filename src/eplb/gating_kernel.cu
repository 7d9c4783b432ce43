/*************************************************************************
 * epcomm: epGroupLimitedGating, the DeepSeek-V3 group/node-limited top-k
 * router on the GPU. One warp per token; the token's scores live in shared
 * memory; selections are warp arg-max scans with the (value desc, index asc)
 * order of eplb_math.h, so the result equals gatingRef bitwise.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "core/checks.h"
#include "eplb/eplb_internal.h"
#include "eplb/eplb_math.h"
#include "eplb/gating_ref.h"

namespace ep {
namespace eplb {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxWarpsPerBlock = 8;
constexpr size_t kSmemBudget = 48 * 1024;

struct GatingParams {
  const void* logits;
  const float* bias;
  void* idx;
  float* weights;
  int* nodesMax;
  int numTokens, E, K;
  int numGroups, topkGroups, perGroup; /* perGroup: values summed per group score */
  int numNodes, maxNodes, perNode;     /* numNodes 0: no node information */
  float scale;
  bool bf16, idx64, sigmoid, renorm, groupLimit, nodeLimit;
};

/* Floats of shared memory one warp needs: s[E], c[E], set scores, kept flags, selection. */
__host__ __device__ inline int warpSmemWords(int E, int numGroups, int numNodes, int K) {
  return 2 * E + 2 * numGroups + 2 * (numNodes > 0 ? numNodes : 1) + K;
}

/* Warp-wide best (value, index) over vals[0..n); every lane gets the winner.
 * Returns -inf with index n when n == 0. */
__device__ __forceinline__ void warpArgMax(const float* vals, int n, int lane, float* bestV, int* bestI) {
  float v = -INFINITY;
  int i = 0x7fffffff;
  for (int j = lane; j < n; j += kWarp) {
    float x = vals[j];
    if (betterCandidate(x, j, v, i)) v = x, i = j;
  }
#pragma unroll
  for (int off = kWarp / 2; off > 0; off >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, off);
    int oi = __shfl_xor_sync(0xffffffffu, i, off);
    if (betterCandidate(ov, oi, v, i)) v = ov, i = oi;
  }
  *bestV = v;
  *bestI = i;
}

/* Keeps the `keep` best of `numSets` contiguous sets of c (score: the sum of the
 * set's top `perSet` eligible values, best first) and masks the rest with -inf. */
__device__ void warpLimitSets(float* c, int E, int numSets, int keep, int perSet, float* setScore, float* kept,
                              int lane) {
  const int setSize = E / numSets;
  for (int g = lane; g < numSets; g += kWarp) {
    const float* cs = c + g * setSize;
    float sum = -INFINITY;
    float prevV = INFINITY;
    int prevI = -1;
    for (int r = 0; r < perSet; r++) {
      // Next best after (prevV, prevI) in the candidate order.
      float v = -INFINITY;
      int vi = 0x7fffffff;
      for (int j = 0; j < setSize; j++) {
        float x = cs[j];
        if (x == -INFINITY) continue;
        if (!betterCandidate(prevV, prevI, x, j)) continue;  // already taken
        if (betterCandidate(x, j, v, vi)) v = x, vi = j;
      }
      if (v == -INFINITY) break;
      sum = (r == 0) ? fadd(0.0f, v) : fadd(sum, v);
      prevV = v, prevI = vi;
    }
    setScore[g] = sum;
    kept[g] = 0.0f;
  }
  __syncwarp();
  for (int r = 0; r < keep; r++) {
    float v;
    int g;
    warpArgMax(setScore, numSets, lane, &v, &g);
    if (v == -INFINITY) break;
    __syncwarp();
    if (lane == 0) {
      kept[g] = 1.0f;
      setScore[g] = -INFINITY;
    }
    __syncwarp();
  }
  for (int e = lane; e < E; e += kWarp)
    if (kept[e / setSize] == 0.0f) c[e] = -INFINITY;
  __syncwarp();
}

__global__ void gatingKernel(GatingParams p) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int t = blockIdx.x * (blockDim.x / kWarp) + warp;
  if (t >= p.numTokens) return;  // whole warps exit together
  const int E = p.E, K = p.K;
  float* s = smem + (size_t)warp * warpSmemWords(E, p.numGroups, p.numNodes, K);
  float* c = s + E;
  float* groupScore = c + E;
  float* groupKept = groupScore + p.numGroups;
  float* nodeScore = groupKept + p.numGroups;
  const int nodeSlots = p.numNodes > 0 ? p.numNodes : 1;
  float* nodeKept = nodeScore + nodeSlots;
  int* sel = reinterpret_cast<int*>(nodeKept + nodeSlots);

  for (int e = lane; e < E; e += kWarp) {
    size_t off = (size_t)t * E + e;
    float x = p.bf16 ? bf16BitsToFloat(static_cast<const uint16_t*>(p.logits)[off])
                     : static_cast<const float*>(p.logits)[off];
    float sv = p.sigmoid ? sigmoidDet(x) : x;
    float cv = p.bias ? fadd(sv, p.bias[e]) : sv;
    if (cv != cv) cv = -INFINITY;
    s[e] = sv;
    c[e] = cv;
  }
  __syncwarp();
  if (p.groupLimit) warpLimitSets(c, E, p.numGroups, p.topkGroups, p.perGroup, groupScore, groupKept, lane);
  if (p.nodeLimit) warpLimitSets(c, E, p.numNodes, p.maxNodes, p.perNode, nodeScore, nodeKept, lane);

  for (int k = 0; k < K; k++) {
    float v;
    int e;
    warpArgMax(c, E, lane, &v, &e);
    __syncwarp();
    if (lane == 0) {
      sel[k] = (v == -INFINITY) ? -1 : e;
      if (v != -INFINITY) c[e] = -INFINITY;
    }
    __syncwarp();
  }

  // Sum in selection order (lane 0, like the reference), then one slot per lane.
  float sum = 0.0f;
  int nodesUsed = 0;
  if (lane == 0) {
    for (int k = 0; k < K && sel[k] >= 0; k++) sum = fadd(sum, s[sel[k]]);
    if (p.nodesMax) {
      const int epn = E / p.numNodes;
      for (int k = 0; k < K && sel[k] >= 0; k++) {
        bool seen = false;
        for (int j = 0; j < k; j++) seen |= (sel[j] / epn == sel[k] / epn);
        nodesUsed += seen ? 0 : 1;
      }
      atomicMax(p.nodesMax, nodesUsed);
    }
  }
  sum = __shfl_sync(0xffffffffu, sum, 0);
  const float denom = (p.renorm && sum != 0.0f) ? sum : 1.0f;
  for (int k = lane; k < K; k += kWarp) {
    const int e = sel[k];
    float w = 0.0f;
    if (e >= 0) w = fmul(p.renorm ? fdiv(s[e], denom) : s[e], p.scale);
    const size_t o = (size_t)t * K + k;
    if (p.idx64)
      static_cast<int64_t*>(p.idx)[o] = e;
    else
      static_cast<int32_t*>(p.idx)[o] = e;
    p.weights[o] = w;
  }
}

}  // namespace
}  // namespace eplb
}  // namespace ep

EP_API epResult_t epGroupLimitedGating(const void* logits, epDataType_t scoreType, const float* bias, int numTokens,
                                       const epGatingDesc_t* desc, void* topkIdx, epDataType_t idType, float* weights,
                                       int* nodesPerTokenMax, cudaStream_t stream) {
  using namespace ep::eplb;
  static const char* fn = "epGroupLimitedGating";
  EPCHECK(validateGatingDesc(desc, numTokens, scoreType, idType, nodesPerTokenMax != nullptr, fn));
  if (numTokens > 0) {
    EP_PTR_CHECK(logits, fn);
    EP_PTR_CHECK(topkIdx, fn);
    EP_PTR_CHECK(weights, fn);
  }
  GatingParams p;
  p.logits = logits;
  p.bias = bias;
  p.idx = topkIdx;
  p.weights = weights;
  p.nodesMax = nodesPerTokenMax;
  p.numTokens = numTokens;
  p.E = desc->numExperts;
  p.K = desc->topk;
  p.numGroups = desc->numGroups;
  p.topkGroups = desc->topkGroups;
  p.perGroup = desc->topk / desc->topkGroups > 1 ? desc->topk / desc->topkGroups : 1;
  p.numNodes = gatingNumNodes(*desc);
  p.maxNodes = desc->maxNodes;
  p.perNode = desc->maxNodes > 0 && desc->topk / desc->maxNodes > 1 ? desc->topk / desc->maxNodes : 1;
  p.scale = desc->routedScalingFactor;
  p.bf16 = scoreType == epBfloat16;
  p.idx64 = idType == epInt64;
  p.sigmoid = (desc->flags & EP_GATING_FLAG_INPUT_IS_SCORES) == 0;
  p.renorm = (desc->flags & EP_GATING_FLAG_NO_RENORMALIZE) == 0;
  p.groupLimit = p.numGroups > 1 && p.topkGroups < p.numGroups;
  p.nodeLimit = p.maxNodes > 0 && p.maxNodes < p.numNodes;

  if (nodesPerTokenMax) CUDACHECK(cudaMemsetAsync(nodesPerTokenMax, 0, sizeof(int), stream));
  if (numTokens == 0) return epSuccess;
  const size_t warpBytes = sizeof(float) * (size_t)warpSmemWords(p.E, p.numGroups, p.numNodes, p.K);
  int warps = (int)(kSmemBudget / warpBytes);
  warps = warps < 1 ? 1 : (warps > kMaxWarpsPerBlock ? kMaxWarpsPerBlock : warps);
  const size_t smem = warpBytes * warps;
  EP_ARG_CHECK(smem <= kSmemBudget, "%s: numExperts=%d needs %zu bytes of shared memory per token, over %zu", fn, p.E,
               warpBytes, kSmemBudget);
  const unsigned blocks = (unsigned)((numTokens + warps - 1) / warps);
  gatingKernel<<<blocks, warps * kWarp, smem, stream>>>(p);
  CUDACHECK_LAUNCH();
  return epSuccess;
}
