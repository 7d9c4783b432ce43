/*************************************************************************
 * epcomm: epGetDispatchLayout — the routing summary of top-k ids, on the GPU.
 *
 * One thread per token: for each of its K experts (-1 = masked) it counts
 * the expert, and counts the token once per destination rank and once per
 * destination node (deduplicated over the token's K experts). Block-level
 * shared-memory histograms are flushed with one atomic per bin. Ids >= E or
 * < -1 are ignored and recorded as a device error (epCommGetAsyncError).
 * Used by users before dispatch, and by the internode path (tokens per node).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <cuda_runtime.h>

#include "core/api.h"
#include "core/checks.h"
#include "core/comm.h"
#include "device/timeout.cuh"

namespace {

constexpr int kLayoutThreads = 256;
constexpr int kLayoutMaxRanks = 1024;
constexpr int kFamilyLayout = 4;

struct LayoutParams {
  const void* topk;
  int idx64;
  int T, K, E, R, nNodes, L;
  int* perRank;
  int* perNode;
  int* perExpert;
  uint8_t* inRank;
  epDeviceStatus* status;
  uint16_t rankNode[kLayoutMaxRanks];
};

__device__ __forceinline__ long long loadId(const LayoutParams& p, long long i) {
  return p.idx64 ? reinterpret_cast<const long long*>(p.topk)[i] : (long long)reinterpret_cast<const int*>(p.topk)[i];
}
__device__ __forceinline__ bool validId(const LayoutParams& p, long long id) { return id >= 0 && id < p.E; }

__global__ void __launch_bounds__(kLayoutThreads) layout_kernel(const __grid_constant__ LayoutParams p) {
  extern __shared__ int sh[];
  int* sE = sh;               // [E]
  int* sR = sE + p.E;         // [R]
  int* sN = sR + p.R;         // [nNodes]
  const int nBins = p.E + p.R + p.nNodes;
  for (int i = threadIdx.x; i < nBins; i += blockDim.x) sh[i] = 0;
  __syncthreads();
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t < p.T) {
    const long long row = (long long)t * p.K;
    if (p.inRank)
      for (int r = 0; r < p.R; r++) p.inRank[(size_t)t * p.R + r] = 0;
    for (int k = 0; k < p.K; k++) {
      const long long id = loadId(p, row + k);
      if (!validId(p, id)) {
        if (id != -1) ep::dev::record_error(p.status, kFamilyLayout, EP_DEVERR_BAD_EXPERT_ID, t, k, id);
        continue;
      }
      atomicAdd(&sE[id], 1);
      const int r = (int)(id / p.L);
      const int node = p.rankNode[r];
      bool dupRank = false, dupNode = false;
      for (int j = 0; j < k; j++) {
        const long long o = loadId(p, row + j);
        if (!validId(p, o)) continue;
        const int ro = (int)(o / p.L);
        dupRank |= ro == r;
        dupNode |= p.rankNode[ro] == node;
      }
      if (!dupRank) {
        atomicAdd(&sR[r], 1);
        if (p.inRank) p.inRank[(size_t)t * p.R + r] = 1;
      }
      if (!dupNode) atomicAdd(&sN[node], 1);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nBins; i += blockDim.x) {
    const int v = sh[i];
    if (v == 0) continue;
    if (i < p.E) {
      if (p.perExpert) atomicAdd(&p.perExpert[i], v);
    } else if (i < p.E + p.R) {
      if (p.perRank) atomicAdd(&p.perRank[i - p.E], v);
    } else if (p.perNode) {
      atomicAdd(&p.perNode[i - p.E - p.R], v);
    }
  }
}

}  // namespace

EP_API epResult_t epGetDispatchLayout(epComm_t comm, const void* topkIdx, epDataType_t topkIdxType, int numTokens,
                                      int numTopk, int numExperts, int* numTokensPerRank, int* numTokensPerNode,
                                      int* numTokensPerExpert, uint8_t* isTokenInRank, cudaStream_t stream) {
  EPCHECK(epCommCheck(comm, "epGetDispatchLayout"));
  EP_COMM_SCOPE(comm);
  EP_USAGE_CHECK(comm->cudaDev >= 0, "epGetDispatchLayout: rank %d has no CUDA device", comm->rank);
  const int R = comm->nranks;
  EP_ARG_CHECK(numTokens >= 0, "epGetDispatchLayout: numTokens %d < 0", numTokens);
  EP_ARG_CHECK(numTokens == 0 || topkIdx != nullptr, "epGetDispatchLayout: topkIdx is NULL");
  EP_ARG_CHECK(topkIdxType == epInt32 || topkIdxType == epInt64,
               "epGetDispatchLayout: topkIdxType must be epInt32 or epInt64");
  EP_ARG_CHECK(numTopk >= 1 && numTopk <= 32, "epGetDispatchLayout: numTopk %d out of [1, 32]", numTopk);
  EP_ARG_CHECK(numExperts > 0 && numExperts % R == 0,
               "epGetDispatchLayout: numExperts %d must be positive and divisible by the %d ranks", numExperts, R);
  EP_ARG_CHECK(R <= kLayoutMaxRanks, "epGetDispatchLayout: %d ranks exceed the limit %d", R, kLayoutMaxRanks);
  EP_ARG_CHECK(numTokensPerRank || numTokensPerNode || numTokensPerExpert || isTokenInRank,
               "epGetDispatchLayout: every output is NULL");
  const size_t smem = (size_t)(numExperts + R + comm->nNodes) * sizeof(int);
  int optin = 0;
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  CUDACHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, comm->cudaDev));
  EP_ARG_CHECK(smem <= (size_t)optin, "epGetDispatchLayout: %d experts exceed the shared-memory histogram limit",
               numExperts);
  if (smem > 48 * 1024) CUDACHECK(cudaFuncSetAttribute(layout_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  if (numTokensPerRank) CUDACHECK(cudaMemsetAsync(numTokensPerRank, 0, sizeof(int) * R, stream));
  if (numTokensPerNode) CUDACHECK(cudaMemsetAsync(numTokensPerNode, 0, sizeof(int) * comm->nNodes, stream));
  if (numTokensPerExpert) CUDACHECK(cudaMemsetAsync(numTokensPerExpert, 0, sizeof(int) * numExperts, stream));
  if (numTokens == 0) return epSuccess;
  LayoutParams q;
  q.topk = topkIdx;
  q.idx64 = topkIdxType == epInt64;
  q.T = numTokens;
  q.K = numTopk;
  q.E = numExperts;
  q.R = R;
  q.nNodes = comm->nNodes;
  q.L = numExperts / R;
  q.perRank = numTokensPerRank;
  q.perNode = numTokensPerNode;
  q.perExpert = numTokensPerExpert;
  q.inRank = isTokenInRank;
  q.status = comm->devStatusDev;
  for (int r = 0; r < R; r++) q.rankNode[r] = (uint16_t)comm->rankNode[r];
  layout_kernel<<<(numTokens + kLayoutThreads - 1) / kLayoutThreads, kLayoutThreads, smem, stream>>>(q);
  CUDACHECK_LAUNCH();
  return epSuccess;
}
