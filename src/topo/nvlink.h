/*************************************************************************
 * epcomm: NVLink connectivity between GPUs.
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVML (dlopen "libnvidia-ml.so.1": no link dependency) gives, per GPU and
 * link, whether the link is up and the PCI id of its far end: another GPU
 * (direct link) or an NVSwitch (any id that is not one of our GPUs). Two GPUs
 * that both reach NVSwitches count min(their switch links) as their link
 * count. Without NVML, CUDA P2P attributes decide: peer access with native
 * atomics is reported as NVLink (count 1); PCIe P2P lacks native atomics.
 *************************************************************************/
#ifndef EP_TOPO_NVLINK_H_
#define EP_TOPO_NVLINK_H_

#include <string>
#include <vector>

/* busIds/cudaDevs: [gpu]. links: [gpu][gpu] (0 = none). source: "nvml", "cuda-p2p" or "none". */
void epTopoDetectNvlink(const std::vector<std::string>& busIds, const std::vector<int>& cudaDevs,
                        std::vector<std::vector<int>>* links, std::string* source);

#endif  // EP_TOPO_NVLINK_H_
