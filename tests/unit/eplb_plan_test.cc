/*************************************************************************
 * epcomm unit tests: EPLB placement (epEplbRebalance).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/debug.h"
#include "epcomm.h"
#include "eplb/eplb_plan.h"

namespace {

struct Plan {
  std::vector<int> phy2log, log2phy, logcnt;
  int X = 0, used = 0;
};

epResult_t rebalance(const std::vector<double>& w, int L, int E, int R, int G, int N, int P, int flags, Plan* out) {
  int X = 0;
  epResult_t r = epEplbMaxReplicas(E, R, &X);
  if (r != epSuccess) return r;
  out->X = X;
  out->phy2log.assign((size_t)L * R, -7);
  out->log2phy.assign((size_t)L * E * X, -7);
  out->logcnt.assign((size_t)L * E, -7);
  return epEplbRebalance(w.data(), L, E, R, G, N, P, flags, out->phy2log.data(), out->log2phy.data(), X,
                         out->logcnt.data(), &out->used);
}

std::vector<int> row(const std::vector<int>& v, int l, int n) {
  return std::vector<int>(v.begin() + (size_t)l * n, v.begin() + (size_t)(l + 1) * n);
}

const std::vector<double> kReadmeWeight = {90, 132, 40, 61, 104, 165, 39, 4,  73,  56, 183, 86,
                                           20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27};

std::vector<double> gpuLoad(const std::vector<double>& w, const std::vector<int>& phy2log,
                            const std::vector<int>& logcnt, int R, int P) {
  std::vector<double> g;
  ep::eplb::gpuLoads(w.data(), phy2log.data(), logcnt.data(), R, P, &g);
  return g;
}

/* Upstream's README example: 2 layers, 12 experts, 16 slots, 4 groups, 2 nodes, 8 GPUs. */
TEST(EplbPlan, ReadmeExampleHierarchicalExact) {
  for (int flags : {EP_EPLB_FLAG_NONE, EP_EPLB_FLAG_UPSTREAM_PACKING}) {
    SCOPED_TRACE("flags=" + std::to_string(flags));
    Plan p;
    ASSERT_EQ(rebalance(kReadmeWeight, 2, 12, 16, 4, 2, 8, flags, &p), epSuccess) << epThreadLastError();
    EXPECT_EQ(row(p.phy2log, 0, 16), (std::vector<int>{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1}));
    EXPECT_EQ(row(p.phy2log, 1, 16), (std::vector<int>{7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}));
    EXPECT_EQ(row(p.logcnt, 0, 12), (std::vector<int>{1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1}));
    EXPECT_EQ(row(p.logcnt, 1, 12), (std::vector<int>{1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1}));
    EXPECT_EQ(p.used, 2);
    // log2phy with the first two replica columns (X = R - E + 1 = 5; the rest is -1).
    const int l2p0[12][2] = {{12, -1}, {15, 13}, {11, -1}, {6, -1}, {7, 5},  {0, 2},
                             {1, -1},  {3, -1},  {4, -1},  {9, -1}, {8, 10}, {14, -1}};
    const int l2p1[12][2] = {{13, -1}, {15, 11}, {8, -1}, {14, -1}, {9, -1}, {10, 12},
                             {2, 4},   {0, -1},  {6, 3},  {7, -1},  {1, -1}, {5, -1}};
    ASSERT_EQ(p.X, 5);
    for (int l = 0; l < 2; l++)
      for (int e = 0; e < 12; e++)
        for (int r = 0; r < p.X; r++) {
          int want = r < 2 ? (l == 0 ? l2p0 : l2p1)[e][r] : -1;
          EXPECT_EQ(p.log2phy[((size_t)l * 12 + e) * p.X + r], want) << "layer " << l << " expert " << e << " replica " << r;
        }
    std::vector<double> w0(kReadmeWeight.begin(), kReadmeWeight.begin() + 12), w1(kReadmeWeight.begin() + 12, kReadmeWeight.end());
    EXPECT_EQ(gpuLoad(w0, row(p.phy2log, 0, 16), row(p.logcnt, 0, 12), 16, 8),
              (std::vector<double>{121.5, 86.5, 125, 113, 147.5, 131.5, 156, 152}));
    EXPECT_EQ(gpuLoad(w1, row(p.phy2log, 1, 16), row(p.logcnt, 1, 12), 16, 8),
              (std::vector<double>{173, 179.5, 120.5, 172, 123, 152, 118.5, 117.5}));
  }
}

