/*************************************************************************
 * ep-topo: JSON output. Keys are stable: scripts and the GPU-host checks read them.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <string>

#include "tools/ep-topo/print.h"

namespace {
std::string q(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if ((unsigned char)c < 0x20) {
      char b[8];
      snprintf(b, sizeof(b), "\\u%04x", c);
      o += b;
    } else o += c;
  }
  return o + "\"";
}
std::string ints(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}
std::string names(const epTopoMachine& m, const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + q(m.nics[v[i]].name);
  return s + "]";
}
}  // namespace

void epTopoPrintJson(const epTopoMachine& m, FILE* f) {
  fprintf(f, "{\n  \"host\": %s,\n  \"source\": %s,\n", q(m.hostName).c_str(), q(m.source).c_str());
  fprintf(f, "  \"packages\": %d, \"numa_nodes\": %d, \"cores\": %d, \"pus\": %d,\n", m.packages, m.numaNodes, m.cores,
          m.pus);
  fprintf(f, "  \"numa\": [");
  for (size_t i = 0; i < m.numa.size(); i++)
    fprintf(f, "%s{\"os_index\": %d, \"cpuset\": %s, \"bytes\": %llu}", i ? ", " : "", m.numa[i].os,
            q(m.numa[i].cpuset).c_str(), m.numa[i].bytes);
  fprintf(f, "],\n  \"hidden_gpus\": %d,\n  \"gpus\": [", m.hiddenGpus);
  for (size_t g = 0; g < m.gpus.size(); g++) {
    const epTopoGpu& x = m.gpus[g];
    fprintf(f, "%s\n    {\"index\": %zu, \"cuda_dev\": %d, \"bus_id\": %s, \"model\": %s, \"numa\": %d, \"cpuset\": %s, "
               "\"nics\": %s, \"nearest_nics\": %s, \"nic_path\": %s}",
            g ? "," : "", g, x.cudaDev, q(x.busId).c_str(), q(x.model).c_str(), x.numa, q(x.cpuset).c_str(),
            names(m, m.gpuNics[g]).c_str(), names(m, m.nearest[g]).c_str(),
            q(m.gpuNics[g].empty() ? "" : epTopoPathName(m.path[g][m.gpuNics[g][0]])).c_str());
  }
  fprintf(f, "%s],\n  \"nics\": [", m.gpus.empty() ? "" : "\n  ");
  for (size_t n = 0; n < m.nics.size(); n++) {
    const epTopoNic& x = m.nics[n];
    fprintf(f, "%s\n    {\"index\": %zu, \"name\": %s, \"bus_id\": %s, \"numa\": %d, \"cpuset\": %s, \"active_ports\": %s, "
               "\"link_layer\": %s}",
            n ? "," : "", n, q(x.name).c_str(), q(x.busId).c_str(), x.numa, q(x.cpuset).c_str(),
            ints(x.activePorts).c_str(), q(x.linkLayer).c_str());
  }
  fprintf(f, "%s],\n  \"nvlink_source\": %s,\n  \"nvlink\": [", m.nics.empty() ? "" : "\n  ", q(m.nvlinkSource).c_str());
  for (size_t g = 0; g < m.nvlink.size(); g++) fprintf(f, "%s%s", g ? ", " : "", ints(m.nvlink[g]).c_str());
  fprintf(f, "]\n}\n");
}
