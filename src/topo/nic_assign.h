/*************************************************************************
 * epcomm: GPU -> NIC assignment from a distance table (pure, unit-tested).
 * SPDX-License-Identifier: Apache-2.0
 *
 * For each GPU the nearest NICs are those with the smallest (path class,
 * hop count). GPUs whose nearest sets are identical share those NICs
 * round-robin, in GPU order: with G GPUs and N NICs in a group each GPU gets
 * ceil(N/G) NICs (N >= G) or NIC k mod N (N < G), so no NIC is left idle
 * and no NIC serves two GPUs while another has none.
 *************************************************************************/
#ifndef EP_TOPO_NIC_ASSIGN_H_
#define EP_TOPO_NIC_ASSIGN_H_

#include <vector>

/* path/hops: [gpu][nic]. Outputs [gpu] lists of NIC indices. */
void epTopoAssignNics(const std::vector<std::vector<int>>& path, const std::vector<std::vector<int>>& hops,
                      std::vector<std::vector<int>>* nearest, std::vector<std::vector<int>>* assigned);

#endif  // EP_TOPO_NIC_ASSIGN_H_
