/*************************************************************************
 * epcomm unit tests: the host references of the gating and mapping kernels
 * (the GPU tests compare the kernels with these, so they must be right
 * first), and the deterministic float math they share with the kernels.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "core/debug.h"
#include "epcomm.h"
#include "eplb/eplb_math.h"
#include "eplb/gating_ref.h"
#include "eplb/map_ref.h"

namespace {

using ep::eplb::gatingRef;
using ep::eplb::mapLogicalToPhysicalRef;

/* ------------------------------------------------------------ math */

TEST(EplbMath, ExpAndSigmoidAreAccurate) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-87.0f, 88.0f);
  for (int i = 0; i < 200000; i++) {
    float x = i < 1000 ? -10.0f + i * 0.02f : u(rng);
    double ref = std::exp((double)x);
    float got = ep::eplb::expDet(x);
    ASSERT_LE(std::fabs(got - ref), 4.0 * std::fabs(ref) * 1.2e-7) << "x=" << x << " exp=" << got << " ref=" << ref;
    float s = ep::eplb::sigmoidDet(x);
    double sref = 1.0 / (1.0 + std::exp(-(double)x));
    ASSERT_LE(std::fabs(s - sref), 4.0 * sref * 1.2e-7 + 1e-45) << "x=" << x;
  }
  EXPECT_EQ(ep::eplb::expDet(100.0f), INFINITY);
  EXPECT_EQ(ep::eplb::expDet(-200.0f), 0.0f);
  EXPECT_EQ(ep::eplb::sigmoidDet(-200.0f), 0.0f);
  EXPECT_EQ(ep::eplb::sigmoidDet(200.0f), 1.0f);
  EXPECT_TRUE(std::isnan(ep::eplb::sigmoidDet(NAN)));
  // Monotone on a fine grid (routing relies on the order of sigmoid values).
  float prev = 0.0f;
  for (float x = -20.0f; x < 20.0f; x += 0.001f) {
    float s = ep::eplb::sigmoidDet(x);
    ASSERT_GE(s, prev) << "x=" << x;
    prev = s;
  }
}

/* ------------------------------------------------------------ gating reference */

epGatingDesc_t desc(int E, int G, int topkGroups, int K, float scale = 1.0f, int flags = 0) {
  epGatingDesc_t d;
  memset(&d, 0, sizeof(d));
  d.numExperts = E;
  d.numGroups = G;
  d.topkGroups = topkGroups;
  d.topk = K;
  d.routedScalingFactor = scale;
  d.flags = flags;
  return d;
}

struct GateOut {
  std::vector<int64_t> idx;
  std::vector<float> w;
  int nodes = -1;
};

GateOut gate(const std::vector<float>& x, const std::vector<float>* bias, int T, const epGatingDesc_t& d) {
  GateOut o;
  o.idx.assign((size_t)T * d.topk, -9);
  o.w.assign((size_t)T * d.topk, -9.0f);
  gatingRef(x.data(), bias ? bias->data() : nullptr, T, d, o.idx.data(), o.w.data(),
            ep::eplb::gatingNumNodes(d) > 0 ? &o.nodes : nullptr);
  return o;
}

TEST(EplbGatingRef, HandExampleTopOneAndTopTwoGroupScores) {
  const std::vector<float> s = {0.9f, 0.1f, 0.5f, 0.5f, 0.8f, 0.7f, 0.2f, 0.95f};
  // K=2, 2 groups kept: group score = top-1 -> {0.9, 0.5, 0.8, 0.95}: keep groups 3, 0.
  GateOut o = gate(s, nullptr, 1, desc(8, 4, 2, 2, 2.5f, EP_GATING_FLAG_INPUT_IS_SCORES));
  EXPECT_EQ(o.idx, (std::vector<int64_t>{7, 0}));
  EXPECT_FLOAT_EQ(o.w[0], 0.95f / 1.85f * 2.5f);
  EXPECT_FLOAT_EQ(o.w[1], 0.9f / 1.85f * 2.5f);
  // K=4: group score = top-2 sum -> {1.0, 1.0, 1.5, 1.15}: keep groups 2, 3 although expert 0 (0.9) is 2nd best overall.
  o = gate(s, nullptr, 1, desc(8, 4, 2, 4, 1.0f, EP_GATING_FLAG_INPUT_IS_SCORES));
  EXPECT_EQ(o.idx, (std::vector<int64_t>{7, 4, 5, 6}));
  // No renormalisation: weights are the scores times the scale.
  o = gate(s, nullptr, 1, desc(8, 4, 2, 2, 2.0f, EP_GATING_FLAG_INPUT_IS_SCORES | EP_GATING_FLAG_NO_RENORMALIZE));
  EXPECT_EQ(o.w, (std::vector<float>{1.9f, 1.8f}));
}

