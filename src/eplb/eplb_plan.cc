/*************************************************************************
 * epcomm: EPLB placement planner (see eplb_plan.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "eplb/eplb_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/checks.h"

namespace ep {
namespace eplb {

epResult_t validatePlanShape(const PlanShape& s, const char* fn) {
  EP_ARG_CHECK(s.numExperts > 0, "%s: numExperts (E) must be > 0, got %d", fn, s.numExperts);
  EP_ARG_CHECK(s.numSlots > 0, "%s: numSlots (R) must be > 0, got %d", fn, s.numSlots);
  EP_ARG_CHECK(s.numGroups > 0, "%s: numGroups (G) must be > 0, got %d", fn, s.numGroups);
  EP_ARG_CHECK(s.numNodes > 0, "%s: numNodes (N) must be > 0, got %d", fn, s.numNodes);
  EP_ARG_CHECK(s.numGpus > 0, "%s: numGpus (P) must be > 0, got %d", fn, s.numGpus);
  EP_ARG_CHECK(s.numExperts % s.numGroups == 0, "%s: numExperts E=%d is not a multiple of numGroups G=%d", fn,
               s.numExperts, s.numGroups);
  EP_ARG_CHECK(s.numGpus % s.numNodes == 0, "%s: numGpus P=%d is not a multiple of numNodes N=%d", fn, s.numGpus,
               s.numNodes);
  EP_ARG_CHECK(s.numSlots % s.numGpus == 0, "%s: numSlots R=%d is not a multiple of numGpus P=%d", fn, s.numSlots,
               s.numGpus);
  EP_ARG_CHECK(s.numSlots >= s.numExperts, "%s: numSlots R=%d is smaller than numExperts E=%d (every expert needs a slot)",
               fn, s.numSlots, s.numExperts);
  return epSuccess;
}

epResult_t validateWeights(const double* w, int numExperts, int layer, const char* fn) {
  for (int e = 0; e < numExperts; e++) {
    EP_ARG_CHECK(std::isfinite(w[e]), "%s: weight[layer %d][expert %d] is not a finite number", fn, layer, e);
    EP_ARG_CHECK(w[e] >= 0.0, "%s: weight[layer %d][expert %d] = %g is negative (loads must be >= 0)", fn, layer, e,
                 w[e]);
  }
  return epSuccess;
}

namespace {

/* Duplicates in a pack: its item count minus its distinct keys. */
int packDuplicates(const std::vector<int>& items, const std::vector<int>& keys) {
  int dups = 0;
  for (size_t i = 0; i < items.size(); i++)
    for (size_t j = 0; j < i; j++)
      if (keys[items[i]] == keys[items[j]]) {
        dups++;
        break;
      }
  return dups;
}

bool packHoldsKey(const std::vector<int>& items, const std::vector<int>& keys, int key, int except) {
  for (int it : items)
    if (it != except && keys[it] == key) return true;
  return false;
}

/* Removes avoidable duplicate keys by swapping items between packs. Each swap
 * strictly lowers the total duplicate count, so this terminates; it stops only
 * when every remaining duplicate is unavoidable (its key is on every pack). */
void repairDuplicates(const std::vector<double>& w, const std::vector<int>& keys, std::vector<std::vector<int>>* packs,
                      std::vector<double>* load) {
  const int m = (int)packs->size();
  for (;;) {
    int bestA = -1, bestI = -1, bestB = -1, bestJ = -1, bestGain = 0;
    double bestMax = 0;
    for (int a = 0; a < m; a++) {
      const auto& pa = (*packs)[a];
      for (size_t i = 0; i < pa.size(); i++) {
        int ki = keys[pa[i]];
        if (!packHoldsKey(pa, keys, ki, pa[i])) continue;  // not a duplicate
        for (int b = 0; b < m; b++) {
          if (b == a) continue;
          const auto& pb = (*packs)[b];
          if (packHoldsKey(pb, keys, ki, -1)) continue;
          for (size_t j = 0; j < pb.size(); j++) {
            if (keys[pb[j]] == ki) continue;
            std::vector<int> na = pa, nb = pb;
            na[i] = pb[j];
            nb[j] = pa[i];
            int gain = packDuplicates(pa, keys) + packDuplicates(pb, keys) - packDuplicates(na, keys) -
                       packDuplicates(nb, keys);
            if (gain <= 0) continue;
            double la = (*load)[a] - w[pa[i]] + w[pb[j]];
            double lb = (*load)[b] - w[pb[j]] + w[pa[i]];
            double mx = std::max(la, lb);
            if (bestA < 0 || gain > bestGain || (gain == bestGain && mx < bestMax)) {
              bestA = a, bestI = (int)i, bestB = b, bestJ = (int)j, bestGain = gain, bestMax = mx;
            }
          }
        }
      }
    }
    if (bestA < 0) return;
    int ia = (*packs)[bestA][bestI], ib = (*packs)[bestB][bestJ];
    (*load)[bestA] += w[ib] - w[ia];
    (*load)[bestB] += w[ia] - w[ib];
    (*packs)[bestA][bestI] = ib;
    (*packs)[bestB][bestJ] = ia;
  }
}

