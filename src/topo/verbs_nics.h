/*************************************************************************
 * epcomm: the verbs NICs of the live machine (name, PCI bus id, ports).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_TOPO_VERBS_NICS_H_
#define EP_TOPO_VERBS_NICS_H_

#include <string>
#include <vector>

struct epVerbsNic {
  std::string name;
  std::string busId;            /* "" when sysfs does not say */
  std::vector<int> activePorts;
  std::string linkLayer;        /* of the first active port */
};

/* Empty when libibverbs is missing or there are no devices: never an error. */
std::vector<epVerbsNic> epTopoListVerbsNics();

#endif  // EP_TOPO_VERBS_NICS_H_
