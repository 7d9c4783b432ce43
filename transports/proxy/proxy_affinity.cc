/*************************************************************************
 * epcomm: proxy thread NUMA pinning (see proxy_affinity.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/proxy/proxy_affinity.h"

#include <hwloc.h>

#include <cstdlib>

#include <cuda_runtime.h>

#include "core/debug.h"
#include "core/param.h"

EP_PARAM(ProxyAffinity, "PROXY_AFFINITY", 1)

bool epProxyBindToGpu(int cudaDev, const std::string& cpuset) {
  if (epParamProxyAffinity() == 0) return false;
  if (!cpuset.empty()) {
    hwloc_topology_t topo;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    bool pinned = false;
    if (set && hwloc_bitmap_list_sscanf(set, cpuset.c_str()) == 0 && !hwloc_bitmap_iszero(set) &&
        hwloc_topology_init(&topo) == 0) {
      // Binding needs a topology object but not a discovered one.
      if (hwloc_topology_load(topo) == 0) pinned = hwloc_set_cpubind(topo, set, HWLOC_CPUBIND_THREAD) == 0;
      hwloc_topology_destroy(topo);
    }
    if (set) hwloc_bitmap_free(set);
    EP_INFO(EP_LOG_PROXY, "proxy affinity: GPU %d -> CPUs %s (from the topology)%s", cudaDev, cpuset.c_str(),
            pinned ? "" : ": binding failed, unpinned");
    if (pinned) return true;
  }
  char busId[32];
  if (cudaDeviceGetPCIBusId(busId, sizeof(busId), cudaDev) != cudaSuccess) {
    EP_INFO(EP_LOG_PROXY, "proxy affinity: no PCI bus id for device %d, thread left unpinned", cudaDev);
    return false;
  }
  hwloc_topology_t topo;
  bool pinned = false;
  if (hwloc_topology_init(&topo) != 0) return false;
  hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_load(topo) == 0) {
    hwloc_obj_t pci = hwloc_get_pcidev_by_busidstring(topo, busId);
    hwloc_obj_t anc = pci ? hwloc_get_non_io_ancestor_obj(topo, pci) : nullptr;
    if (anc && anc->cpuset && !hwloc_bitmap_iszero(anc->cpuset)) {
      pinned = hwloc_set_cpubind(topo, anc->cpuset, HWLOC_CPUBIND_THREAD) == 0;
      char* s = nullptr;
      hwloc_bitmap_list_asprintf(&s, anc->cpuset);
      EP_INFO(EP_LOG_PROXY, "proxy affinity: GPU %d (%s) -> CPUs %s%s", cudaDev, busId, s ? s : "?",
              pinned ? "" : " (hwloc_set_cpubind failed, unpinned)");
      free(s);
    } else {
      EP_INFO(EP_LOG_PROXY, "proxy affinity: GPU %s not found in the hwloc topology, thread left unpinned", busId);
    }
  }
  hwloc_topology_destroy(topo);
  return pinned;
}
