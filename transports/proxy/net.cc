/*************************************************************************
 * epcomm: the network path of a communicator (see net.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/proxy/net.h"

#include <cstring>
#include <set>

#include <cuda_runtime.h>

#include "bootstrap/bootstrap.h"
#include "core/checks.h"
#include "core/comm.h"
#include "core/param.h"
#include "topo/topo.h"
#include "transports/emulated/emu_backend.h"
#include "transports/ib/ib_backend.h"

EP_PARAM(ProxyRingSlots, "PROXY_RING_SLOTS", 1024)

namespace {

void netFree(epComm* comm) {
  epNetState* net = comm->net;
  if (net == nullptr) return;
  if (net->proxy) net->proxy->stop();
  net->proxy.reset();
  if (net->backend && net->windows) {
    for (int id = 0; id < EP_NET_MAX_WINDOWS; id++) {
      if (net->windows->get(id)) {
        net->windows->retire(id);
        net->backend->deregisterWindow(id);
      }
    }
  }
  net->backend.reset();
  if (net->devRings) {
    cudaFree(net->devRings);
    comm->deviceBytes -= sizeof(epNetRing) * net->nChannels;
  }
  for (auto& r : net->rings) epNetRingFree(&r);
  delete net;
  comm->net = nullptr;
}

/* Copies the rings' device views (with the current window count) to the GPU. */
epResult_t publishDevRings(epComm* comm, epNetState* net) {
  int nwin = net->windows->count();
  std::vector<epNetRing> v(net->nChannels);
  for (int c = 0; c < net->nChannels; c++) {
    net->rings[c].host.nwindows = nwin;
    net->rings[c].dev.nwindows = nwin;
    v[c] = net->rings[c].dev;
  }
  if (comm->cudaDev < 0) return epSuccess;
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  CUDACHECK(cudaMemcpy(net->devRings, v.data(), sizeof(epNetRing) * v.size(), cudaMemcpyHostToDevice));
  return epSuccess;
}

epResult_t chooseKind(epComm* comm, epNetKind* kind) {
  epNetSelectInput in;
  in.requested = comm->config.net;
  in.emulateNodes = comm->config.emulateNodes;
  in.nHosts = (int)std::set<uint64_t>(comm->rankHostHash.begin(), comm->rankHostHash.end()).size();
  const bool needIb = !(in.requested == "emulated" || (in.requested.empty() && in.emulateNodes > 1));
  if (needIb) {
    epResult_t r = epIbProbe(comm, &in.ibWhy);
    in.ibAvailable = r == epSuccess;
  }
  std::string msg;
  epResult_t res = epNetSelect(in, kind, &msg);
  if (res != epSuccess) EP_WARN("Net: %s", msg.c_str());
  return res;
}

/* Builds everything of a fresh comm->net; the caller frees it on failure. */
epResult_t netSetup(epComm* comm, epNetState* net, int nHt, int nLl, int64_t slots) {
  const int nChannels = nHt + nLl;
  net->nChannels = nChannels;
  net->nLlChannels = nLl;
  net->windows.reset(new epNetWindowTable(comm->nranks));
  const bool gpu = comm->cudaDev >= 0;
  if (gpu) CUDACHECK(cudaSetDevice(comm->cudaDev));
  net->rings.resize(nChannels);
  for (int c = 0; c < nChannels; c++)
    EPCHECK(epNetRingAlloc((uint32_t)slots, c, comm->nranks, gpu, &net->rings[c]));
  if (gpu) {
    CUDACHECK(cudaMalloc(&net->devRings, sizeof(epNetRing) * nChannels));
    comm->deviceBytes += sizeof(epNetRing) * nChannels;
  }
  EPCHECK(publishDevRings(comm, net));
  if (net->kind == EP_NET_KIND_EMULATED)
    EPCHECK(epEmuBackendCreate(comm, nChannels, &net->backend));
  else
    EPCHECK(epIbBackendCreate(comm, nHt, nLl, &net->backend));

  std::vector<epNetRing> hostRings;
  for (auto& r : net->rings) hostRings.push_back(r.host);
  epProxyOptions opt;
  opt.rank = comm->rank;
  opt.cudaDev = comm->cudaDev;
  if (comm->topo) opt.cpuset = comm->topo->cpuset;
  opt.onError = [comm](epResult_t res, const char* msg) { epCommSetAsyncError(comm, res, "net proxy: %s", msg); };
  net->proxy.reset(new epProxy(net->backend.get(), net->windows.get(), hostRings, opt));
  EPCHECK(net->proxy->start());

  net->dev.rings = net->devRings;
  net->dev.nChannels = nChannels;
  net->dev.rank = comm->rank;
  net->dev.nranks = comm->nranks;
  net->dev.timeoutNs = epCommWaitTimeoutNs(comm);
  net->dev.status = comm->devStatusDev;  // device alias of the host-mapped status
  EP_INFO(EP_LOG_NET, "Net: %s backend, %d HT + %d LL channels x %lld ring slots", net->backend->name(), nHt, nLl,
          (long long)slots);
  return epBootstrapBarrier(comm->bootstrap);
}

}  // namespace