TEST(EplbGatingRef, TiesGoToLowerIndices) {
  std::vector<float> s(16, 0.5f);
  GateOut o = gate(s, nullptr, 1, desc(16, 4, 2, 3, 1.0f, EP_GATING_FLAG_INPUT_IS_SCORES));
  EXPECT_EQ(o.idx, (std::vector<int64_t>{0, 1, 2}));
  s[13] = 0.6f;  // group 3 now wins a group slot; group 0 keeps the other one
  o = gate(s, nullptr, 1, desc(16, 4, 2, 3, 1.0f, EP_GATING_FLAG_INPUT_IS_SCORES));
  EXPECT_EQ(o.idx, (std::vector<int64_t>{13, 0, 1}));
}

/* The bias steers the selection but the weights use the unbiased scores; masked
 * groups are -inf, so with an all-negative bias they still never win (HF's 0.0 would). */
TEST(EplbGatingRef, BiasSelectsAndMaskingIsMinusInfinity) {
  std::vector<float> s = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  std::vector<float> bias(8, -2.0f);
  bias[5] = -1.5f;
  bias[6] = -1.9f;
  GateOut o = gate(s, &bias, 1, desc(8, 4, 1, 2, 1.0f, EP_GATING_FLAG_INPUT_IS_SCORES));
  EXPECT_EQ(o.idx, (std::vector<int64_t>{5, 4})) << "only group 2 may be used";
  EXPECT_FLOAT_EQ(o.w[0], 0.5f);
  EXPECT_FLOAT_EQ(o.w[1], 0.5f);
}

TEST(EplbGatingRef, NanNeverChosenAndShortfallIsMinusOne) {
  std::vector<float> s = {NAN, 0.1f, 0.2f, NAN};
  GateOut o = gate(s, nullptr, 1, desc(4, 1, 1, 3, 1.0f, EP_GATING_FLAG_INPUT_IS_SCORES));
  EXPECT_EQ(o.idx, (std::vector<int64_t>{2, 1, -1}));
  EXPECT_EQ(o.w[2], 0.0f);
  // Groups of 4 and nodes of 6 overlap: keeping group 1 ([4,8)) and then one node leaves 2 experts for K=4.
  std::vector<float> x(12, 0.1f);
  x[4] = 0.9f, x[5] = 0.8f, x[6] = 0.7f, x[7] = 0.6f;
  epGatingDesc_t d = desc(12, 3, 1, 4, 1.0f, EP_GATING_FLAG_INPUT_IS_SCORES);
  d.numRanks = 2, d.ranksPerNode = 1, d.maxNodes = 1;
  o = gate(x, nullptr, 1, d);
  EXPECT_EQ(o.idx, (std::vector<int64_t>{4, 5, -1, -1}));
  EXPECT_EQ(o.nodes, 1);
}

