/*************************************************************************
 * epcomm: allocation of proxy rings (see net_ring.h for the protocol).
 * SPDX-License-Identifier: Apache-2.0
 *
 * GPU mode: slots and ctl in cudaHostAlloc(Mapped|Portable) memory (the GPU
 * writes descriptors over PCIe, the proxy reads them from local DRAM, so
 * the CPU side never polls across the bus), the claim counter in device
 * memory (GPU atomics stay on the device). Host mode (CPU tests, host
 * producers): everything in ordinary aligned host memory.
 *************************************************************************/
#ifndef EP_TRANSPORT_RING_ALLOC_H_
#define EP_TRANSPORT_RING_ALLOC_H_

#include <cstdint>

#include "epcomm.h"
#include "transports/proxy/net_ring.h"

struct epNetRingMem {
  epNetRing host{};   /* host pointers: the proxy's view (and host producers') */
  epNetRing dev{};    /* device pointers: what kernels get (== host in host mode) */
  bool gpu = false;
};

/* capacity: a power of two >= 2. */
epResult_t epNetRingAlloc(uint32_t capacity, int channel, int nranks, bool gpu, epNetRingMem* out);
epResult_t epNetRingFree(epNetRingMem* mem);

#endif  // EP_TRANSPORT_RING_ALLOC_H_