/* Local search after the greedy packing: while some swap of two items between
 * the heaviest pack and another pack lowers the larger of the two loads below
 * the current maximum (without adding a duplicate key), apply the best such
 * swap. Each step lowers the sorted load vector lexicographically, so it ends. */
void refineMaxLoad(const std::vector<double>& w, const std::vector<int>* keys, std::vector<std::vector<int>>* packs,
                   std::vector<double>* load) {
  const int m = (int)packs->size();
  for (int iter = 0; iter < 100000; iter++) {
    int a = 0;
    for (int p = 1; p < m; p++)
      if ((*load)[p] > (*load)[a]) a = p;
    const double cur = (*load)[a];
    const double eps = 1e-12 * std::max(1.0, cur);
    const auto& pa = (*packs)[a];
    int bestB = -1, bestI = -1, bestJ = -1;
    double bestMax = cur - eps;
    for (int b = 0; b < m; b++) {
      if (b == a) continue;
      const auto& pb = (*packs)[b];
      for (size_t i = 0; i < pa.size(); i++) {
        for (size_t j = 0; j < pb.size(); j++) {
          const double wi = w[pa[i]], wj = w[pb[j]];
          if (wi <= wj) continue;  // only moving load off the heaviest pack can help
          const double mx = std::max(cur - wi + wj, (*load)[b] - wj + wi);
          if (!(mx < bestMax)) continue;
          if (keys) {
            const int ki = (*keys)[pa[i]], kj = (*keys)[pb[j]];
            if (ki == kj) continue;
            std::vector<int> na = pa, nb = pb;
            na[i] = pb[j];
            nb[j] = pa[i];
            if (packDuplicates(na, *keys) + packDuplicates(nb, *keys) >
                packDuplicates(pa, *keys) + packDuplicates(pb, *keys))
              continue;
          }
          bestMax = mx, bestB = b, bestI = (int)i, bestJ = (int)j;
        }
      }
    }
    if (bestB < 0) return;
    int ia = (*packs)[a][bestI], ib = (*packs)[bestB][bestJ];
    (*load)[a] += w[ib] - w[ia];
    (*load)[bestB] += w[ia] - w[ib];
    (*packs)[a][bestI] = ib;
    (*packs)[bestB][bestJ] = ia;
  }
}

}  // namespace

namespace {

/* balancedPacking with optional anchors: items with anchor[i] >= 0 are put in
 * that pack first (in item order), the others follow the greedy rule. */
void packItems(const std::vector<double>& w, int m, const std::vector<int>* keys, bool refine,
               const std::vector<int>* anchor, std::vector<int>* pack, std::vector<int>* rank) {
  const int n = (int)w.size();
  const int cap = n / m;
  pack->assign(n, 0);
  rank->assign(n, 0);
  if (cap == 1 && anchor == nullptr) {
    for (int i = 0; i < n; i++) (*pack)[i] = i;
    return;
  }
  std::vector<std::vector<int>> packs(m);
  std::vector<double> load(m, 0.0);
  if (anchor) {
    for (int i = 0; i < n; i++)
      if ((*anchor)[i] >= 0) {
        packs[(*anchor)[i]].push_back(i);
        load[(*anchor)[i]] += w[i];
      }
  }
  std::vector<int> order;
  for (int i = 0; i < n; i++)
    if (!anchor || (*anchor)[i] < 0) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return w[a] > w[b]; });
  for (int item : order) {
    int best = -1;
    // Pass 0 skips packs that already hold this key; pass 1 accepts them.
    for (int pass = (keys ? 0 : 1); pass < 2 && best < 0; pass++) {
      for (int p = 0; p < m; p++) {
        if ((int)packs[p].size() >= cap) continue;
        if (pass == 0 && packHoldsKey(packs[p], *keys, (*keys)[item], -1)) continue;
        if (best < 0 || load[p] < load[best]) best = p;
      }
    }
    packs[best].push_back(item);
    load[best] += w[item];
  }
  if (keys) repairDuplicates(w, *keys, &packs, &load);
  if (refine && cap > 1) refineMaxLoad(w, keys, &packs, &load);
  for (int p = 0; p < m; p++)
    for (size_t r = 0; r < packs[p].size(); r++) {
      (*pack)[packs[p][r]] = p;
      (*rank)[packs[p][r]] = (int)r;
    }
}

}  // namespace