const std::vector<int> kGlobalPhy2Log0 = {10, 6, 10, 7, 0, 2, 11, 4, 5, 9, 5, 4, 8, 3, 1, 1};
const std::vector<int> kGlobalPhy2Log1 = {1, 10, 2, 4, 5, 11, 5, 0, 6, 7, 6, 3, 8, 8, 9, 7};

/* With upstream packing, the global policy reproduces upstream, duplicates included
 * (GPU 7 = {1,1} in layer 0, GPU 6 = {8,8} in layer 1). G=3 (3 % 2 != 0) falls back to global. */
TEST(EplbPlan, GlobalPolicyUpstreamParity) {
  for (int g : {4, 3}) {
    SCOPED_TRACE("G=" + std::to_string(g));
    Plan p;
    int flags = EP_EPLB_FLAG_UPSTREAM_PACKING | (g == 4 ? EP_EPLB_FLAG_FORCE_GLOBAL : 0);
    if (g == 3) {
      // 12 % 3 == 0 is fine for E; the fallback is because G % N != 0.
      ASSERT_EQ(rebalance(kReadmeWeight, 2, 12, 16, 3, 2, 8, flags, &p), epSuccess) << epThreadLastError();
    } else {
      ASSERT_EQ(rebalance(kReadmeWeight, 2, 12, 16, 4, 2, 8, flags, &p), epSuccess) << epThreadLastError();
    }
    EXPECT_EQ(row(p.phy2log, 0, 16), kGlobalPhy2Log0);
    EXPECT_EQ(row(p.phy2log, 1, 16), kGlobalPhy2Log1);
    EXPECT_EQ(row(p.logcnt, 0, 12), (std::vector<int>{1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1}));
    EXPECT_EQ(row(p.logcnt, 1, 12), (std::vector<int>{1, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1}));
  }
}

/* Number of (GPU, expert) pairs where the expert sits on that GPU more than once. */
int duplicatesOnGpus(const std::vector<int>& phy2log, int R, int P) {
  const int ppg = R / P;
  int dups = 0;
  for (int g = 0; g < P; g++) {
    std::set<int> s;
    for (int j = 0; j < ppg; j++) dups += !s.insert(phy2log[g * ppg + j]).second;
  }
  return dups;
}

/* The fix for upstream issue #22: the same inputs without duplicates, same replica counts. */
TEST(EplbPlan, GlobalPolicyAvoidsDuplicateReplicasOnOneGpu) {
  Plan up, fixed;
  ASSERT_EQ(rebalance(kReadmeWeight, 2, 12, 16, 4, 2, 8, EP_EPLB_FLAG_FORCE_GLOBAL | EP_EPLB_FLAG_UPSTREAM_PACKING, &up),
            epSuccess);
  ASSERT_EQ(rebalance(kReadmeWeight, 2, 12, 16, 4, 2, 8, EP_EPLB_FLAG_FORCE_GLOBAL, &fixed), epSuccess);
  EXPECT_EQ(duplicatesOnGpus(row(up.phy2log, 0, 16), 16, 8), 1);  // the flaw is really there upstream
  EXPECT_EQ(duplicatesOnGpus(row(up.phy2log, 1, 16), 16, 8), 1);
  for (int l = 0; l < 2; l++) {
    SCOPED_TRACE("layer " + std::to_string(l));
    std::vector<int> p2l = row(fixed.phy2log, l, 16);
    EXPECT_EQ(duplicatesOnGpus(p2l, 16, 8), 0);
    EXPECT_EQ(row(fixed.logcnt, l, 12), row(up.logcnt, l, 12));  // replication is unchanged
    // Same multiset of slots, so the total load is the same; the max stays within the upstream max
    // plus the largest single slot load (a swap moves one slot each way).
    std::vector<double> w(kReadmeWeight.begin() + 12 * l, kReadmeWeight.begin() + 12 * (l + 1));
    auto a = gpuLoad(w, p2l, row(fixed.logcnt, l, 12), 16, 8);
    auto b = gpuLoad(w, row(up.phy2log, l, 16), row(up.logcnt, l, 12), 16, 8);
    double sa = 0, sb = 0;
    for (int g = 0; g < 8; g++) sa += a[g], sb += b[g];
    EXPECT_DOUBLE_EQ(sa, sb);
  }
}

