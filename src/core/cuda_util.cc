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
  char raw[64];
  CUDACHECK(cudaDeviceGetPCIBusId(raw, (int)sizeof(raw), dev));
  // One spelling everywhere (hwloc, NVML and sysfs differ in case and domain
  // width): "dddd:bb:dd.f", lower case.
  unsigned dom = 0, bus = 0, d = 0, fn = 0;
  if (sscanf(raw, "%x:%x:%x.%x", &dom, &bus, &d, &fn) == 4) {
    snprintf(busId, len, "%04x:%02x:%02x.%x", dom, bus, d, fn);
  } else {
    snprintf(busId, len, "%s", raw);
    for (char* p = busId; *p; p++) *p = (char)tolower(*p);
  }
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
