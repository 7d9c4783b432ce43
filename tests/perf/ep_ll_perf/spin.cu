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
// Instruction-cache probe: the same 2048-FFMA straight-line body (~32 KB of
// code) runs twice per launch; thread 0 of each block stamps the time before,
// between and after. A first pass much slower than the second means the
// instruction cache starts cold at every launch (a cost every LL kernel pays
// on its path through its own code).
__global__ void __launch_bounds__(512, 1) bigCodeKernel(float a, float b, unsigned long long* stamps, float* sink) {
  float acc[8];
#pragma unroll
  for (int i = 0; i < 8; i++) acc[i] = a + (float)(threadIdx.x + i);
  unsigned long long t0, t1 = 0, t2 = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
#pragma unroll 1
  for (int pass = 0; pass < 2; pass++) {
#pragma unroll
    for (int i = 0; i < 2048; i++) acc[i & 7] = fmaf(acc[i & 7], a, (float)i * 0.001f);
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t) : "f"(acc[0]), "f"(acc[7]));
    if (pass == 0) t1 = t; else t2 = t;
  }
  float r = 0.f;
#pragma unroll
  for (int i = 0; i < 8; i++) r += acc[i];
  if (r == 12345.f) sink[threadIdx.x] = r;
  if (threadIdx.x == 0) {
    stamps[3 * blockIdx.x] = t0;
    stamps[3 * blockIdx.x + 1] = t1;
    stamps[3 * blockIdx.x + 2] = t2;
  }
}
}  // namespace

cudaError_t llPerfBigCode(int blocks, unsigned long long* stamps, float* sink, cudaStream_t stream) {
  bigCodeKernel<<<blocks, 512, 0, stream>>>(1.0001f, 0.5f, stamps, sink);
  return cudaGetLastError();
}

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
