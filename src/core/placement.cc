/*************************************************************************
 * epcomm: rank placement (see placement.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/placement.h"

#include "core/checks.h"

epResult_t epPlacementCompute(const std::vector<epRankIdentity>& ids, int emulateNodes, epPlacement* out) {
  int n = (int)ids.size();
  if (emulateNodes < 1) {
    EP_WARN("Placement: emulateNodes must be >= 1, got %d", emulateNodes);
    return epInvalidArgument;
  }
  // Distinct hosts, numbered by first appearance.
  std::vector<uint64_t> hosts;
  std::vector<std::vector<int>> hostRanks;
  out->rankHost.assign(n, -1);
  for (int r = 0; r < n; r++) {
    int h = 0;
    while (h < (int)hosts.size() && hosts[h] != ids[r].hostHash) h++;
    if (h == (int)hosts.size()) {
      hosts.push_back(ids[r].hostHash);
      hostRanks.emplace_back();
    }
    hostRanks[h].push_back(r);
    out->rankHost[r] = h;
  }
  out->rankNode.assign(n, -1);
  out->rankLocal.assign(n, -1);
  out->nodeSize.clear();
  for (size_t h = 0; h < hosts.size(); h++) {
    int count = (int)hostRanks[h].size();
    if (count % emulateNodes != 0) {
      EP_WARN("Placement: host %s has %d ranks, which EP_EMULATE_NODES=%d does not divide into equal virtual nodes",
              ids[hostRanks[h][0]].hostName, count, emulateNodes);
      return epInvalidUsage;
    }
    int per = count / emulateNodes;
    for (int i = 0; i < count; i++) {
      int r = hostRanks[h][i];
      out->rankNode[r] = (int)h * emulateNodes + i / per;
      out->rankLocal[r] = i % per;
    }
    for (int g = 0; g < emulateNodes; g++) out->nodeSize.push_back(per);
  }
  out->nNodes = (int)out->nodeSize.size();
  return epSuccess;
}
