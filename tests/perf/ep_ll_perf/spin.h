/*************************************************************************
 * ep_ll_perf: busy-wait kernel and the launch-floor kernel (see spin.cu).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_LL_PERF_SPIN_H_
#define EP_LL_PERF_SPIN_H_

#include <cstddef>

#include <cuda_runtime_api.h>

cudaError_t llPerfSpin(unsigned long long ns, cudaStream_t stream);

/* An empty kernel launched like the LL kernels (blocks x threads, dynamic
 * shared memory, optionally cooperative): its event time is the floor any
 * LL launch pays before doing work. */
cudaError_t llPerfEmpty(int blocks, int threads, size_t smem, bool coop, cudaStream_t stream);

/* Instruction-cache probe (spin.cu): stamps[3 * block + {0,1,2}] = time
 * before, between and after two passes over the same ~32 KB of code. */
cudaError_t llPerfBigCode(int blocks, unsigned long long* stamps, float* sink, cudaStream_t stream);

#endif  // EP_LL_PERF_SPIN_H_
