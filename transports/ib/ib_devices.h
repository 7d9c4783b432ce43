/*************************************************************************
 * epcomm: verbs ports usable by the transport, and which one a GPU uses.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Enumeration keeps ACTIVE ports on InfiniBand or Ethernet (RoCE) links that
 * pass EP_IB_HCA (NCCL grammar, core/name_filter.h). The NIC of a GPU is the
 * PCI-nearest port: the fewest PCI tree edges between the GPU and the NIC in
 * sysfs (through their deepest common bridge); NICs under another root
 * complex rank behind every NIC under the same one. Several GPUs at the same
 * distance from several NICs are spread over them by local rank, so two GPUs
 * behind one PCIe switch with two NICs use one NIC each.
 *************************************************************************/
#ifndef EP_TRANSPORT_IB_DEVICES_H_
#define EP_TRANSPORT_IB_DEVICES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/name_filter.h"
#include "epcomm.h"
#include "transports/ib/ibvwrap.h"

struct epIbPort {
  std::string dev;        /* "mlx5_0" */
  int devIndex = -1;      /* index in ibv_get_device_list */
  int port = 0;           /* verbs port number (1-based) */
  int linkLayer = 0;      /* IBV_LINK_LAYER_INFINIBAND / _ETHERNET */
  int activeMtu = 0;      /* enum ibv_mtu */
  uint16_t lid = 0;
  uint32_t maxMsgSz = 0;
  int gidTblLen = 0;
  int maxQpWr = 0;        /* device max_qp_wr */
  std::string pciPath;    /* realpath of /sys/class/infiniband/<dev>/device, "" if unknown */
};

/* Enumerates usable ports. Returns epNotSupported (with `why`) when verbs
 * are missing or no port qualifies; the list is then empty. `sysfsRoot` is
 * "/sys" except in tests. */
epResult_t epIbListPorts(const epIbvFns* ibv, const epNameFilter& filter, const std::string& sysfsRoot,
                         std::vector<epIbPort>* out, std::string* why);

/* Number of PCI tree edges between two sysfs device paths, through their
 * deepest common ancestor; paths under different root complexes
 * (/sys/devices/pciDDDD:BB) get a large penalty. -1 when a path is empty. */
int epIbPciDistance(const std::string& a, const std::string& b);

/* realpath of <sysfsRoot>/bus/pci/devices/<busId>, "" if unknown. */
std::string epIbGpuPciPath(const std::string& sysfsRoot, const char* busId);

/* Index into `ports` of the port GPU `gpuPciPath` should use (-1 when
 * ports is empty). Ties at the best distance go round-robin by localRank. */
int epIbChoosePort(const std::vector<epIbPort>& ports, const std::string& gpuPciPath, int localRank);

#endif  // EP_TRANSPORT_IB_DEVICES_H_
