/*************************************************************************
 * epcomm: per-expert load statistics on the device (epEplbAccumulateLoad,
 * epEplbAccumulateTopk). The table is int64 so that it can accumulate for as
 * long as the caller wants without overflow or rounding.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <cuda_runtime.h>

#include <cstdint>

#include "core/checks.h"
#include "eplb/eplb_internal.h"

namespace {

__global__ void accumulateCountsKernel(const int* counts, int n, const int* phy2log, int E, long long* row) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int e = phy2log ? phy2log[i] : i;
    if (e < 0 || e >= E) continue;  // validated on the host for the identity map; a bad phy2log entry is skipped
    const int c = counts[i];
    if (c != 0) atomicAdd(reinterpret_cast<unsigned long long*>(row + e), (unsigned long long)(long long)c);
  }
}

/* Block-local histogram in shared memory, then one global add per expert. */
template <typename T>
__global__ void accumulateTopkKernel(const T* ids, long long n, int E, long long* row) {
  extern __shared__ unsigned int hist[];
  for (int e = threadIdx.x; e < E; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const long long e = (long long)ids[i];
    if (e >= 0 && e < E) atomicAdd(&hist[e], 1u);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    if (hist[e]) atomicAdd(reinterpret_cast<unsigned long long*>(row + e), (unsigned long long)hist[e]);
}

}  // namespace

EP_API epResult_t epEplbAccumulateLoad(const int* counts, int numCounts, const int* phy2log, int numExperts,
                                       long long* loadRow, cudaStream_t stream) {
  static const char* fn = "epEplbAccumulateLoad";
  EP_ARG_CHECK(numExperts >= 1, "%s: numExperts must be >= 1, got %d", fn, numExperts);
  EP_ARG_CHECK(numCounts >= 0, "%s: numCounts must be >= 0, got %d", fn, numCounts);
  EP_ARG_CHECK(phy2log != nullptr || numCounts == numExperts,
               "%s: without phy2log, numCounts (%d) must equal numExperts (%d)", fn, numCounts, numExperts);
  if (numCounts == 0) return epSuccess;
  EP_PTR_CHECK(counts, fn);
  EP_PTR_CHECK(loadRow, fn);
  const int threads = 256;
  int blocks = (numCounts + threads - 1) / threads;
  if (blocks > 1024) blocks = 1024;
  accumulateCountsKernel<<<blocks, threads, 0, stream>>>(counts, numCounts, phy2log, numExperts, loadRow);
  CUDACHECK_LAUNCH();
  return epSuccess;
}

EP_API epResult_t epEplbAccumulateTopk(const void* topkIdx, epDataType_t idType, int numTokens, int topk,
                                       int numExperts, long long* loadRow, cudaStream_t stream) {
  static const char* fn = "epEplbAccumulateTopk";
  EP_ARG_CHECK(idType == epInt32 || idType == epInt64, "%s: idType must be epInt32 or epInt64, got %d", fn,
               (int)idType);
  EP_ARG_CHECK(numTokens >= 0 && topk >= 1, "%s: need numTokens >= 0 and topk >= 1, got %d and %d", fn, numTokens,
               topk);
  // The histogram lives in shared memory: 4 bytes per expert within the 48 KiB default.
  EP_ARG_CHECK(numExperts >= 1 && numExperts <= 12288, "%s: numExperts must be in [1, 12288], got %d", fn,
               numExperts);
  if (numTokens == 0) return epSuccess;
  EP_PTR_CHECK(topkIdx, fn);
  EP_PTR_CHECK(loadRow, fn);
  const long long n = (long long)numTokens * topk;
  const int threads = 256;
  long long blocks = (n + threads - 1) / threads;
  if (blocks > 264) blocks = 264;  // a couple of waves; each block adds its histogram once
  const size_t smem = sizeof(unsigned int) * (size_t)numExperts;
  if (idType == epInt64)
    accumulateTopkKernel<long long><<<(unsigned)blocks, threads, smem, stream>>>(
        static_cast<const long long*>(topkIdx), n, numExperts, loadRow);
  else
    accumulateTopkKernel<int><<<(unsigned)blocks, threads, smem, stream>>>(static_cast<const int*>(topkIdx), n,
                                                                           numExperts, loadRow);
  CUDACHECK_LAUNCH();
  return epSuccess;
}
