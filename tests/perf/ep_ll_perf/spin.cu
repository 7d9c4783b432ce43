/*************************************************************************
 * ep_ll_perf: a kernel that keeps the stream busy for a while, so that the
 * events and the call enqueued behind it are timed on the GPU alone (not the
 * host's launch latency on an idle stream); and an empty kernel for the
 * launch floor.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/perf/ep_ll_perf/spin.h"

namespace {
__global__ void spinKernel(unsigned long long ns) {
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}
__global__ void emptyKernel(int* sink) {
  extern __shared__ int smem[];
  if (sink != nullptr && threadIdx.x == 0) sink[blockIdx.x] = smem[0];
}
}  // namespace

cudaError_t llPerfSpin(unsigned long long ns, cudaStream_t stream) {
  spinKernel<<<1, 32, 0, stream>>>(ns);
  return cudaGetLastError();
}

cudaError_t llPerfEmpty(int blocks, int threads, size_t smem, bool coop, cudaStream_t stream) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = coop ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int* sink = nullptr;
  void* args[] = {&sink};
  return cudaLaunchKernelExC(&cfg, (void*)emptyKernel, args);
}
