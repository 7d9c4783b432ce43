/*************************************************************************
 * epcomm: verbs port enumeration and NIC choice (see ib_devices.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/ib/ib_devices.h"

#include <climits>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/debug.h"

namespace {

std::string realPath(const std::string& p) {
  char buf[PATH_MAX];
  if (realpath(p.c_str(), buf) == nullptr) return "";
  return buf;
}

std::vector<std::string> split(const std::string& p) {
  std::vector<std::string> out;
  std::stringstream ss(p);
  std::string tok;
  while (std::getline(ss, tok, '/'))
    if (!tok.empty()) out.push_back(tok);
  return out;
}

}  // namespace

int epIbPciDistance(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return -1;
  std::vector<std::string> x = split(a), y = split(b);
  size_t common = 0;
  while (common < x.size() && common < y.size() && x[common] == y[common]) common++;
  int d = (int)(x.size() - common + y.size() - common);
  // Below /sys/devices the next element is the root complex (pciDDDD:BB): not sharing it
  // means crossing the host bridge or the socket link, worse than any PCIe switch path.
  bool sameRoot = false;
  for (size_t i = 0; i < common; i++)
    if (x[i].compare(0, 3, "pci") == 0) sameRoot = true;
  return sameRoot ? d : d + 1000;
}

std::string epIbGpuPciPath(const std::string& sysfsRoot, const char* busId) {
  if (busId == nullptr || *busId == '\0') return "";
  std::string id = busId;
  for (auto& c : id) c = (char)tolower(c);
  return realPath(sysfsRoot + "/bus/pci/devices/" + id);
}

int epIbChoosePort(const std::vector<epIbPort>& ports, const std::string& gpuPciPath, int localRank) {
  if (ports.empty()) return -1;
  int best = INT_MAX;
  std::vector<int> dist(ports.size());
  for (size_t i = 0; i < ports.size(); i++) {
    int d = epIbPciDistance(gpuPciPath, ports[i].pciPath);
    dist[i] = d < 0 ? INT_MAX - 1 : d;  // unknown distance: behind every known one
    if (dist[i] < best) best = dist[i];
  }
  std::vector<int> tied;
  for (size_t i = 0; i < ports.size(); i++)
    if (dist[i] == best) tied.push_back((int)i);
  return tied[(size_t)(localRank < 0 ? 0 : localRank) % tied.size()];
}

epResult_t epIbListPorts(const epIbvFns* ibv, const epNameFilter& filter, const std::string& sysfsRoot,
                         std::vector<epIbPort>* out, std::string* why) {
  out->clear();
  if (ibv == nullptr) {
    *why = "libibverbs.so.1 could not be loaded (rdma-core not installed?)";
    return epNotSupported;
  }
  int n = 0;
  struct ibv_device** list = ibv->getDeviceList(&n);
  if (list == nullptr || n == 0) {
    if (list) ibv->freeDeviceList(list);
    *why = "no RDMA devices (ibv_get_device_list found none)";
    return epNotSupported;
  }
  int seenPorts = 0;
  for (int i = 0; i < n; i++) {
    const char* name = ibv->getDeviceName(list[i]);
    if (name == nullptr) continue;
    struct ibv_context* ctx = ibv->openDevice(list[i]);
    if (ctx == nullptr) {
      EP_INFO(EP_LOG_NET, "NET/IB: cannot open %s, skipped", name);
      continue;
    }
    struct ibv_device_attr dattr;
    memset(&dattr, 0, sizeof(dattr));
    if (ibv->queryDevice(ctx, &dattr) != 0) {
      EP_INFO(EP_LOG_NET, "NET/IB: ibv_query_device(%s) failed, skipped", name);
      ibv->closeDevice(ctx);
      continue;
    }
    for (int p = 1; p <= dattr.phys_port_cnt; p++) {
      struct ibv_port_attr pattr;
      memset(&pattr, 0, sizeof(pattr));
      if (ibv->queryPort(ctx, (uint8_t)p, &pattr) != 0) continue;
      seenPorts++;
      if (pattr.state != IBV_PORT_ACTIVE) {
        EP_INFO(EP_LOG_NET, "NET/IB: %s:%d not active, skipped", name, p);
        continue;
      }
      if (pattr.link_layer != IBV_LINK_LAYER_INFINIBAND && pattr.link_layer != IBV_LINK_LAYER_ETHERNET) continue;
      if (!filter.matches(name, p)) {
        EP_INFO(EP_LOG_NET, "NET/IB: %s:%d excluded by EP_IB_HCA", name, p);
        continue;
      }
      epIbPort port;
      port.dev = name;
      port.devIndex = i;
      port.port = p;
      port.linkLayer = pattr.link_layer;
      port.activeMtu = pattr.active_mtu;
      port.lid = pattr.lid;
      port.maxMsgSz = pattr.max_msg_sz;
      port.gidTblLen = pattr.gid_tbl_len;
      port.maxQpWr = dattr.max_qp_wr;
      port.pciPath = realPath(sysfsRoot + "/class/infiniband/" + name + "/device");
      out->push_back(port);
    }
    ibv->closeDevice(ctx);
  }
  ibv->freeDeviceList(list);
  if (out->empty()) {
    *why = "found " + std::to_string(n) + " RDMA device(s) with " + std::to_string(seenPorts) +
           " port(s), none ACTIVE on IB/RoCE and selected by EP_IB_HCA";
    return epNotSupported;
  }
  return epSuccess;
}
