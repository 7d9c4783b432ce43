/*************************************************************************
 * epcomm: topology discovery (placeholder interface; see topo.cc).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_TOPO_H_
#define EP_TOPO_H_

#include "epcomm.h"

struct epComm;
struct epTopoSystem;

/* Per-rank topology view at init (NUMA, CPU set, nearest NICs). */
epResult_t epTopoCommInit(epComm* comm);
void epTopoFree(epTopoSystem* topo);

#endif  // EP_TOPO_H_