/* ------------------------------------------------------------ properties on random loads */

struct Shape {
  int E, R, G, N, P;
};

std::vector<double> randomLoads(std::mt19937_64& rng, int L, int E, int kind) {
  std::vector<double> w((size_t)L * E);
  std::lognormal_distribution<double> logn(0.0, 1.2);
  std::uniform_int_distribution<int> small(0, 5);
  std::uniform_real_distribution<double> uni(0.0, 1000.0);
  for (auto& x : w) {
    switch (kind) {
      case 0: x = std::floor(logn(rng) * 1000.0); break;  // skewed token counts
      case 1: x = small(rng); break;                      // many ties and zeros
      case 2: x = 100.0; break;                           // all equal
      default: x = uni(rng); break;
    }
  }
  if (kind == 0) {  // layer 0: one expert with twice the load of all the others together
    double sum = 0;
    for (int e = 0; e < E; e++) sum += w[e];
    w[(size_t)E / 3] = 2 * sum;
  }
  return w;
}

/* Max GPU load of the placement without replicas, computed here independently. */
double noReplicaBound(const double* w, int E, int P) {
  std::vector<double> g(P, 0.0);
  for (int e = 0; e < E; e++) g[e / (E / P)] += w[e];
  return *std::max_element(g.begin(), g.end());
}

/* Replicas sharing a GPU although a GPU of the expert's domain lacks the expert:
 * sum over experts of min(cnt, GPUs per domain) - distinct GPUs. */
int avoidableDuplicates(const std::vector<int>& phy2log, const std::vector<int>& cnt, int R, int P, int gpusPerDomain) {
  std::map<int, std::set<int>> gpusOf;
  for (int q = 0; q < R; q++) gpusOf[phy2log[q]].insert(q / (R / P));
  int n = 0;
  for (size_t e = 0; e < cnt.size(); e++) n += std::min(cnt[e], gpusPerDomain) - (int)gpusOf[(int)e].size();
  return n;
}

/* Plans that keep the bound only with a duplicate (counted, reported at the end). */
int g_boundDuplicates = 0;

