/*************************************************************************
 * epcomm: one rank's topology view at init (see topo.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <algorithm>
#include <cstdlib>

#include "core/checks.h"
#include "core/comm.h"
#include "topo/topo.h"

epResult_t epTopoCommInit(epComm* comm) {
  std::shared_ptr<const epTopoMachine> m;
  epResult_t res = epTopoMachineShared(&m);
  if (res != epSuccess) {
    // A topology file the user asked for must load; a live machine hwloc cannot
    // read only loses placement hints (NIC choice, CPU affinity), not correctness.
    if (getenv("EP_TOPO_FILE")) return res;
    EP_WARN("TOPO: topology discovery failed; continuing without NUMA/NIC placement");
    auto empty = std::make_shared<epTopoMachine>();
    empty->source = "unavailable";
    m = empty;
  }
  auto* view = new epTopoSystem();
  view->machine = m;
  const std::string& bus = comm->rankBusId[comm->rank];
  for (size_t g = 0; g < m->gpus.size(); g++)
    if (!bus.empty() && m->gpus[g].busId == bus) view->gpu = (int)g;
  if (view->gpu >= 0) {
    // Spread the NICs over the GPUs this communicator uses on this node (the
    // same set in every local process), not over every GPU in the box.
    std::vector<std::string> nodeGpus;
    for (int r : comm->nodeRanks) {
      const std::string& b = comm->rankBusId[r];
      if (!b.empty() && std::find(nodeGpus.begin(), nodeGpus.end(), b) == nodeGpus.end()) nodeGpus.push_back(b);
    }
    std::vector<std::vector<int>> among = epTopoAssignAmong(*m, nodeGpus);
    for (size_t i = 0; i < nodeGpus.size(); i++)
      if (nodeGpus[i] == bus) view->nics = among[i];
    view->numa = m->gpus[view->gpu].numa;
    view->cpuset = m->gpus[view->gpu].cpuset;
  } else {
    for (size_t n = 0; n < m->nics.size(); n++) view->nics.push_back((int)n);
  }
  std::string nicNames;
  for (int n : view->nics) nicNames += (nicNames.empty() ? "" : ",") + m->nics[n].name;
  EP_INFO(EP_LOG_TOPO | EP_LOG_INIT, "TOPO: rank %d GPU %s NUMA %d CPUs %s NICs %s", comm->rank,
          bus.empty() ? "none" : bus.c_str(), view->numa, view->cpuset.empty() ? "?" : view->cpuset.c_str(),
          nicNames.empty() ? "none" : nicNames.c_str());
  comm->topo = view;
  return epSuccess;
}

void epTopoFree(epTopoSystem* topo) { delete topo; }
