/*************************************************************************
 * epcomm: where each rank lives (host, node, local index), computed from the
 * identities every rank publishes at init. Pure function: unit-tested
 * without processes or GPUs.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Nodes are physical hosts in order of their lowest rank. With emulateNodes
 * = N > 1 (EP_EMULATE_NODES) each host's ranks, in rank order, are split into
 * N virtual nodes of equal size, so that one 4-GPU host can stand in for two
 * 2-GPU nodes; a host whose rank count N does not divide is an error.
 *************************************************************************/
#ifndef EP_PLACEMENT_H_
#define EP_PLACEMENT_H_

#include <cstdint>
#include <vector>

#include "epcomm.h"

/* What each rank publishes (fixed size: it travels over the bootstrap). */
struct epRankIdentity {
  uint64_t hostHash;
  int32_t cudaDev;     /* -1: no GPU */
  uint64_t procToken;  /* epProcessToken(): equal => same process */
  char busId[32];      /* PCI bus id of the GPU ("0000:19:00.0"), "" without GPU */
  char hostName[64];
};

struct epPlacement {
  int nNodes = 0;
  std::vector<int> rankNode;   /* [nranks] */
  std::vector<int> rankLocal;  /* [nranks] index within the node */
  std::vector<int> nodeSize;   /* [nNodes] ranks per node */
  std::vector<int> rankHost;   /* [nranks] index of the physical host */
};

epResult_t epPlacementCompute(const std::vector<epRankIdentity>& ids, int emulateNodes, epPlacement* out);

#endif  // EP_PLACEMENT_H_
