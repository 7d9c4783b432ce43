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
 * when every remaining duplicate is unavoidable (its key is on every pack), or
 * when every swap that would remove one puts a pack above `cap`. */
void repairDuplicates(const std::vector<double>& w, const std::vector<int>& keys, std::vector<std::vector<int>>* packs,
                      std::vector<double>* load, double cap = HUGE_VAL) {
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
            if (mx > cap) continue;
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

/* Replicas that share a GPU although they need not: for each expert,
 * min(replicas, GPUs of its domain) minus the distinct GPUs it is on. */
int avoidableDuplicates(const LayerPlan& plan, int numGpus, int gpusPerDomain) {
  const int E = (int)plan.logcnt.size(), R = (int)plan.phy2log.size(), ppg = R / numGpus;
  std::vector<std::vector<char>> on(E, std::vector<char>(numGpus, 0));
  int n = 0;
  for (int e = 0; e < E; e++) n += std::min(plan.logcnt[e], gpusPerDomain);
  for (int p = 0; p < R; p++) {
    char& c = on[plan.phy2log[p]][p / ppg];
    if (!c) c = 1, n--;
  }
  return n;
}

/* State of the bound-keeping fill (planLayerBounded). */
struct BoundedFill {
  std::vector<std::vector<int>> items;   // [P] the expert of each filled slot
  std::vector<int> cnt;                  // [E] replicas
  std::vector<std::vector<int>> copies;  // [E][P] replicas of the expert on the GPU
  std::vector<double> load;              // [P]
};

/* One attempt of the fill described at planLayerBounded. Returns false if it
 * got stuck, after reserving the GPUs that caused it. */
bool fillWithinBound(const double* w, const PlanShape& s, int gpusPerDomain, double limit, std::vector<char>* reserved,
                     BoundedFill* f) {
  const int E = s.numExperts, P = s.numGpus, ppg = s.numSlots / P, epg = E / P;
  f->items.assign(P, {});
  f->cnt.assign(E, 1);
  f->copies.assign(E, std::vector<int>(P, 0));
  std::vector<int> home(E);  // the contiguous placement
  for (int x = 0; x < E; x++) {
    home[x] = x / epg;
    f->items[home[x]].push_back(x);
    f->copies[x][home[x]] = 1;
  }
  // Loads are recomputed from the slots (not updated by +=) so that rounding cannot drift.
  auto loadOf = [&](int g) {
    double l = 0;
    for (int x : f->items[g]) l += w[x] / f->cnt[x];
    return l;
  };
  f->load.resize(P);
  for (int g = 0; g < P; g++) f->load[g] = loadOf(g);
  const double tie = 1e-12 * limit;
  for (int slot = E; slot < s.numSlots; slot++) {
    std::vector<int> own(P, 0);  // experts whose replicas are all on the GPU
    for (int x = 0; x < E; x++)
      if (f->copies[x][home[x]] == f->cnt[x]) own[home[x]]++;
    std::vector<int> byLoad(P);
    std::iota(byLoad.begin(), byLoad.end(), 0);
    std::stable_sort(byLoad.begin(), byLoad.end(), [&](int a, int b) { return f->load[a] > f->load[b]; });
    int bestX = -1, bestT = -1;
    bool bestDup = true;
    double bestMax = 0, bestTarget = 0;
    for (int x = 0; x < E; x++) {
      const int k = f->cnt[x], d0 = home[x] / gpusPerDomain * gpusPerDomain;
      const double unit = w[x] / ((double)k * (k + 1));  // what each replica gives up
      // The two largest loads among x's holders after the split and among the
      // other GPUs, so that the target can be left out in O(1).
      int h1 = -1, n1 = -1, n2 = -1;
      double hl1 = 0, hl2 = 0;
      for (int g = d0; g < d0 + gpusPerDomain; g++) {
        if (!f->copies[x][g]) continue;
        const double l = f->load[g] - f->copies[x][g] * unit;
        if (h1 < 0 || l > hl1) {
          hl2 = h1 < 0 ? 0 : hl1;
          hl1 = l, h1 = g;
        } else if (l > hl2) {
          hl2 = l;
        }
      }
      for (int g : byLoad) {
        if (f->copies[x][g]) continue;
        if (n1 < 0) n1 = g;
        else if (n2 < 0) n2 = g;
        else break;
      }
      // A reserved GPU keeps its last own expert while it has a free slot.
      const bool pinned = f->copies[x][home[x]] == k && (*reserved)[home[x]] &&
                          (int)f->items[home[x]].size() < ppg && own[home[x]] == 1;
      for (int t = d0; t < d0 + gpusPerDomain; t++) {
        const int j = f->copies[x][t];
        if ((int)f->items[t].size() >= ppg || (pinned && t != home[x])) continue;
        const double target = f->load[t] + (k - j) * unit;
        double mx = std::max(target, h1 == t ? hl2 : hl1);
        const int other = n1 == t ? n2 : n1;
        if (other >= 0) mx = std::max(mx, f->load[other]);
        if (j < k && mx > limit) continue;  // j == k changes no load: always allowed
        const bool dup = j > 0;
        bool better = bestX < 0 || (!dup && bestDup);
        if (!better && dup == bestDup)
          better = mx < bestMax - tie || (mx <= bestMax + tie && target < bestTarget - tie);
        if (better) bestX = x, bestT = t, bestDup = dup, bestMax = mx, bestTarget = target;
      }
    }
    if (bestX < 0) {  // stuck: every GPU with a free slot has given away all its own experts
      for (int g = 0; g < P; g++)
        if ((int)f->items[g].size() < ppg && own[g] == 0) (*reserved)[g] = 1;
      return false;
    }
    f->items[bestT].push_back(bestX);
    f->copies[bestX][bestT]++;
    f->cnt[bestX]++;
    for (int g = 0; g < P; g++)
      if (f->copies[bestX][g]) f->load[g] = loadOf(g);
  }
  return true;
}

/* Fourth candidate, bound-keeping: its max GPU load is never above `bound`,
 * the max load of the contiguous placement without replicas (expert e on GPU
 * e / (E/P); in hierarchical mode each group is then inside one node). It is
 * what makes planLayer's guarantee hold by construction.
 *
 * Construction: start from the contiguous placement and fill the R - E free
 * slots one at a time. Adding a replica of expert x (k replicas, j of them on
 * GPU t) to GPU t re-splits w[x] over k + 1 replicas: every other GPU holding x
 * loses load and t gains w[x](k-j)/(k(k+1)), which is 0 when all k replicas are
 * on t already (a "self-copy": no load changes at all). A move is taken only if
 * the max load after it is <= bound, or if it is a self-copy. Moves that put x
 * on a new GPU of its domain (node, or all GPUs) are preferred to duplicates;
 * then the lowest resulting max, then the lowest target load (which spreads
 * the replicas), then the lowest expert and GPU.
 *
 * Why it always finishes: a GPU with a free slot that still has an "own"
 * expert (all its replicas on that GPU) can always take a self-copy. So the
 * fill gets stuck only if every GPU with a free slot has given all its own
 * experts away. Those GPUs are then reserved and the fill restarts; a reserved
 * GPU may not give its last own expert away while it has a free slot, so it is
 * never stuck again. Each restart reserves at least one new GPU: at most P
 * restarts, and with all GPUs reserved the fill always finishes (at worst with
 * self-copies only, i.e. exactly the loads of the contiguous placement).
 *
 * Why it is never worse: max load <= bound holds at the start (the bound is
 * that max) and after every move (checked, or a self-copy changes nothing), so
 * for the filled plan. The duplicate repair then only takes swaps that keep
 * both GPUs <= bound, and the local search never raises the max. Up to
 * rounding only: the loads are sums of w/cnt in other orders, so moves are
 * checked against bound * (1 + 1e-13), well inside kLoadBoundRelTol.
 * Duplicates can remain, because sometimes no plan without one meets the bound
 * (docs/eplb.md has an example). */
void planLayerBounded(const double* w, const PlanShape& s, const PlanOptions& opt, double bound, LayerPlan* out) {
  const bool hier = !opt.forceGlobal && s.numGroups % s.numNodes == 0;
  const int E = s.numExperts, R = s.numSlots, P = s.numGpus, ppg = R / P;
  const int gpd = hier ? P / s.numNodes : P;
  const double limit = bound * (1 + 1e-13);
  std::vector<char> reserved(P, 0);
  BoundedFill f;
  while (!fillWithinBound(w, s, gpd, limit, &reserved, &f)) {
    // Each failed attempt reserved at least one more GPU: at most P retries.
  }
  out->hierarchical = hier;
  out->logcnt = f.cnt;
  out->phy2log.assign(R, -1);
  out->phyRank.assign(R, 0);
  std::vector<int> nextRank(E, 0);
  for (int d0 = 0; d0 < P; d0 += gpd) {  // one domain (node, or all GPUs) at a time: replicas stay in it
    std::vector<double> slotW;
    std::vector<int> keys;
    std::vector<std::vector<int>> packs(gpd);
    std::vector<double> load(gpd, 0.0);
    for (int g = 0; g < gpd; g++)
      for (int x : f.items[d0 + g]) {
        packs[g].push_back((int)slotW.size());
        slotW.push_back(w[x] / f.cnt[x]);
        keys.push_back(x);
        load[g] += slotW.back();
      }
    repairDuplicates(slotW, keys, &packs, &load, limit);
    refineMaxLoad(slotW, &keys, &packs, &load);
    for (int g = 0; g < gpd; g++)
      for (int i = 0; i < ppg; i++) {
        const int x = keys[packs[g][i]], p = (d0 + g) * ppg + i;
        out->phy2log[p] = x;
        out->phyRank[p] = nextRank[x]++;
      }
  }
}

}  // namespace

