/*************************************************************************
 * epcomm: verbs NIC enumeration (see verbs_nics.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "topo/verbs_nics.h"

#include <climits>
#include <cstdlib>
#include <cstring>

#include "core/debug.h"
#include "transports/ib/ibvwrap.h"

namespace {
// /sys/class/infiniband/<dev>/device -> .../0000:1a:00.0 : the last path element is the bus id.
std::string sysfsBusId(const char* dev) {
  char link[PATH_MAX], real[PATH_MAX];
  snprintf(link, sizeof(link), "/sys/class/infiniband/%s/device", dev);
  if (realpath(link, real) == nullptr) return "";
  const char* slash = strrchr(real, '/');
  return slash ? std::string(slash + 1) : std::string();
}
}  // namespace

std::vector<epVerbsNic> epTopoListVerbsNics() {
  std::vector<epVerbsNic> out;
  const epIbvFns* ibv = epIbv();
  if (ibv == nullptr) return out;
  int n = 0;
  struct ibv_device** list = ibv->getDeviceList(&n);
  if (list == nullptr) {
    EP_INFO(EP_LOG_NET | EP_LOG_TOPO, "TOPO: ibv_get_device_list failed: no verbs NICs");
    return out;
  }
  for (int i = 0; i < n; i++) {
    epVerbsNic nic;
    nic.name = ibv->getDeviceName(list[i]);
    nic.busId = sysfsBusId(nic.name.c_str());
    struct ibv_context* ctx = ibv->openDevice(list[i]);
    if (ctx) {
      struct ibv_device_attr attr;
      memset(&attr, 0, sizeof(attr));
      if (ibv->queryDevice(ctx, &attr) == 0) {
        for (int p = 1; p <= attr.phys_port_cnt; p++) {
          struct ibv_port_attr pa;
          memset(&pa, 0, sizeof(pa));
          if (ibv->queryPort(ctx, (uint8_t)p, &pa) != 0 || pa.state != IBV_PORT_ACTIVE) continue;
          nic.activePorts.push_back(p);
          if (nic.linkLayer.empty()) nic.linkLayer = pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "IB";
        }
      }
      ibv->closeDevice(ctx);
    }
    EP_INFO(EP_LOG_TOPO, "TOPO: verbs device %s at %s, %zu active port(s)", nic.name.c_str(),
            nic.busId.empty() ? "?" : nic.busId.c_str(), nic.activePorts.size());
    out.push_back(nic);
  }
  ibv->freeDeviceList(list);
  return out;
}
