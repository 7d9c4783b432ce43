/*************************************************************************
 * epcomm: pin the calling thread to the CPUs of a GPU's NUMA node (hwloc).
 * SPDX-License-Identifier: Apache-2.0
 *
 * The proxy reads the rings from host memory and writes doorbells to the
 * NIC: running it on the GPU's (and NIC's) socket avoids crossing the
 * inter-socket link on every descriptor. EP_PROXY_AFFINITY=0 disables it.
 * Best effort: failure only logs at INFO (the thread runs unpinned).
 *************************************************************************/
#ifndef EP_TRANSPORT_PROXY_AFFINITY_H_
#define EP_TRANSPORT_PROXY_AFFINITY_H_

#include <string>

/* Pins to `cpuset` (hwloc list form "0-27,56-83", as src/topo computes for the
 * rank) when it is not empty, else to the CPUs hwloc finds near the GPU.
 * Returns true when the thread was pinned. */
bool epProxyBindToGpu(int cudaDev, const std::string& cpuset = "");

#endif  // EP_TRANSPORT_PROXY_AFFINITY_H_