void balancedPacking(const std::vector<double>& w, int m, const std::vector<int>* keys, bool refine,
                     std::vector<int>* pack, std::vector<int>* rank) {
  packItems(w, m, keys, refine, nullptr, pack, rank);
}

void replicateExperts(const std::vector<double>& w, int r, std::vector<int>* phy2log, std::vector<int>* phyRank,
                      std::vector<int>* cnt) {
  const int n = (int)w.size();
  phy2log->resize(r);
  phyRank->assign(r, 0);
  cnt->assign(n, 1);
  for (int i = 0; i < n; i++) (*phy2log)[i] = i;
  for (int i = n; i < r; i++) {
    int best = 0;
    for (int e = 1; e < n; e++)
      if (w[e] / (*cnt)[e] > w[best] / (*cnt)[best]) best = e;
    (*phy2log)[i] = best;
    (*phyRank)[i] = (*cnt)[best];
    (*cnt)[best]++;
  }
}

namespace {

/* One layer. anchored == false: the EPLB procedure. anchored == true: the same
 * replication, but every expert keeps its contiguous home GPU e / (E/P) (groups
 * stay on their contiguous node) and only the redundant slots are placed
 * greedily; used as a second candidate (see planLayer). */
void planLayerImpl(const double* w, const PlanShape& s, const PlanOptions& opt, bool anchored, LayerPlan* out) {
  const bool hier = !opt.forceGlobal && s.numGroups % s.numNodes == 0;
  const int E = s.numExperts, R = s.numSlots, P = s.numGpus;
  const int G = hier ? s.numGroups : 1, N = hier ? s.numNodes : 1;
  const int gs = E / G, gpn = G / N, epn = E / N, ppn = R / N, gpusPerNode = P / N, ppg = R / P;
  out->hierarchical = hier;
  out->phy2log.assign(R, -1);
  out->phyRank.assign(R, 0);
  out->logcnt.assign(E, 0);

  // 1. Groups onto nodes. mlog ("node-major logical") numbers the experts so
  //    that node k holds mlog ids k*epn .. (k+1)*epn-1.
  std::vector<int> gNode(G), gRank(G);
  if (anchored) {
    for (int g = 0; g < G; g++) gNode[g] = g / gpn, gRank[g] = g % gpn;
  } else {
    std::vector<double> groupLoad(G, 0.0);
    for (int e = 0; e < E; e++) groupLoad[e / gs] += w[e];
    balancedPacking(groupLoad, N, nullptr, opt.refine, &gNode, &gRank);
  }
  std::vector<int> mlog2log(E);
  for (int e = 0; e < E; e++) {
    int g = e / gs;
    mlog2log[(gNode[g] * gpn + gRank[g]) * gs + e % gs] = e;
  }

  for (int k = 0; k < N; k++) {
    // 2. Replicate the hottest experts inside the node.
    std::vector<double> tw(epn);
    for (int j = 0; j < epn; j++) tw[j] = w[mlog2log[k * epn + j]];
    std::vector<int> phy2mlog, phyRank, mlogcnt;
    replicateExperts(tw, ppn, &phy2mlog, &phyRank, &mlogcnt);

    // 3. Pack the node's slots onto its GPUs; a slot carries its expert's
    //    load divided by the replica count. The expert id is the packing key so
    //    that replicas of one expert are kept apart.
    std::vector<double> slotLoad(ppn);
    for (int i = 0; i < ppn; i++) slotLoad[i] = tw[phy2mlog[i]] / mlogcnt[phy2mlog[i]];
    std::vector<int> anchor;
    if (anchored) {  // slots 0..epn-1 are the originals, in mlog order
      anchor.assign(ppn, -1);
      for (int i = 0; i < epn; i++) anchor[i] = i / (epn / gpusPerNode);
    }
    std::vector<int> gpu, rank;
    packItems(slotLoad, gpusPerNode, opt.avoidDuplicates ? &phy2mlog : nullptr, opt.refine,
              anchored ? &anchor : nullptr, &gpu, &rank);

    // 4. Slot i goes to position gpu*ppg + rank of the node; map back to logical ids.
    for (int i = 0; i < ppn; i++) {
      int p = k * ppn + gpu[i] * ppg + rank[i];
      out->phy2log[p] = mlog2log[k * epn + phy2mlog[i]];
      out->phyRank[p] = phyRank[i];
    }
    for (int j = 0; j < epn; j++) out->logcnt[mlog2log[k * epn + j]] = mlogcnt[j];
  }
}

/* Third candidate, incremental: start from the contiguous placement (expert e
 * on GPU e / (E/P), so groups stay on their contiguous node) and fill the
 * redundant slots one at a time, each time with the (expert, GPU without that
 * expert) pair that gives the lowest max GPU load of the node once the
 * expert's load is re-split over its replicas (ties: lowest expert, then GPU).
 * Choosing replicas and their GPUs together avoids the cases where the
 * largest-load-per-replica rule forces a bad split. Then the local search. */
void planLayerIncremental(const double* w, const PlanShape& s, const PlanOptions& opt, LayerPlan* out) {
  const bool hier = !opt.forceGlobal && s.numGroups % s.numNodes == 0;
  const int E = s.numExperts, R = s.numSlots, P = s.numGpus;
  const int N = hier ? s.numNodes : 1;
  const int epn = E / N, ppn = R / N, gpn = P / N, ppg = R / P, epg = E / P;
  out->hierarchical = hier;
  out->phy2log.assign(R, -1);
  out->phyRank.assign(R, 0);
  out->logcnt.assign(E, 1);
  for (int k = 0; k < N; k++) {
    // Node-local state: per GPU the list of (expert, replica rank).
    std::vector<std::vector<int>> items(gpn), ranks(gpn);
    std::vector<int> cnt(epn, 1);
    std::vector<std::vector<char>> holds(epn, std::vector<char>(gpn, 0));
    for (int j = 0; j < epn; j++) {
      const int g = j / epg;
      items[g].push_back(j);
      ranks[g].push_back(0);
      holds[j][g] = 1;
    }
    std::vector<double> load(gpn, 0.0);
    std::vector<std::vector<int>> holders(epn);
    for (int j = 0; j < epn; j++) {
      load[j / epg] += w[k * epn + j];
      holders[j].push_back(j / epg);
    }
    for (int extra = epn; extra < ppn; extra++) {
      int bestX = -1, bestG = -1;
      double bestMax = 0;
      for (int x = 0; x < epn; x++) {
        const double wx = w[k * epn + x];
        const double share = wx / (cnt[x] + 1), drop = wx / cnt[x] - share;
        double holderMax = 0;
        for (int h : holders[x]) holderMax = std::max(holderMax, load[h] - drop);
        // The two largest loads among the other GPUs, so that excluding the target is O(1).
        int top1 = -1;
        double l1 = 0, l2 = 0;
        for (int g = 0; g < gpn; g++) {
          if (holds[x][g]) continue;
          if (top1 < 0 || load[g] > l1) {
            l2 = (top1 < 0) ? 0 : l1;
            l1 = load[g], top1 = g;
          } else if (load[g] > l2) {
            l2 = load[g];
          }
        }
        for (int g = 0; g < gpn; g++) {
          if (holds[x][g] || (int)items[g].size() >= ppg) continue;
          const double others = (g == top1) ? l2 : l1;
          const double mx = std::max(std::max(holderMax, others), load[g] + share);
          if (bestX < 0 || mx < bestMax) bestX = x, bestG = g, bestMax = mx;
        }
      }
      if (bestX < 0) {  // every GPU with room already holds every expert: a duplicate is unavoidable
        for (int g = 0; g < gpn && bestX < 0; g++)
          if ((int)items[g].size() < ppg) bestX = 0, bestG = g;
        for (int x = 1; x < epn; x++)
          if (w[k * epn + x] / cnt[x] > w[k * epn + bestX] / cnt[bestX]) bestX = x;
      }
      {
        const double wx = w[k * epn + bestX];
        const double share = wx / (cnt[bestX] + 1), drop = wx / cnt[bestX] - share;
        for (int h : holders[bestX]) load[h] -= drop;
        load[bestG] += share;
        if (!holds[bestX][bestG]) holders[bestX].push_back(bestG);
      }
      items[bestG].push_back(bestX);
      ranks[bestG].push_back(cnt[bestX]);
      holds[bestX][bestG] = 1;
      cnt[bestX]++;
    }
    // Local search on the per-slot loads, keeping replicas apart.
    std::vector<double> slotW;
    std::vector<int> keys, slotRank;
    std::vector<std::vector<int>> packs(gpn);
    std::fill(load.begin(), load.end(), 0.0);
    for (int g = 0; g < gpn; g++)
      for (size_t i = 0; i < items[g].size(); i++) {
        const int x = items[g][i];
        packs[g].push_back((int)slotW.size());
        slotW.push_back(w[k * epn + x] / cnt[x]);
        keys.push_back(x);
        slotRank.push_back(ranks[g][i]);
        load[g] += slotW.back();
      }
    if (opt.refine) refineMaxLoad(slotW, opt.avoidDuplicates ? &keys : nullptr, &packs, &load);
    for (int g = 0; g < gpn; g++)
      for (size_t i = 0; i < packs[g].size(); i++) {
        const int item = packs[g][i];
        const int p = k * ppn + g * ppg + (int)i;
        out->phy2log[p] = k * epn + keys[item];
        out->phyRank[p] = slotRank[item];
      }
    for (int j = 0; j < epn; j++) out->logcnt[k * epn + j] = cnt[j];
  }
}

double maxGpuLoad(const double* w, const LayerPlan& plan, int numGpus) {
  std::vector<double> g;
  gpuLoads(w, plan.phy2log.data(), plan.logcnt.data(), (int)plan.phy2log.size(), numGpus, &g);
  return *std::max_element(g.begin(), g.end());
}

}  // namespace

