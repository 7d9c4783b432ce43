/*************************************************************************
 * epcomm: HT intranode — launch attributes of the direct dispatch.
 *
 * Programmatic dependent launch (the dispatch after its notify) and thread
 * block clusters. A cluster's blocks are co-scheduled on one GPC, so the
 * cluster size is how the channel blocks are grouped onto GPCs: the NVLink
 * store/load rate the channels reach depends on where their SMs are
 * (bench/results/ht_notes.md, "Block placement"), and clusters are the one
 * placement control that does not depend on the GPU being idle.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_INTRANODE_HT_LAUNCH_H_
#define EP_INTRANODE_HT_LAUNCH_H_

#include <cuda_runtime.h>

/* Fills cfg's attributes (attrs must hold 2): PDL when `pdl`, and a cluster
 * of the largest power of two <= `cluster` (and <= 8, the portable limit)
 * that divides the grid. */
inline void epHtSetLaunchAttrs(cudaLaunchConfig_t* cfg, cudaLaunchAttribute* attrs, bool pdl, int cluster) {
  int n = 0;
  if (pdl) {
    attrs[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[n].val.programmaticStreamSerializationAllowed = 1;
    n++;
  }
  int cl = 1;
  while (cl * 2 <= cluster && cl * 2 <= 8 && cfg->gridDim.x % (unsigned)(cl * 2) == 0) cl *= 2;
  if (cl > 1) {
    attrs[n].id = cudaLaunchAttributeClusterDimension;
    attrs[n].val.clusterDim.x = (unsigned)cl;
    attrs[n].val.clusterDim.y = 1;
    attrs[n].val.clusterDim.z = 1;
    n++;
  }
  cfg->attrs = attrs;
  cfg->numAttrs = (unsigned)n;
}

#endif  // EP_INTRANODE_HT_LAUNCH_H_