void planCandidates(const double* w, const PlanShape& s, const PlanOptions& opt, std::vector<LayerPlan>* c) {
  c->assign(1, LayerPlan());
  planLayerImpl(w, s, opt, false, &(*c)[0]);
  if (!opt.refine || s.numExperts % s.numGpus != 0) return;  // upstream mode stays bit-identical to upstream
  c->resize(4);
  planLayerImpl(w, s, opt, true, &(*c)[1]);
  planLayerIncremental(w, s, opt, &(*c)[2]);
  planLayerBounded(w, s, opt, noReplicaMaxLoad(w, s), &(*c)[3]);
}

double noReplicaMaxLoad(const double* w, const PlanShape& s) {
  std::vector<double> g;
  gpuLoadsUnbalanced(w, s.numExperts, s.numGpus, &g);
  return *std::max_element(g.begin(), g.end());
}

/* Greedy packing is a heuristic: on small or near-uniform layers it can lose
 * to the contiguous placement without replicas, and so can the other
 * heuristic candidates. The bound-keeping candidate never does, so selecting
 * admissible plans first makes "never worse than no replicas" a guarantee. */
void planLayer(const double* w, const PlanShape& s, const PlanOptions& opt, LayerPlan* out) {
  std::vector<LayerPlan> c;
  planCandidates(w, s, opt, &c);
  int best = 0;
  if (c.size() > 1) {
    const double bound = noReplicaMaxLoad(w, s);
    const int gpd = (!opt.forceGlobal && s.numGroups % s.numNodes == 0) ? s.numGpus / s.numNodes : s.numGpus;
    std::vector<double> mx(c.size());
    std::vector<int> rank(c.size());  // 0: admissible, no avoidable duplicate; 1: admissible; 2: above the bound
    for (size_t i = 0; i < c.size(); i++) {
      mx[i] = maxGpuLoad(w, c[i], s.numGpus);
      rank[i] = mx[i] > bound * (1 + kLoadBoundRelTol) ? 2 : avoidableDuplicates(c[i], s.numGpus, gpd) > 0;
    }
    for (size_t i = 1; i < c.size(); i++)
      if (rank[i] < rank[best] || (rank[i] == rank[best] && mx[i] < mx[best] * (1 - 1e-12))) best = (int)i;
  }
  *out = std::move(c[best]);
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