void checkGatingProperties(const std::vector<float>& x, const std::vector<float>* bias, int T, const epGatingDesc_t& d,
                           const GateOut& o) {
  const int E = d.numExperts, K = d.topk, gs = E / d.numGroups;
  const int nodes = ep::eplb::gatingNumNodes(d);
  int maxNodes = 0;
  for (int t = 0; t < T; t++) {
    std::set<int64_t> ids, groups, nodeSet;
    double sumW = 0;
    float prevC = INFINITY;
    for (int k = 0; k < K; k++) {
      int64_t e = o.idx[(size_t)t * K + k];
      ASSERT_GE(e, 0) << "token " << t << " slot " << k;
      ASSERT_LT(e, E);
      ASSERT_TRUE(ids.insert(e).second) << "token " << t << " repeats expert " << e;
      groups.insert(e / gs);
      if (nodes > 0) nodeSet.insert(e / (E / nodes));
      float s = ep::eplb::sigmoidDet(x[(size_t)t * E + e]);
      float c = bias ? s + (*bias)[e] : s;
      ASSERT_LE(c, prevC) << "token " << t << ": not sorted by selection score at slot " << k;
      prevC = c;
      sumW += o.w[(size_t)t * K + k];
    }
    ASSERT_LE((int)groups.size(), d.topkGroups) << "token " << t;
    if (d.maxNodes > 0) {
      ASSERT_LE((int)nodeSet.size(), d.maxNodes) << "token " << t;
    }
    maxNodes = std::max(maxNodes, (int)nodeSet.size());
    ASSERT_NEAR(sumW, d.routedScalingFactor, 1e-5 * d.routedScalingFactor) << "token " << t;
    // Within the kept groups, nothing unselected beats the last selected expert.
    for (int e = 0; e < E; e++) {
      if (ids.count(e) || !groups.count(e / gs)) continue;
      if (d.maxNodes > 0 && !nodeSet.count(e / (E / nodes))) continue;
      float s = ep::eplb::sigmoidDet(x[(size_t)t * E + e]);
      float c = bias ? s + (*bias)[e] : s;
      ASSERT_LE(c, prevC) << "token " << t << ": expert " << e << " beats a selected one";
    }
  }
  if (nodes > 0) {
    EXPECT_EQ(o.nodes, maxNodes);
  }
}

TEST(EplbGatingRef, DeepSeekV3ShapeProperties) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const int T = 300, E = 256;
  std::vector<float> x((size_t)T * E), bias(E);
  for (auto& v : x) v = nd(rng);
  for (auto& b : bias) b = nd(rng) * 0.05f;
  epGatingDesc_t d = desc(E, 8, 4, 8, 2.5f);
  GateOut o = gate(x, &bias, T, d);
  checkGatingProperties(x, &bias, T, d, o);
  // Node-limited: 32 ranks, 4 per node (8 nodes of 32 experts), at most 3 nodes, no groups.
  d = desc(E, 1, 1, 8, 2.5f);
  d.numRanks = 32, d.ranksPerNode = 4, d.maxNodes = 3;
  o = gate(x, &bias, T, d);
  checkGatingProperties(x, &bias, T, d, o);
  EXPECT_LE(o.nodes, 3);
  // Without the node limit the same tokens use more nodes (the limit is doing something).
  d.maxNodes = 0;
  GateOut free = gate(x, &bias, T, d);
  EXPECT_GT(free.nodes, 3);
}

TEST(EplbGatingRef, Validation) {
  auto v = [](epGatingDesc_t d, const char* needle, bool wantNodes = false) {
    EXPECT_EQ(ep::eplb::validateGatingDesc(&d, 4, epFloat32, epInt64, wantNodes, "t"), epInvalidArgument);
    EXPECT_NE(std::string(epThreadLastError()).find(needle), std::string::npos) << epThreadLastError();
  };
  v(desc(250, 8, 4, 8), "divide numExperts");
  v(desc(256, 8, 9, 8), "topkGroups must be in");
  v(desc(256, 8, 4, 0), "topk must be in");
  v(desc(256, 8, 4, 65), "topk must be in");
  v(desc(16, 8, 1, 3), "cannot hold topk");
  v(desc(5000, 1, 1, 8), "numExperts must be in");
  epGatingDesc_t d = desc(256, 8, 4, 8);
  d.maxNodes = 2;
  v(d, "numRanks > 0");
  d.numRanks = 6, d.ranksPerNode = 2;
  v(d, "not a multiple of numRanks");
  d.numRanks = 32, d.ranksPerNode = 3;
  v(d, "not a multiple of ranksPerNode");
  d.ranksPerNode = 4, d.maxNodes = 9;
  v(d, "exceeds the 8 nodes");
  d.maxNodes = 0;
  d.numRanks = 0;
  EXPECT_EQ(ep::eplb::validateGatingDesc(&d, 4, epFloat32, epInt64, false, "t"), epSuccess);  // no node use
  v(d, "numRanks > 0", true);   // nodesPerTokenMax needs the placement
  d = desc(256, 8, 4, 8);
  EXPECT_EQ(ep::eplb::validateGatingDesc(&d, 4, epInt32, epInt64, false, "t"), epInvalidArgument);
  EXPECT_EQ(ep::eplb::validateGatingDesc(&d, 4, epFloat32, epFloat32, false, "t"), epInvalidArgument);
  EXPECT_EQ(ep::eplb::validateGatingDesc(&d, -1, epFloat32, epInt32, false, "t"), epInvalidArgument);
  EXPECT_EQ(ep::eplb::validateGatingDesc(nullptr, 4, epFloat32, epInt32, false, "t"), epInvalidArgument);
  EXPECT_EQ(ep::eplb::validateGatingDesc(&d, 4, epBfloat16, epInt32, false, "t"), epSuccess);
}