epResult_t epNetInit(epComm* comm, int nHt, int nLl) {
  EP_ARG_CHECK(nHt >= 0 && nLl >= 0 && nHt + nLl > 0 && nHt + nLl <= 1024,
               "Net: %d HT + %d LL channels out of range [1, 1024]", nHt, nLl);
  if (comm->net != nullptr) {
    const epNetState* n = comm->net;
    EP_USAGE_CHECK(nHt <= n->nChannels - n->nLlChannels && nLl <= n->nLlChannels,
                   "Net: already set up with %d HT + %d LL channels, %d + %d requested (the first user sizes it)",
                   n->nChannels - n->nLlChannels, n->nLlChannels, nHt, nLl);
    return epSuccess;
  }
  epNetKind kind;
  EPCHECK(chooseKind(comm, &kind));
  const int64_t slots = epParamProxyRingSlots();
  EP_ARG_CHECK(slots >= 2 && slots <= (1 << 20) && (slots & (slots - 1)) == 0,
               "EP_PROXY_RING_SLOTS=%lld must be a power of two in [2, 2^20]", (long long)slots);
  comm->net = new epNetState();
  comm->net->kind = kind;
  epResult_t res = netSetup(comm, comm->net, nHt, nLl, slots);
  if (res != epSuccess) {
    netFree(comm);  // a later epNetInit starts from scratch instead of finding half a state
    return res;
  }
  epCommAddCleanup(comm, netFree);
  return epSuccess;
}

epResult_t epNetRegisterWindow(epComm* comm, void* base, size_t bytes, int* id) {
  EP_USAGE_CHECK(comm->net != nullptr, "Net: epNetRegisterWindow before epNetInit");
  EP_PTR_CHECK(base, "epNetRegisterWindow");
  EP_PTR_CHECK(id, "epNetRegisterWindow");
  EP_ARG_CHECK(bytes > 0 && bytes <= EP_NET_MAX_OFFSET, "Net: window size %zu out of range", bytes);
  EP_ARG_CHECK(((uintptr_t)base & 7) == 0, "Net: window base %p must be 8-byte aligned (signal words)", base);
  epNetState* net = comm->net;
  cudaPointerAttributes attr;
  bool isDevice = false;
  if (cudaPointerGetAttributes(&attr, base) == cudaSuccess) isDevice = attr.type == cudaMemoryTypeDevice;
  (void)cudaGetLastError();
  // Agree on the id and learn every peer's size in one exchange.
  struct Info {
    int32_t id;
    int32_t pad;
    uint64_t bytes;
  };
  std::vector<Info> all(comm->nranks);
  all[comm->rank].id = net->windows->freeId();
  all[comm->rank].bytes = bytes;
  EPCHECK(epBootstrapAllGather(comm->bootstrap, all.data(), sizeof(Info)));
  std::vector<uint64_t> peerBytes(comm->nranks);
  for (int r = 0; r < comm->nranks; r++) {
    if (all[r].id != all[0].id) {
      EP_WARN("Net: window registration out of step: rank 0 gets id %d, rank %d id %d (register windows in the same "
              "order on every rank)", all[0].id, r, all[r].id);
      return epInvalidUsage;
    }
    peerBytes[r] = all[r].bytes;
  }
  EP_USAGE_CHECK(all[0].id >= 0, "Net: all %d windows are in use", EP_NET_MAX_WINDOWS);
  EPCHECK(net->backend->registerWindow(all[0].id, base, bytes, isDevice));
  net->windows->publish(all[0].id, base, bytes, isDevice, std::move(peerBytes));
  EPCHECK(publishDevRings(comm, net));
  EPCHECK(epBootstrapBarrier(comm->bootstrap));
  *id = all[0].id;
  EP_INFO(EP_LOG_NET, "Net: window %d = %p, %zu bytes (%s)", *id, base, bytes, isDevice ? "device" : "host");
  return epSuccess;
}

epResult_t epNetDeregisterWindow(epComm* comm, int id) {
  EP_USAGE_CHECK(comm->net != nullptr, "Net: epNetDeregisterWindow before epNetInit");
  epNetState* net = comm->net;
  EP_ARG_CHECK(net->windows->get(id) != nullptr, "Net: window %d is not registered", id);
  EPCHECK(epNetDrain(comm));
  EPCHECK(epBootstrapBarrier(comm->bootstrap));  // no peer still targets it
  net->windows->retire(id);
  EPCHECK(publishDevRings(comm, net));
  EPCHECK(net->backend->deregisterWindow(id));
  return epSuccess;
}

epResult_t epNetGetDevice(epComm* comm, epNetDevice* dev) {
  EP_USAGE_CHECK(comm->net != nullptr, "Net: epNetGetDevice before epNetInit");
  *dev = comm->net->dev;
  return epSuccess;
}

epResult_t epNetCheck(epComm* comm) {
  if (comm->net == nullptr || !comm->net->proxy) return epSuccess;
  std::string msg;
  epResult_t e = comm->net->proxy->error(&msg);
  if (e != epSuccess) EP_WARN("Net: proxy failed: %s", msg.c_str());
  return e;
}

epResult_t epNetDrain(epComm* comm) {
  if (comm->net == nullptr || !comm->net->proxy) return epSuccess;
  return comm->net->proxy->drain(comm->config.timeoutMs);
}