void checkPlanProperties(const std::vector<double>& w, int L, const Shape& s, int flags, const Plan& p, int hotLayer) {
  const int E = s.E, R = s.R, P = s.P, N = s.N;
  const bool hier = !(flags & EP_EPLB_FLAG_FORCE_GLOBAL) && s.G % N == 0;
  const int gpusPerDomain = hier ? P / N : P;
  for (int l = 0; l < L; l++) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const double* wl = w.data() + (size_t)l * E;
    std::vector<int> p2l = row(p.phy2log, l, R), cnt = row(p.logcnt, l, E);
    // Every slot holds a valid expert; logcnt matches phy2log; every expert has >= 1 replica.
    std::vector<int> seen(E, 0);
    for (int q = 0; q < R; q++) {
      ASSERT_GE(p2l[q], 0) << "slot " << q;
      ASSERT_LT(p2l[q], E) << "slot " << q;
      seen[p2l[q]]++;
    }
    for (int e = 0; e < E; e++) {
      ASSERT_GE(cnt[e], 1) << "expert " << e << " has no replica";
      ASSERT_EQ(cnt[e], seen[e]) << "expert " << e;
      ASSERT_LE(cnt[e], p.used);
      // log2phy lists exactly this expert's slots, then -1.
      std::set<int> slots;
      for (int r = 0; r < p.X; r++) {
        int q = p.log2phy[((size_t)l * E + e) * p.X + r];
        if (r < cnt[e]) {
          ASSERT_GE(q, 0) << "expert " << e << " replica " << r;
          ASSERT_EQ(p2l[q], e) << "expert " << e << " replica " << r << " -> slot " << q;
          slots.insert(q);
        } else {
          ASSERT_EQ(q, -1) << "expert " << e << " replica " << r;
        }
      }
      ASSERT_EQ((int)slots.size(), cnt[e]);
    }
    // R/P slots per GPU holds by construction of slot numbering; the loads must add up.
    std::vector<double> g = gpuLoad(std::vector<double>(wl, wl + E), p2l, cnt, R, P);
    double total = 0, sumG = 0, maxG = 0;
    for (int e = 0; e < E; e++) total += wl[e];
    for (double x : g) sumG += x, maxG = std::max(maxG, x);
    ASSERT_NEAR(sumG, total, 1e-9 * std::max(1.0, total));
    // The guarantee, strict for every shape: the max GPU load is never above that of the
    // placement without replicas (expert e on GPU e / (E/P)). kLoadBoundRelTol (1e-12) only
    // absorbs rounding: the loads are the same sums of w/cnt taken in another order.
    const bool defaultMode = !(flags & EP_EPLB_FLAG_UPSTREAM_PACKING);
    const double bound = E % P == 0 ? noReplicaBound(wl, E, P) : 0.0;
    if (E % P == 0 && defaultMode) {
      ASSERT_LE(maxG, bound * (1 + ep::eplb::kLoadBoundRelTol)) << "worse than placing without replicas";
      // With a hot expert (layer 0 of kind 0) replication must also beat the balanced
      // replica-free plan (the same policy with R = E) outright.
      if (hotLayer == l && s.R > s.E && gpusPerDomain > 1) {
        Plan norep;
        std::vector<double> wv(wl, wl + E);
        ASSERT_EQ(rebalance(wv, 1, E, E, s.G, s.N, P, flags, &norep), epSuccess) << epThreadLastError();
        std::vector<double> g0 = gpuLoad(wv, norep.phy2log, norep.logcnt, E, P);
        ASSERT_LT(maxG, *std::max_element(g0.begin(), g0.end())) << "replicating a hot expert did not help";
      }
    }
    // Replicas of one expert are on distinct GPUs whenever the domain has enough GPUs. The one
    // exception (docs/eplb.md): no duplicate-free candidate meets the bound above, since the
    // bound wins over this rule.
    if (defaultMode && avoidableDuplicates(p2l, cnt, R, P, gpusPerDomain) > 0) {
      ASSERT_EQ(E % P, 0) << "avoidable duplicate";
      std::vector<ep::eplb::LayerPlan> cands;
      ep::eplb::PlanShape ps{E, R, s.G, s.N, P};
      ep::eplb::PlanOptions opt;
      opt.forceGlobal = (flags & EP_EPLB_FLAG_FORCE_GLOBAL) != 0;
      ep::eplb::planCandidates(wl, ps, opt, &cands);
      for (size_t c = 0; c < cands.size(); c++) {
        if (avoidableDuplicates(cands[c].phy2log, cands[c].logcnt, R, P, gpusPerDomain) > 0) continue;
        std::vector<double> gc = gpuLoad(std::vector<double>(wl, wl + E), cands[c].phy2log, cands[c].logcnt, R, P);
        ASSERT_GT(*std::max_element(gc.begin(), gc.end()), bound * (1 + ep::eplb::kLoadBoundRelTol))
            << "avoidable duplicate although candidate " << c << " meets the bound without one";
      }
      g_boundDuplicates++;
    }
    // Hierarchical: each group stays on one node, and every node holds R/N slots of its own groups.
    if (hier) {
      const int gs = E / s.G, slotsPerNode = R / N;
      std::vector<std::set<int>> nodesOfGroup(s.G);
      for (int q = 0; q < R; q++) nodesOfGroup[p2l[q] / gs].insert(q / slotsPerNode);
      for (int gi = 0; gi < s.G; gi++) ASSERT_EQ(nodesOfGroup[gi].size(), 1u) << "group " << gi << " spans nodes";
    }
  }
}

