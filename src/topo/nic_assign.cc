/*************************************************************************
 * epcomm: GPU -> NIC assignment (see nic_assign.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "topo/nic_assign.h"

#include <cstddef>
#include <utility>

void epTopoAssignNics(const std::vector<std::vector<int>>& path, const std::vector<std::vector<int>>& hops,
                      std::vector<std::vector<int>>* nearest, std::vector<std::vector<int>>* assigned) {
  int nGpus = (int)path.size();
  nearest->assign(nGpus, {});
  assigned->assign(nGpus, {});
  for (int g = 0; g < nGpus; g++) {
    std::pair<int, int> best(1 << 30, 1 << 30);
    for (size_t n = 0; n < path[g].size(); n++) {
      std::pair<int, int> key(path[g][n], hops[g][n]);
      if (key < best) {
        best = key;
        (*nearest)[g].clear();
      }
      if (key == best) (*nearest)[g].push_back((int)n);
    }
  }
  std::vector<char> done(nGpus, 0);
  for (int g = 0; g < nGpus; g++) {
    if (done[g] || (*nearest)[g].empty()) continue;
    // The group: every GPU with exactly this nearest set, in GPU order.
    std::vector<int> group;
    for (int h = g; h < nGpus; h++)
      if (!done[h] && (*nearest)[h] == (*nearest)[g]) group.push_back(h);
    const std::vector<int>& set = (*nearest)[g];
    int nNics = (int)set.size(), nG = (int)group.size();
    int per = nNics >= nG ? (nNics + nG - 1) / nG : 1;
    for (int k = 0; k < nG; k++) {
      std::vector<int>& out = (*assigned)[group[k]];
      for (int j = 0; j < per; j++) {
        int idx = (k * per + j) % nNics;
        bool dup = false;
        for (int x : out) dup |= (x == set[idx]);
        if (!dup) out.push_back(set[idx]);
      }
      done[group[k]] = 1;
    }
  }
}
