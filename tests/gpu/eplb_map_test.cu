/*************************************************************************
 * epcomm GPU tests: epMapLogicalToPhysical against the host reference
 * (bitwise), for every policy, int32/int64 ids, in place, with -1 and bad ids;
 * plus the load statistics kernels against host sums.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "epcomm.h"
#include "eplb/map_ref.h"
#include "tests/gpu/eplb_gpu_util.h"

namespace {

struct Table {
  int E, R, G, N, P, X;
  std::vector<int> phy2log, log2phy, logcnt;
};

Table plan(int E, int R, int G, int N, int P, uint64_t seed) {
  Table t{E, R, G, N, P, 0, {}, {}, {}};
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> ln(0.0, 1.3);
  std::vector<double> w(E);
  for (auto& x : w) x = ln(rng) * 100;
  w[E / 2] *= 50;
  epEplbMaxReplicas(E, R, &t.X);
  t.phy2log.resize(R), t.log2phy.resize((size_t)E * t.X), t.logcnt.resize(E);
  if (epEplbRebalance(w.data(), 1, E, R, G, N, P, 0, t.phy2log.data(), t.log2phy.data(), t.X, t.logcnt.data(),
                      nullptr) != epSuccess)
    t.E = 0;
  return t;
}

struct MapCase {
  int T, K;
  epDataType_t idType;
  bool inPlace;
  int badEvery;  // 0: none; else every n-th entry is an out-of-range id
};

void runMap(const Table& tb, const epExpertMapDesc_t& d, const MapCase& c, uint64_t seed) {
  std::ostringstream name;
  name << "E=" << tb.E << " R=" << tb.R << " G=" << tb.G << " N=" << tb.N << " P=" << tb.P << " rank=" << d.rank
       << " policy=" << (int)d.policy << " T=" << c.T << " K=" << c.K << (c.idType == epInt64 ? " i64" : " i32")
       << (c.inPlace ? " in-place" : "") << " bad-every=" << c.badEvery;
  SCOPED_TRACE(name.str());
  const size_t n = (size_t)c.T * c.K;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pick(-1, tb.E - 1);
  std::vector<int64_t> ids(n);
  for (size_t i = 0; i < n; i++) {
    ids[i] = pick(rng);
    if (i % c.K == 0 && rng() % 2) ids[i] = tb.E / 2;  // the hot, replicated expert
    if (c.badEvery && i % c.badEvery == (size_t)c.badEvery - 1) ids[i] = (rng() % 2) ? tb.E + 3 : -7;
  }
  std::vector<int64_t> ref(n);
  int refErr[4] = {0, 0, 0, 0};
  ep::eplb::mapLogicalToPhysicalRef(ids.data(), ref.data(), c.T, c.K, tb.log2phy.data(), tb.logcnt.data(), d, refErr);

  DevBuf<int> dL2p(tb.log2phy.size()), dCnt(tb.logcnt.size()), dErr(4);
  EPLB_CUDA_OK(dL2p.upload(tb.log2phy));
  EPLB_CUDA_OK(dCnt.upload(tb.logcnt));
  EPLB_CUDA_OK(cudaMemset(dErr.p, 0, 4 * sizeof(int)));
  DevBuf<int64_t> in64(c.idType == epInt64 ? n : 0), out64(c.idType == epInt64 && !c.inPlace ? n : 0);
  DevBuf<int32_t> in32(c.idType == epInt32 ? n : 0), out32(c.idType == epInt32 && !c.inPlace ? n : 0);
  void* in;
  void* out;
  if (c.idType == epInt64) {
    EPLB_CUDA_OK(in64.upload(ids));
    in = in64.p;
    out = c.inPlace ? (void*)in64.p : (void*)out64.p;
  } else {
    std::vector<int32_t> v(ids.begin(), ids.end());
    EPLB_CUDA_OK(in32.upload(v));
    in = in32.p;
    out = c.inPlace ? (void*)in32.p : (void*)out32.p;
  }
  epResult_t r = epMapLogicalToPhysical(in, out, c.idType, c.T, c.K, dL2p.p, dCnt.p, &d, dErr.p, nullptr);
  ASSERT_EQ(r, epSuccess) << epGetLastError(nullptr);
  EPLB_CUDA_OK(cudaDeviceSynchronize());
  std::vector<int64_t> got(n);
  if (c.idType == epInt64) {
    got = c.inPlace ? in64.download() : out64.download();
  } else {
    std::vector<int32_t> g = c.inPlace ? in32.download() : out32.download();
    for (size_t i = 0; i < n; i++) got[i] = g[i];
  }
  int bad = 0;
  for (size_t i = 0; i < n && bad < 5; i++)
    if (got[i] != ref[i]) {
      ADD_FAILURE() << "token " << i / c.K << " slot " << i % c.K << " (logical " << ids[i] << "): GPU " << got[i]
                    << " vs host " << ref[i];
      bad++;
    }
  ASSERT_EQ(bad, 0);
  std::vector<int> gerr = dErr.download();
  EXPECT_EQ(gerr[0], refErr[0]) << "error code";
  if (gerr[0] != 0) {
    // The kernel keeps whichever bad entry it met first; it must be a bad one.
    ASSERT_GE(gerr[1], 0);
    ASSERT_LT(gerr[1], c.T);
    ASSERT_GE(gerr[2], 0);
    ASSERT_LT(gerr[2], c.K);
    const int64_t e = ids[(size_t)gerr[1] * c.K + gerr[2]];
    EXPECT_TRUE(e < -1 || e >= tb.E) << "reported token " << gerr[1] << " slot " << gerr[2] << " holds valid id " << e;
    EXPECT_EQ(gerr[3], (int)e);
  }
}

epExpertMapDesc_t descOf(const Table& t, int rank, epMapPolicy_t pol) {
  epExpertMapDesc_t d;
  memset(&d, 0, sizeof(d));
  d.numExperts = t.E, d.numSlots = t.R, d.maxReplicas = t.X, d.numRanks = t.P, d.numNodes = t.N;
  d.rank = rank, d.policy = pol, d.tokenOffset = 4096LL * rank;
  return d;
}

TEST(EplbMapGpu, MatchesHostReferenceBitwise) {
  EPLB_REQUIRE_GPU();
  const Table tables[] = {
      plan(256, 288, 8, 4, 32, 1),   // DeepSeek-V3 prefill: hierarchical
      plan(256, 320, 8, 40, 320, 2), // decode-like: global, one slot per GPU
      plan(64, 96, 1, 4, 16, 3),     // global over 4 nodes: replicas spread over nodes
      plan(12, 16, 4, 2, 8, 4),      // the README shape
  };
  const MapCase cases[] = {
      {4096, 8, epInt64, false, 0}, {4097, 8, epInt32, false, 0}, {1000, 9, epInt64, true, 0},
      {333, 6, epInt32, true, 0},   {1, 8, epInt64, false, 0},    {0, 8, epInt64, false, 0},
  };
  uint64_t seed = 10;
  for (const Table& t : tables) {
    ASSERT_GT(t.E, 0) << "planning failed: " << epGetLastError(nullptr);
    for (int pol = 0; pol < 3; pol++)
      for (int rank : {0, t.P - 1})
        for (const MapCase& c : cases) runMap(t, descOf(t, rank, (epMapPolicy_t)pol), c, seed++);
  }
}

TEST(EplbMapGpu, BadIdsMapToMinusOneAndAreReported) {
  EPLB_REQUIRE_GPU();
  Table t = plan(64, 96, 1, 4, 16, 7);
  ASSERT_GT(t.E, 0);
  const MapCase cases[] = {{2000, 8, epInt64, false, 13}, {2000, 8, epInt32, true, 101}};
  uint64_t seed = 50;
  for (int pol = 0; pol < 3; pol++)
    for (const MapCase& c : cases) runMap(t, descOf(t, 3, (epMapPolicy_t)pol), c, seed++);
}

TEST(EplbMapGpu, BadArgumentsAreErrors) {
  Table t = plan(12, 16, 4, 2, 8, 4);
  epExpertMapDesc_t d = descOf(t, 0, epMapSpread);
  int* fake = reinterpret_cast<int*>(0x1000);  // never dereferenced: validation fails first
  EXPECT_EQ(epMapLogicalToPhysical(fake, fake, epFloat32, 4, 8, fake, fake, &d, nullptr, nullptr), epInvalidArgument);
  EXPECT_EQ(epMapLogicalToPhysical(fake, fake, epInt32, 4, 0, fake, fake, &d, nullptr, nullptr), epInvalidArgument);
  EXPECT_EQ(epMapLogicalToPhysical(fake, fake, epInt32, 4, 8, nullptr, fake, &d, nullptr, nullptr), epInvalidArgument);
  EXPECT_NE(std::string(epGetLastError(nullptr)).find("log2phy"), std::string::npos) << epGetLastError(nullptr);
  EXPECT_EQ(epMapLogicalToPhysical(fake, fake, epInt32, 4, 8, fake, fake, nullptr, nullptr, nullptr), epInvalidArgument);
  epExpertMapDesc_t b = d;
  b.rank = 8;
  EXPECT_EQ(epMapLogicalToPhysical(fake, fake, epInt32, 4, 8, fake, fake, &b, nullptr, nullptr), epInvalidArgument);
  EXPECT_NE(std::string(epGetLastError(nullptr)).find("rank=8"), std::string::npos) << epGetLastError(nullptr);
}

/* ------------------------------------------------------------ load statistics */