TEST(EplbPlan, PropertiesOnRandomLoads) {
  const std::vector<Shape> shapes = {
      {12, 16, 4, 2, 8},     {16, 16, 4, 2, 4},    {16, 24, 4, 2, 8},   {32, 40, 8, 2, 8},    {64, 80, 8, 4, 16},
      {256, 288, 8, 4, 32},  {256, 320, 8, 8, 64}, {256, 264, 8, 1, 8}, {60, 64, 5, 2, 8},    {64, 96, 4, 4, 8},
      {20, 40, 2, 1, 4},     {8, 8, 2, 2, 2},      {48, 64, 6, 4, 8},   {256, 320, 8, 40, 320}, {9, 12, 3, 3, 3},
      {32, 64, 1, 1, 2},     {32, 33 * 1, 1, 1, 1}};
  std::mt19937_64 rng(12345);
  int cases = 0;
  for (const Shape& s : shapes) {
    for (int kind = 0; kind < 4; kind++) {
      for (int flags : {EP_EPLB_FLAG_NONE, EP_EPLB_FLAG_FORCE_GLOBAL, EP_EPLB_FLAG_UPSTREAM_PACKING}) {
        const int L = 3;
        std::vector<double> w = randomLoads(rng, L, s.E, kind);
        SCOPED_TRACE("E=" + std::to_string(s.E) + " R=" + std::to_string(s.R) + " G=" + std::to_string(s.G) +
                     " N=" + std::to_string(s.N) + " P=" + std::to_string(s.P) + " kind=" + std::to_string(kind) +
                     " flags=" + std::to_string(flags));
        Plan a, b;
        ASSERT_EQ(rebalance(w, L, s.E, s.R, s.G, s.N, s.P, flags, &a), epSuccess) << epThreadLastError();
        checkPlanProperties(w, L, s, flags, a, kind == 0 ? 0 : -1);
        // Deterministic: the same inputs give the same plan.
        ASSERT_EQ(rebalance(w, L, s.E, s.R, s.G, s.N, s.P, flags, &b), epSuccess);
        ASSERT_EQ(a.phy2log, b.phy2log);
        ASSERT_EQ(a.log2phy, b.log2phy);
        ASSERT_EQ(a.logcnt, b.logcnt);
        cases++;
      }
    }
  }
  EXPECT_EQ(cases, (int)shapes.size() * 12);
}

/* Layers are independent: planning layers one at a time gives the same rows. */
TEST(EplbPlan, LayersAreIndependent) {
  std::mt19937_64 rng(7);
  std::vector<double> w = randomLoads(rng, 4, 64, 0);
  Plan all;
  ASSERT_EQ(rebalance(w, 4, 64, 80, 8, 2, 8, 0, &all), epSuccess);
  for (int l = 0; l < 4; l++) {
    Plan one;
    std::vector<double> wl(w.begin() + 64 * l, w.begin() + 64 * (l + 1));
    ASSERT_EQ(rebalance(wl, 1, 64, 80, 8, 2, 8, 0, &one), epSuccess);
    EXPECT_EQ(one.phy2log, row(all.phy2log, l, 80)) << "layer " << l;
  }
}

/* One overwhelming expert, 4 GPUs of 4 slots. Upstream replication gives it all 8 extra
 * slots (9 replicas, so GPUs hold it 2-3 times: duplicates it cannot avoid). The default
 * mode finds that 4 replicas, one per GPU, balance better, and never duplicates. */
TEST(EplbPlan, OverwhelmingExpertSpreadsOverAllGpus) {
  std::vector<double> w(8, 1.0);
  w[3] = 1000.0;
  Plan up, p;
  ASSERT_EQ(rebalance(w, 1, 8, 16, 1, 1, 4, EP_EPLB_FLAG_UPSTREAM_PACKING, &up), epSuccess);
  EXPECT_EQ(up.logcnt[3], 9);
  ASSERT_EQ(rebalance(w, 1, 8, 16, 1, 1, 4, 0, &p), epSuccess);
  std::vector<int> per(4, 0);
  for (int q = 0; q < 16; q++) per[q / 4] += p.phy2log[q] == 3;
  for (int g = 0; g < 4; g++) EXPECT_EQ(per[g], 1) << "GPU " << g << " holds expert 3 " << per[g] << " times";
  EXPECT_EQ(duplicatesOnGpus(p.phy2log, 16, 4), 0);
  auto gl = gpuLoad(w, p.phy2log, p.logcnt, 16, 4);
  auto gu = gpuLoad(w, up.phy2log, up.logcnt, 16, 4);
  EXPECT_LE(*std::max_element(gl.begin(), gl.end()), 1000.0 / 4 + 7.0);
  EXPECT_LT(*std::max_element(gl.begin(), gl.end()), *std::max_element(gu.begin(), gu.end()));
}

