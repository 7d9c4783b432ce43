/*************************************************************************
 * epcomm: proxy ring allocation (see ring_alloc.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/proxy/ring_alloc.h"

#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include "core/checks.h"

epResult_t epNetRingAlloc(uint32_t capacity, int channel, int nranks, bool gpu, epNetRingMem* out) {
  EP_ARG_CHECK(capacity >= 2 && (capacity & (capacity - 1)) == 0,
               "proxy ring: capacity %u must be a power of two >= 2 (EP_PROXY_RING_SLOTS)", capacity);
  epResult_t res = epSuccess;
  *out = epNetRingMem();
  out->gpu = gpu;
  const size_t slotBytes = sizeof(epNetSlot) * capacity;
  epNetRing& h = out->host;
  h.capacity = capacity;
  h.channel = channel;
  h.nranks = nranks;
  h.nwindows = 0;
  if (!gpu) {
    h.slots = static_cast<epNetSlot*>(aligned_alloc(64, slotBytes));
    h.ctl = static_cast<epNetRingCtl*>(aligned_alloc(64, sizeof(epNetRingCtl)));
    h.claim = static_cast<uint64_t*>(aligned_alloc(64, 64));
    if (!h.slots || !h.ctl || !h.claim) {
      EP_WARN("proxy ring: out of host memory (%zu bytes)", slotBytes);
      epNetRingFree(out);
      return epSystemError;
    }
    memset(h.slots, 0, slotBytes);
    memset(h.ctl, 0, sizeof(epNetRingCtl));
    *h.claim = 0;
    out->dev = h;
    return epSuccess;
  }
  void* p = nullptr;
  CUDACHECKGOTO(cudaHostAlloc(&p, slotBytes, cudaHostAllocMapped | cudaHostAllocPortable), res, fail);
  h.slots = static_cast<epNetSlot*>(p);
  memset(h.slots, 0, slotBytes);
  CUDACHECKGOTO(cudaHostAlloc(&p, sizeof(epNetRingCtl), cudaHostAllocMapped | cudaHostAllocPortable), res, fail);
  h.ctl = static_cast<epNetRingCtl*>(p);
  memset(h.ctl, 0, sizeof(epNetRingCtl));
  CUDACHECKGOTO(cudaMalloc(&p, sizeof(uint64_t)), res, fail);
  CUDACHECKGOTO(cudaMemset(p, 0, sizeof(uint64_t)), res, fail);
  h.claim = static_cast<uint64_t*>(p);  // device memory: the host view never dereferences it
  out->dev = h;
  CUDACHECKGOTO(cudaHostGetDevicePointer(reinterpret_cast<void**>(&out->dev.slots), h.slots, 0), res, fail);
  CUDACHECKGOTO(cudaHostGetDevicePointer(reinterpret_cast<void**>(&out->dev.ctl), h.ctl, 0), res, fail);
  return epSuccess;
fail:
  epNetRingFree(out);
  return res;
}

epResult_t epNetRingFree(epNetRingMem* mem) {
  epNetRing& h = mem->host;
  if (!mem->gpu) {
    free(h.slots);
    free(h.ctl);
    free(h.claim);
  } else {
    if (h.slots) cudaFreeHost(h.slots);
    if (h.ctl) cudaFreeHost(h.ctl);
    if (h.claim) cudaFree(h.claim);
  }
  *mem = epNetRingMem();
  return epSuccess;
}
