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

#endif  // EP_LL_PERF_SPIN_H_