/* ------------------------------------------------------------ mapping reference */

struct Layer {
  int E, R, G, N, P, X;
  std::vector<int> phy2log, log2phy, logcnt;
};

Layer makeLayer(int E, int R, int G, int N, int P, uint64_t seed) {
  Layer L{E, R, G, N, P, 0, {}, {}, {}};
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> ln(0.0, 1.0);
  std::vector<double> w(E);
  for (auto& x : w) x = ln(rng) * 100;
  w[3] *= 30;  // hot
  EXPECT_EQ(epEplbMaxReplicas(E, R, &L.X), epSuccess);
  L.phy2log.resize(R), L.log2phy.resize((size_t)E * L.X), L.logcnt.resize(E);
  EXPECT_EQ(epEplbRebalance(w.data(), 1, E, R, G, N, P, 0, L.phy2log.data(), L.log2phy.data(), L.X, L.logcnt.data(),
                            nullptr),
            epSuccess);
  return L;
}

epExpertMapDesc_t mapDesc(const Layer& L, int rank, epMapPolicy_t policy) {
  epExpertMapDesc_t d;
  memset(&d, 0, sizeof(d));
  d.numExperts = L.E, d.numSlots = L.R, d.maxReplicas = L.X, d.numRanks = L.P, d.numNodes = L.N;
  d.rank = rank, d.policy = policy, d.tokenOffset = 1000LL * rank;
  return d;
}

int nodeOf(const Layer& L, int64_t slot) { return (int)(slot / (L.R / L.P) / (L.P / L.N)); }

TEST(EplbMapRef, PoliciesKeepTheExpertAndHonourLocality) {
  // G=1 with N=4: the global policy, so replicas of one expert land on several nodes.
  Layer L = makeLayer(32, 64, 1, 4, 16, 5);
  ASSERT_GE(L.logcnt[3], 3);
  const int T = 4000, K = 6, rank = 5, myNode = rank / (L.P / L.N);
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> pick(-1, L.E - 1);
  std::vector<int64_t> ids((size_t)T * K);
  for (auto& e : ids) e = pick(rng);
  for (int t = 0; t < T; t++) ids[(size_t)t * K] = 3;  // every token uses the hot expert
  long long nodesTotal[3] = {0, 0, 0};
  for (int pol = 0; pol < 3; pol++) {
    SCOPED_TRACE("policy " + std::to_string(pol));
    epExpertMapDesc_t d = mapDesc(L, rank, (epMapPolicy_t)pol);
    ASSERT_EQ(ep::eplb::validateMapDesc(&d, T, K, epInt64, "t"), epSuccess);
    std::vector<int64_t> out(ids.size(), -9);
    int err[4] = {0, 0, 0, 0};
    mapLogicalToPhysicalRef(ids.data(), out.data(), T, K, L.log2phy.data(), L.logcnt.data(), d, err);
    EXPECT_EQ(err[0], 0);
    std::vector<int> hotUse(L.R, 0);
    for (int t = 0; t < T; t++) {
      std::set<int> nodes{myNode};
      for (int k = 0; k < K; k++) {
        const int64_t e = ids[(size_t)t * K + k], p = out[(size_t)t * K + k];
        if (e == -1) {
          ASSERT_EQ(p, -1) << "token " << t << " slot " << k;
          continue;
        }
        ASSERT_GE(p, 0) << "token " << t << " slot " << k;
        ASSERT_LT(p, L.R);
        ASSERT_EQ(L.phy2log[p], e) << "token " << t << " slot " << k << ": slot " << p << " does not hold expert " << e;
        bool hasLocal = false;
        for (int j = 0; j < L.logcnt[e]; j++) hasLocal |= nodeOf(L, L.log2phy[(size_t)e * L.X + j]) == myNode;
        if (pol != epMapSpread && hasLocal) {
          ASSERT_EQ(nodeOf(L, p), myNode) << "token " << t << " slot " << k << " skipped a local replica";
        }
        nodes.insert(nodeOf(L, p));
        if (e == 3 && k == 0) hotUse[p]++;
      }
      nodesTotal[pol] += (long long)nodes.size();
    }
    if (pol == epMapSpread) {
      // The hot expert's tokens are spread evenly over its replicas (hash-based, so +-20%).
      for (int j = 0; j < L.logcnt[3]; j++) {
        int p = L.log2phy[(size_t)3 * L.X + j];
        EXPECT_NEAR(hotUse[p], (double)T / L.logcnt[3], 0.2 * T / L.logcnt[3]) << "replica slot " << p;
      }
    }
    // Deterministic and in-place safe.
    std::vector<int64_t> again = ids;
    mapLogicalToPhysicalRef(again.data(), again.data(), T, K, L.log2phy.data(), L.logcnt.data(), d, nullptr);
    EXPECT_EQ(again, out);
  }
  EXPECT_LE(nodesTotal[epMapPreferLocalNode], nodesTotal[epMapSpread]);
  EXPECT_LT(nodesTotal[epMapFewestNodes], nodesTotal[epMapPreferLocalNode])
      << "fewest-nodes should reach fewer nodes than local-only preference";
}