/* A toy layer where every heuristic candidate was worse than no replicas (+25%: the
 * contiguous placement has 4 on each GPU, EPLB gave 5). The bound is now kept exactly,
 * and here without a duplicate: {2,2,4}+{2,2,0}-like splits exist. */
TEST(EplbPlan, ToyLayerNeverWorseThanNoReplicas) {
  const std::vector<double> w = {2, 2, 4, 0};
  Plan p;
  ASSERT_EQ(rebalance(w, 1, 4, 6, 1, 2, 2, 0, &p), epSuccess) << epThreadLastError();  // G % N != 0: global
  auto g = gpuLoad(w, p.phy2log, p.logcnt, 6, 2);
  EXPECT_LE(*std::max_element(g.begin(), g.end()), 4.0);
  EXPECT_EQ(avoidableDuplicates(p.phy2log, p.logcnt, 6, 2, 2), 0);
}

/* All duplicate-free plans of E=4 experts on 2 GPUs x 3 slots (each expert on
 * min(cnt, 2) distinct GPUs); returns the lowest max GPU load among them. */
double bestDuplicateFreeMax(const std::vector<double>& w) {
  const int E = 4, c = 3;
  double best = HUGE_VAL;
  // Each GPU's 3 slots as a multiset of experts, enumerated as non-decreasing triples.
  std::vector<std::vector<int>> triples;
  for (int a = 0; a < E; a++)
    for (int b = a; b < E; b++)
      for (int d = b; d < E; d++) triples.push_back({a, b, d});
  for (const auto& t0 : triples)
    for (const auto& t1 : triples) {
      std::vector<int> p2l(t0);
      p2l.insert(p2l.end(), t1.begin(), t1.end());
      std::vector<int> cnt(E, 0);
      for (int x : p2l) cnt[x]++;
      if (*std::min_element(cnt.begin(), cnt.end()) == 0) continue;
      if (avoidableDuplicates(p2l, cnt, 2 * c, 2, 2) != 0) continue;
      auto g = gpuLoad(w, p2l, cnt, 2 * c, 2);
      best = std::min(best, std::max(g[0], g[1]));
    }
  return best;
}

/* The two rules can conflict. Loads {12, 8 | 11, 9}: without replicas both GPUs carry
 * 20. Every duplicate-free plan with 6 slots carries >= 20.5 somewhere (checked here
 * exhaustively), so the bound needs a duplicate, and the bound wins (docs/eplb.md). */
TEST(EplbPlan, BoundWinsOverDuplicateRule) {
  const std::vector<double> w = {12, 8, 11, 9};
  EXPECT_EQ(bestDuplicateFreeMax(w), 20.5);
  Plan p;
  ASSERT_EQ(rebalance(w, 1, 4, 6, 1, 1, 2, 0, &p), epSuccess) << epThreadLastError();
  auto g = gpuLoad(w, p.phy2log, p.logcnt, 6, 2);
  EXPECT_LE(*std::max_element(g.begin(), g.end()), 20.0);
  EXPECT_GT(avoidableDuplicates(p.phy2log, p.logcnt, 6, 2, 2), 0);
}

/* ------------------------------------------------------------ validation */

void expectInvalid(epResult_t r, const char* needle) {
  EXPECT_EQ(r, epInvalidArgument);
  EXPECT_NE(std::string(epThreadLastError()).find(needle), std::string::npos)
      << "message '" << epThreadLastError() << "' should mention '" << needle << "'";
}

