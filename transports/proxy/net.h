/*************************************************************************
 * epcomm: the network path of a communicator (comm->net).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Owns the backend (verbs or emulated, chosen by epNetSelect), the window
 * table, one ring per channel and the proxy thread. Kernel families call:
 *
 *   epNetInit(comm, nHt, nLl)                  collective, idempotent: the first
 *                                              call sizes it (channels [0, nHt)
 *                                              HT, [nHt, nHt + nLl) LL traffic);
 *                                              later calls must not ask for more
 *   epNetRegisterWindow(comm, base, bytes, &id) collective: symmetric region id
 *   epNetDeregisterWindow(comm, id)            collective; drains first
 *   epNetGetDevice(comm, &dev)                 the handle kernels post with
 *   epNetCheck(comm)                           proxy error -> epResult_t + WARN
 *   epNetDrain(comm)                           wait for every posted op
 *
 * Teardown is registered with epCommAddCleanup (proxy stopped, rings and
 * windows released) and runs at epCommDestroy after its barrier.
 *************************************************************************/
#ifndef EP_TRANSPORT_NET_H_
#define EP_TRANSPORT_NET_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "epcomm.h"
#include "transports/proxy/net_backend.h"
#include "transports/proxy/net_device.h"
#include "transports/proxy/net_select.h"
#include "transports/proxy/net_window.h"
#include "transports/proxy/proxy.h"
#include "transports/proxy/ring_alloc.h"

struct epComm;

struct epNetState {
  epNetKind kind = EP_NET_KIND_NONE;
  int nChannels = 0;   /* HT + LL */
  int nLlChannels = 0;
  std::unique_ptr<epNetBackend> backend;
  std::unique_ptr<epNetWindowTable> windows;
  std::vector<epNetRingMem> rings;
  epNetRing* devRings = nullptr;  /* device array of the rings' device views */
  std::unique_ptr<epProxy> proxy;
  epNetDevice dev{};
};

epResult_t epNetInit(epComm* comm, int nChannels, int nLlChannels = 0);
epResult_t epNetRegisterWindow(epComm* comm, void* base, size_t bytes, int* id);
epResult_t epNetDeregisterWindow(epComm* comm, int id);
epResult_t epNetGetDevice(epComm* comm, epNetDevice* dev);
epResult_t epNetCheck(epComm* comm);
epResult_t epNetDrain(epComm* comm);


#endif  // EP_TRANSPORT_NET_H_