TEST(EplbMapRef, BadIdsAndTablesAreReported) {
  Layer L = makeLayer(8, 16, 2, 2, 4, 1);
  epExpertMapDesc_t d = mapDesc(L, 0, epMapSpread);
  std::vector<int64_t> ids = {0, 1, -1, 9, 2, -5}, out(6, -9);
  int err[4] = {0, 0, 0, 0};
  mapLogicalToPhysicalRef(ids.data(), out.data(), 2, 3, L.log2phy.data(), L.logcnt.data(), d, err);
  EXPECT_EQ(err[0], EP_MAP_ERR_BAD_EXPERT_ID);
  EXPECT_EQ(err[1], 1);  // token
  EXPECT_EQ(err[2], 0);  // slot
  EXPECT_EQ(err[3], 9);
  EXPECT_EQ(out[3], -1);
  EXPECT_EQ(out[5], -1);
  EXPECT_EQ(out[2], -1);
  std::vector<int> badCnt = L.logcnt;
  badCnt[1] = 0;
  int err2[4] = {0, 0, 0, 0};
  mapLogicalToPhysicalRef(ids.data(), out.data(), 1, 3, L.log2phy.data(), badCnt.data(), d, err2);
  EXPECT_EQ(err2[0], EP_MAP_ERR_BAD_TABLE);
  EXPECT_EQ(err2[3], 1);
  EXPECT_EQ(out[1], -1);

  auto v = [&](epExpertMapDesc_t dd, int T, int K, epDataType_t ty, const char* needle) {
    EXPECT_EQ(ep::eplb::validateMapDesc(&dd, T, K, ty, "t"), epInvalidArgument);
    EXPECT_NE(std::string(epThreadLastError()).find(needle), std::string::npos) << epThreadLastError();
  };
  v(d, 1, 0, epInt32, "topk must be in");
  v(d, 1, 65, epInt32, "topk must be in");
  v(d, 1, 4, epFloat32, "idType");
  v(d, -1, 4, epInt32, "numTokens");
  epExpertMapDesc_t b = d;
  b.numSlots = 4;
  v(b, 1, 4, epInt32, "smaller than numExperts");
  b = d, b.numRanks = 3;
  v(b, 1, 4, epInt32, "divide numSlots");
  b = d, b.numNodes = 3;
  v(b, 1, 4, epInt32, "divide numRanks");
  b = d, b.rank = 4;
  v(b, 1, 4, epInt32, "outside [0, numRanks");
  b = d, b.policy = (epMapPolicy_t)7;
  v(b, 1, 4, epInt32, "unknown policy");
  b = d, b.maxReplicas = 0;
  v(b, 1, 4, epInt32, "maxReplicas");
}

}  // namespace