TEST(EplbPlan, ValidationErrors) {
  std::vector<double> w(12, 1.0);
  std::vector<int> p2l(64, -7), l2p(64 * 8, -7), cnt(64, -7);
  auto call = [&](int E, int R, int G, int N, int P) {
    return epEplbRebalance(w.data(), 1, E, R, G, N, P, 0, p2l.data(), nullptr, 0, cnt.data(), nullptr);
  };
  expectInvalid(call(12, 16, 5, 1, 8), "not a multiple of numGroups");   // E % G
  expectInvalid(call(12, 16, 4, 3, 8), "not a multiple of numNodes");    // P % N
  expectInvalid(call(12, 18, 4, 2, 8), "not a multiple of numGpus");     // R % P
  expectInvalid(call(12, 8, 4, 2, 8), "smaller than numExperts");        // R < E
  expectInvalid(call(0, 16, 4, 2, 8), "numExperts");
  expectInvalid(call(12, 16, 0, 2, 8), "numGroups");
  w[5] = -3;
  expectInvalid(call(12, 16, 4, 2, 8), "negative");
  w[5] = NAN;
  expectInvalid(call(12, 16, 4, 2, 8), "not a finite number");
  w[5] = 1;
  // Outputs untouched on error.
  EXPECT_EQ(p2l[0], -7);
  EXPECT_EQ(cnt[0], -7);
  expectInvalid(epEplbRebalance(nullptr, 1, 12, 16, 4, 2, 8, 0, p2l.data(), nullptr, 0, nullptr, nullptr), "weight");
  expectInvalid(epEplbRebalance(w.data(), 1, 12, 16, 4, 2, 8, 0, nullptr, nullptr, 0, nullptr, nullptr), "phy2log");
  expectInvalid(epEplbRebalance(w.data(), 1, 12, 16, 4, 2, 8, 64, p2l.data(), nullptr, 0, nullptr, nullptr), "flags");
  expectInvalid(epEplbRebalance(w.data(), 1, 12, 16, 4, 2, 8, 0, p2l.data(), l2p.data(), 0, nullptr, nullptr),
                "maxReplicas");
  // A stride too small for the plan names the value needed.
  std::vector<double> skew = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 500};
  int used = 0;
  expectInvalid(epEplbRebalance(skew.data(), 1, 12, 16, 4, 2, 8, 0, p2l.data(), l2p.data(), 1, nullptr, &used),
                "needs maxReplicas >= ");
  EXPECT_GE(used, 2);
  int X = 0;
  expectInvalid(epEplbMaxReplicas(12, 8, &X), "numExperts <= numSlots");
  ASSERT_EQ(epEplbMaxReplicas(256, 288, &X), epSuccess);
  EXPECT_EQ(X, 33);
  // Zero layers is a no-op.
  EXPECT_EQ(epEplbRebalance(nullptr, 0, 12, 16, 4, 2, 8, 0, nullptr, nullptr, 0, nullptr, nullptr), epSuccess);
}

}  // namespace

namespace {

/* Random shapes as well as random loads: every rule must hold on all of them. */
TEST(EplbPlan, PropertiesOnRandomShapes) {
  std::mt19937_64 rng(2026);
  int cases = 0;
  for (int i = 0; i < 300; i++) {
    const int N = 1 << (rng() % 3);                // 1, 2, 4 nodes
    const int P = N * (1 + (int)(rng() % 4));      // 1..4 GPUs per node
    const int G = (int)(1 + rng() % 8);
    const int gs = (int)(1 + rng() % 6);
    const int E = G * gs;
    const int ppg = (E + P - 1) / P + (int)(rng() % 3);
    const int R = P * ppg;
    const int flags = (int)(rng() % 3) == 0 ? EP_EPLB_FLAG_FORCE_GLOBAL : 0;
    const int kind = (int)(rng() % 4);
    Shape s{E, R, G, N, P};
    std::vector<double> w = randomLoads(rng, 2, E, kind);
    SCOPED_TRACE("case " + std::to_string(i) + ": E=" + std::to_string(E) + " R=" + std::to_string(R) +
                 " G=" + std::to_string(G) + " N=" + std::to_string(N) + " P=" + std::to_string(P) +
                 " kind=" + std::to_string(kind) + " flags=" + std::to_string(flags));
    Plan a, b;
    ASSERT_EQ(rebalance(w, 2, E, R, G, N, P, flags, &a), epSuccess) << epThreadLastError();
    checkPlanProperties(w, 2, s, flags, a, kind == 0 ? 0 : -1);
    ASSERT_EQ(rebalance(w, 2, E, R, G, N, P, flags, &b), epSuccess);
    ASSERT_EQ(a.phy2log, b.phy2log);
    cases++;
  }
  EXPECT_EQ(cases, 300);
  std::printf("[ info ] %d plans of all the property tests needed a duplicate to keep the bound\n", g_boundDuplicates);
}

}  // namespace
