/*************************************************************************
 * epcomm: CUDA queries that must also work with no GPU or no driver
 * (CPU tests, ep-topo on a build machine): each failure is treated as "no
 * device" and the sticky CUDA error is cleared.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_CUDA_UTIL_H_
#define EP_CUDA_UTIL_H_

#include <cstddef>

#include "epcomm.h"

/* Visible CUDA devices; 0 without a driver or GPU. */
int epCudaDeviceCount();
/* The calling thread's current device, or -1 when there is none. */
int epCudaCurrentDevice();
/* Lower-case PCI bus id "0000:19:00.0" of `dev`. */
epResult_t epCudaBusId(int dev, char* busId, size_t len);
/* *can = 1 if `dev` can load/store the memory of the GPU with PCI bus id
 * `peerBusId` (visible in this process); 0 when it cannot or is not visible. */
epResult_t epCudaPeerReachable(int dev, const char* peerBusId, int* can);

#endif  // EP_CUDA_UTIL_H_