void planLayer(const double* w, const PlanShape& s, const PlanOptions& opt, LayerPlan* out) {
  planLayerImpl(w, s, opt, false, out);
  // Greedy packing is a heuristic and can lose to the plain contiguous placement
  // on small or near-uniform layers. In the default mode, also plan with every
  // expert anchored on its contiguous home GPU and keep that plan when its max
  // GPU load is strictly lower. (Upstream mode stays bit-identical to upstream.)
  if (!opt.refine || s.numExperts % s.numGpus != 0) return;
  double best = maxGpuLoad(w, *out, s.numGpus);
  for (int variant = 0; variant < 2; variant++) {
    LayerPlan alt;
    if (variant == 0)
      planLayerImpl(w, s, opt, true, &alt);
    else
      planLayerIncremental(w, s, opt, &alt);
    const double m = maxGpuLoad(w, alt, s.numGpus);
    if (m < best * (1 - 1e-12)) {
      best = m;
      *out = std::move(alt);
    }
  }
}

int fillLog2Phy(const LayerPlan& plan, int numExperts, int maxReplicas, int* log2phy) {
  int used = 0;
  for (int c : plan.logcnt) used = std::max(used, c);
  if (log2phy == nullptr) return used;
  std::fill(log2phy, log2phy + (size_t)numExperts * maxReplicas, -1);
  for (size_t p = 0; p < plan.phy2log.size(); p++) {
    int r = plan.phyRank[p];
    if (r < maxReplicas) log2phy[(size_t)plan.phy2log[p] * maxReplicas + r] = (int)p;
  }
  return used;
}

void gpuLoads(const double* w, const int* phy2log, const int* logcnt, int numSlots, int numGpus,
              std::vector<double>* gpuLoad) {
  gpuLoad->assign(numGpus, 0.0);
  const int ppg = numSlots / numGpus;
  for (int p = 0; p < numSlots; p++) (*gpuLoad)[p / ppg] += w[phy2log[p]] / logcnt[phy2log[p]];
}

void gpuLoadsUnbalanced(const double* w, int numExperts, int numGpus, std::vector<double>* gpuLoad) {
  gpuLoad->assign(numGpus, 0.0);
  const int epg = numExperts / numGpus;
  for (int e = 0; e < numExperts; e++) (*gpuLoad)[e / epg] += w[e];
}

}  // namespace eplb
}  // namespace ep