TEST(EplbStatsGpu, AccumulateCountsAndTopk) {
  EPLB_REQUIRE_GPU();
  const int E = 256, R = 288, T = 5000, K = 8;
  Table t = plan(E, R, 8, 4, 32, 9);
  ASSERT_GT(t.E, 0);
  std::mt19937_64 rng(77);
  std::vector<int> logical(E), physical(R);
  for (auto& c : logical) c = (int)(rng() % 10000);
  for (auto& c : physical) c = (int)(rng() % 10000);
  std::vector<long long> want(E, 0);
  for (int e = 0; e < E; e++) want[e] += 2LL * logical[e];  // added twice below
  for (int p = 0; p < R; p++) want[t.phy2log[p]] += physical[p];

  DevBuf<long long> row(E);
  DevBuf<int> dLog(E), dPhys(R), dP2l(R);
  EPLB_CUDA_OK(cudaMemset(row.p, 0, E * sizeof(long long)));
  EPLB_CUDA_OK(dLog.upload(logical));
  EPLB_CUDA_OK(dPhys.upload(physical));
  EPLB_CUDA_OK(dP2l.upload(t.phy2log));
  ASSERT_EQ(epEplbAccumulateLoad(dLog.p, E, nullptr, E, row.p, nullptr), epSuccess) << epGetLastError(nullptr);
  ASSERT_EQ(epEplbAccumulateLoad(dLog.p, E, nullptr, E, row.p, nullptr), epSuccess);
  ASSERT_EQ(epEplbAccumulateLoad(dPhys.p, R, dP2l.p, E, row.p, nullptr), epSuccess);
  EPLB_CUDA_OK(cudaDeviceSynchronize());
  std::vector<long long> got = row.download();
  for (int e = 0; e < E; e++) ASSERT_EQ(got[e], want[e]) << "expert " << e;

  // Top-k histogram, int64 and int32, with -1 and out-of-range ids ignored.
  for (epDataType_t ty : {epInt64, epInt32}) {
    SCOPED_TRACE(ty == epInt64 ? "int64" : "int32");
    std::vector<int64_t> ids((size_t)T * K);
    std::vector<long long> hist(E, 0);
    for (auto& e : ids) {
      int r = (int)(rng() % 300);
      e = r < 260 ? (r < 4 ? 7 : r % E) : (r < 280 ? -1 : E + r);
      if (e >= 0 && e < E) hist[e]++;
    }
    DevBuf<long long> h(E);
    EPLB_CUDA_OK(cudaMemset(h.p, 0, E * sizeof(long long)));
    DevBuf<int64_t> d64(ty == epInt64 ? ids.size() : 0);
    DevBuf<int32_t> d32(ty == epInt32 ? ids.size() : 0);
    const void* p;
    if (ty == epInt64) {
      EPLB_CUDA_OK(d64.upload(ids));
      p = d64.p;
    } else {
      EPLB_CUDA_OK(d32.upload(std::vector<int32_t>(ids.begin(), ids.end())));
      p = d32.p;
    }
    ASSERT_EQ(epEplbAccumulateTopk(p, ty, T, K, E, h.p, nullptr), epSuccess) << epGetLastError(nullptr);
    ASSERT_EQ(epEplbAccumulateTopk(p, ty, 0, K, E, h.p, nullptr), epSuccess);  // zero tokens: no-op
    EPLB_CUDA_OK(cudaDeviceSynchronize());
    std::vector<long long> g = h.download();
    for (int e = 0; e < E; e++) ASSERT_EQ(g[e], hist[e]) << "expert " << e;
  }
}

TEST(EplbStatsGpu, BadArgumentsAreErrors) {
  long long* fake = reinterpret_cast<long long*>(0x1000);
  const int* ifake = reinterpret_cast<const int*>(0x1000);
  EXPECT_EQ(epEplbAccumulateLoad(ifake, 10, nullptr, 12, fake, nullptr), epInvalidArgument);  // counts != E
  EXPECT_EQ(epEplbAccumulateLoad(ifake, 10, nullptr, 0, fake, nullptr), epInvalidArgument);
  EXPECT_EQ(epEplbAccumulateLoad(nullptr, 12, nullptr, 12, fake, nullptr), epInvalidArgument);
  EXPECT_EQ(epEplbAccumulateTopk(ifake, epFloat32, 4, 8, 256, fake, nullptr), epInvalidArgument);
  EXPECT_EQ(epEplbAccumulateTopk(ifake, epInt32, 4, 0, 256, fake, nullptr), epInvalidArgument);
  EXPECT_EQ(epEplbAccumulateTopk(ifake, epInt32, 4, 8, 100000, fake, nullptr), epInvalidArgument);
}

}  // namespace
