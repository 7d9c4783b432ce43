/*************************************************************************
 * epcomm: CUDA queries tolerant of a missing GPU (see cuda_util.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/cuda_util.h"

#include <cctype>
#include <cstdio>

#include <cuda_runtime_api.h>

#include "core/checks.h"

int epCudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

int epCudaCurrentDevice() {
  if (epCudaDeviceCount() == 0) return -1;
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return dev;
}

epResult_t epCudaBusId(int dev, char* busId, size_t len) {
  CUDACHECK(cudaDeviceGetPCIBusId(busId, (int)len, dev));
  for (char* p = busId; *p; p++) *p = (char)tolower(*p);
  return epSuccess;
}

epResult_t epCudaPeerReachable(int dev, const char* peerBusId, int* can) {
  *can = 0;
  int peer = -1;
  if (cudaDeviceGetByPCIBusId(&peer, peerBusId) != cudaSuccess) {
    (void)cudaGetLastError();
    EP_INFO(EP_LOG_INIT, "GPU %s is not visible in this process: treating it as not P2P-reachable", peerBusId);
    return epSuccess;
  }
  if (peer == dev) {
    *can = 1;
    return epSuccess;
  }
  CUDACHECK(cudaDeviceCanAccessPeer(can, dev, peer));
  return epSuccess;
}
