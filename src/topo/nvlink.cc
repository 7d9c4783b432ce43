/*************************************************************************
 * epcomm: NVLink detection (see nvlink.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "topo/nvlink.h"

#include <dlfcn.h>

#include <cstdio>

#include <cuda_runtime_api.h>

#include "core/debug.h"

namespace {

// The few NVML types we need (nvml.h is not part of every toolkit install).
typedef struct nvmlDevice_st* nvmlDevice_t;
typedef int nvmlReturn_t; /* 0 = NVML_SUCCESS */
struct nvmlPciInfo {
  char busIdLegacy[16];
  unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
};
constexpr int kNvmlMaxLinks = 18; /* NVML_NVLINK_MAX_LINKS on Hopper */

struct Nvml {
  void* handle = nullptr;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*byBusId)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*linkState)(nvmlDevice_t, unsigned int, int*) = nullptr;
  nvmlReturn_t (*remotePci)(nvmlDevice_t, unsigned int, nvmlPciInfo*) = nullptr;
};

bool nvmlOpen(Nvml* n) {
  n->handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!n->handle) return false;
  *(void**)&n->init = dlsym(n->handle, "nvmlInit_v2");
  *(void**)&n->shutdown = dlsym(n->handle, "nvmlShutdown");
  *(void**)&n->byBusId = dlsym(n->handle, "nvmlDeviceGetHandleByPciBusId_v2");
  *(void**)&n->linkState = dlsym(n->handle, "nvmlDeviceGetNvLinkState");
  *(void**)&n->remotePci = dlsym(n->handle, "nvmlDeviceGetNvLinkRemotePciInfo_v2");
  if (!n->init || !n->shutdown || !n->byBusId || !n->linkState || !n->remotePci || n->init() != 0) {
    dlclose(n->handle);
    n->handle = nullptr;
    return false;
  }
  return true;
}

std::string normBusId(const nvmlPciInfo& p) {
  unsigned d = 0, b = 0, dev = 0, f = 0;
  char out[32];
  if (sscanf(p.busId, "%x:%x:%x.%x", &d, &b, &dev, &f) == 4) snprintf(out, sizeof(out), "%04x:%02x:%02x.%x", d, b, dev, f);
  else snprintf(out, sizeof(out), "%04x:%02x:%02x.0", p.domain, p.bus, p.device);
  return out;
}

bool viaNvml(const std::vector<std::string>& busIds, std::vector<std::vector<int>>* links) {
  Nvml n;
  if (!nvmlOpen(&n)) return false;
  int g = (int)busIds.size();
  std::vector<int> switchLinks(g, 0);
  bool any = false;
  for (int i = 0; i < g; i++) {
    nvmlDevice_t dev;
    if (n.byBusId(busIds[i].c_str(), &dev) != 0) continue;
    any = true;
    for (unsigned l = 0; l < kNvmlMaxLinks; l++) {
      int active = 0;
      if (n.linkState(dev, l, &active) != 0 || !active) continue;
      nvmlPciInfo pci;
      if (n.remotePci(dev, l, &pci) != 0) continue;
      std::string remote = normBusId(pci);
      int j = 0;
      while (j < g && busIds[j] != remote) j++;
      if (j < g) (*links)[i][j]++;
      else switchLinks[i]++;  // the far end is an NVSwitch
    }
  }
  for (int i = 0; i < g; i++)
    for (int j = 0; j < g; j++)
      if (i != j && switchLinks[i] && switchLinks[j])
        (*links)[i][j] += switchLinks[i] < switchLinks[j] ? switchLinks[i] : switchLinks[j];
  n.shutdown();
  dlclose(n.handle);
  return any;
}

bool viaCuda(const std::vector<int>& cudaDevs, std::vector<std::vector<int>>* links) {
  bool any = false;
  int g = (int)cudaDevs.size();
  for (int i = 0; i < g; i++)
    for (int j = 0; j < g; j++) {
      if (i == j || cudaDevs[i] < 0 || cudaDevs[j] < 0) continue;
      int access = 0, atomics = 0;
      if (cudaDeviceGetP2PAttribute(&access, cudaDevP2PAttrAccessSupported, cudaDevs[i], cudaDevs[j]) != cudaSuccess ||
          cudaDeviceGetP2PAttribute(&atomics, cudaDevP2PAttrNativeAtomicSupported, cudaDevs[i], cudaDevs[j]) !=
              cudaSuccess) {
        (void)cudaGetLastError();
        continue;
      }
      any = true;
      (*links)[i][j] = (access && atomics) ? 1 : 0;
    }
  return any;
}

}  // namespace

void epTopoDetectNvlink(const std::vector<std::string>& busIds, const std::vector<int>& cudaDevs,
                        std::vector<std::vector<int>>* links, std::string* source) {
  int g = (int)busIds.size();
  links->assign(g, std::vector<int>(g, 0));
  *source = "none";
  if (g == 0) return;
  if (viaNvml(busIds, links)) {
    *source = "nvml";
  } else {
    links->assign(g, std::vector<int>(g, 0));
    if (viaCuda(cudaDevs, links)) *source = "cuda-p2p";
  }
  EP_INFO(EP_LOG_TOPO, "TOPO: NVLink matrix of %d GPUs from %s", g, source->c_str());
}
