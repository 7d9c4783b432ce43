/*************************************************************************
 * ep-topo: human-readable table.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <string>

#include "tools/ep-topo/print.h"

namespace {
std::string nicList(const epTopoMachine& m, const std::vector<int>& idx) {
  std::string s;
  for (int n : idx) s += (s.empty() ? "" : ",") + m.nics[n].name;
  return s.empty() ? "-" : s;
}
std::string ports(const epTopoNic& n) {
  std::string s;
  for (int p : n.activePorts) s += (s.empty() ? "" : ",") + std::to_string(p);
  return s.empty() ? "none" : s;
}
}  // namespace

void epTopoPrintTable(const epTopoMachine& m, FILE* f) {
  fprintf(f, "Host %s (source: %s): %d package(s), %d NUMA node(s), %d core(s), %d PU(s)\n", m.hostName.c_str(),
          m.source.c_str(), m.packages, m.numaNodes, m.cores, m.pus);

  fprintf(f, "\nNUMA nodes: %zu\n", m.numa.size());
  for (const epTopoNuma& n : m.numa)
    fprintf(f, "  node %-3d CPUs %-20s memory %.1f GiB\n", n.os, n.cpuset.empty() ? "?" : n.cpuset.c_str(),
            n.bytes / 1073741824.0);

  fprintf(f, "\nGPUs: %zu%s\n", m.gpus.size(),
          m.gpus.empty() ? " (no CUDA device visible and no NVIDIA GPU in the PCI tree)" : "");
  if (m.hiddenGpus)
    fprintf(f, "  (%d more NVIDIA GPU(s) in the PCI tree are not visible to CUDA here; --all-gpus lists them)\n",
            m.hiddenGpus);
  if (!m.gpus.empty()) {
    fprintf(f, "  %-4s %-5s %-13s %-28s %-5s %s\n", "GPU", "cuda", "bus-id", "model", "NUMA", "CPUs");
    for (size_t g = 0; g < m.gpus.size(); g++) {
      const epTopoGpu& x = m.gpus[g];
      fprintf(f, "  %-4zu %-5s %-13s %-28s %-5d %s\n", g, x.cudaDev < 0 ? "-" : std::to_string(x.cudaDev).c_str(),
              x.busId.c_str(), x.model.c_str(), x.numa, x.cpuset.empty() ? "?" : x.cpuset.c_str());
    }
  }

  fprintf(f, "\nNICs: %zu%s\n", m.nics.size(),
          m.nics.empty() ? " (no verbs devices: libibverbs missing, no HCA, or EP_IB_HCA excludes all)" : "");
  if (!m.nics.empty()) {
    fprintf(f, "  %-4s %-12s %-13s %-5s %-8s %-9s %s\n", "NIC", "name", "bus-id", "NUMA", "ports", "link", "CPUs");
    for (size_t n = 0; n < m.nics.size(); n++) {
      const epTopoNic& x = m.nics[n];
      fprintf(f, "  %-4zu %-12s %-13s %-5d %-8s %-9s %s\n", n, x.name.c_str(), x.busId.empty() ? "?" : x.busId.c_str(),
              x.numa, ports(x).c_str(), x.linkLayer.empty() ? "-" : x.linkLayer.c_str(),
              x.cpuset.empty() ? "?" : x.cpuset.c_str());
    }
  }

  if (!m.gpus.empty()) {
    fprintf(f, "\nNVLink matrix (links per GPU pair; source: %s)\n      ", m.nvlinkSource.c_str());
    for (size_t h = 0; h < m.gpus.size(); h++) fprintf(f, " GPU%-3zu", h);
    fprintf(f, "\n");
    for (size_t g = 0; g < m.gpus.size(); g++) {
      fprintf(f, "  GPU%-3zu", g);
      for (size_t h = 0; h < m.gpus.size(); h++) {
        if (g == h) fprintf(f, " %-6s", "X");
        else if (m.nvlink[g][h] > 0) fprintf(f, " NV%-4d", m.nvlink[g][h]);
        else fprintf(f, " %-6s", "-");
      }
      fprintf(f, "\n");
    }

    fprintf(f, "\nGPU -> NIC map (nearest by PCI distance; ties round-robin)\n");
    fprintf(f, "  %-4s %-13s %-16s %-6s %-24s %s\n", "GPU", "bus-id", "assigned", "path", "nearest", "NUMA/CPUs");
    for (size_t g = 0; g < m.gpus.size(); g++) {
      const char* path = m.gpuNics[g].empty() ? "-" : epTopoPathName(m.path[g][m.gpuNics[g][0]]);
      fprintf(f, "  %-4zu %-13s %-16s %-6s %-24s %d/%s\n", g, m.gpus[g].busId.c_str(), nicList(m, m.gpuNics[g]).c_str(),
              path, nicList(m, m.nearest[g]).c_str(), m.gpus[g].numa,
              m.gpus[g].cpuset.empty() ? "?" : m.gpus[g].cpuset.c_str());
    }
  }
}
