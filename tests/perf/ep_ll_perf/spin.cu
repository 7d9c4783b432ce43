/*************************************************************************
 * ep_ll_perf: a kernel that keeps the stream busy for a while, so that the
 * events and the call enqueued behind it are timed on the GPU alone (not the
 * host's launch latency on an idle stream).
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
}  // namespace

cudaError_t llPerfSpin(unsigned long long ns, cudaStream_t stream) {
  spinKernel<<<1, 32, 0, stream>>>(ns);
  return cudaGetLastError();
}
