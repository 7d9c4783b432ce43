/*************************************************************************
 * ep_ll_perf: busy-wait kernel (see spin.cu).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_LL_PERF_SPIN_H_
#define EP_LL_PERF_SPIN_H_

#include <cuda_runtime_api.h>

cudaError_t llPerfSpin(unsigned long long ns, cudaStream_t stream);

#endif  // EP_LL_PERF_SPIN_H_
