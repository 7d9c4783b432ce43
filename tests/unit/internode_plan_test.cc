/*************************************************************************
 * epcomm unit tests: HT internode host plan (src/internode/inter_plan.h):
 * record formats, window layout, put chunking, placement, the per-node
 * layout reference, the gate, and a host simulation of the whole index
 * mapping (source token -> forwarder padded token -> virtual token ->
 * intranode row -> output row) against the intranode ordering contract.
 *************************************************************************/
#include <gtest/gtest.h>


#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <tuple>

#include "internode/inter_plan.h"

namespace {

epInterPlacement placement(int N, int G, int rank) {
  std::vector<int> node(N * G), local(N * G), nvl(N * G, 0);
  for (int r = 0; r < N * G; r++) {
    node[r] = r / G;
    local[r] = r % G;
    nvl[r] = node[r] == rank / G;
  }
  epInterPlacement pl;
  std::string why;
  EXPECT_TRUE(epInterPlacementBuild(rank, N * G, node, local, nvl, 8, &pl, &why)) << why;
  return pl;
}

TEST(InternodePlan, DispatchRecordLayout) {
  for (int K : {0, 1, 8, 32}) {
    for (bool withX : {true, false}) {
      epInterRec r = epInterDispatchRec(7168 * 2, 0, K, withX);
      EXPECT_EQ(0, r.bytes % 16);
      EXPECT_EQ(withX ? 7168 * 2 : 0, r.xBytes);
      EXPECT_EQ(r.scaleOff, r.xBytes);
      EXPECT_EQ(r.idxOff, r.scaleOff + r.scaleCols * 4);
      EXPECT_EQ(r.wOff, r.idxOff + 4 * K);
      EXPECT_EQ(r.srcOff, r.wOff + 4 * K);
      EXPECT_GE(r.bytes, r.srcOff + 4);
      EXPECT_LT(r.bytes, r.srcOff + 4 + 16);
    }
  }
  epInterRec f = epInterDispatchRec(7168, 56, 8, true);  // FP8 with float32 scales
  EXPECT_EQ(7168, f.scaleOff);
  EXPECT_EQ(7168 + 56 * 4, f.idxOff);
  epInterRec meta = epInterDispatchRec(7168, 56, 8, false);
  EXPECT_EQ(0, meta.scaleCols) << "routing-only records carry no scales";
  EXPECT_EQ(80, meta.bytes);
}

TEST(InternodePlan, CombineRecordIsFp32) {
  epInterRec c = epInterCombineRec(4096, 8);
  EXPECT_EQ(4096 * 4, c.xBytes) << "partial sums travel in fp32 (one BF16 rounding at the origin)";
  EXPECT_EQ(4096 * 4, c.wOff);
  EXPECT_EQ(4096 * 4 + 32, c.bytes);
  EXPECT_EQ(0, epInterCombineRec(2056, 3).bytes % 16);
}

TEST(InternodePlan, WindowLayoutDisjointAndAligned) {
  for (int N : {2, 3, 8, 32}) {
    epInterBufLayout l;
    const int dRec = epInterDispatchRec(8192 * 2, 64, 32, true).bytes, cRec = epInterCombineRec(8192, 32).bytes;
    epInterBufLayoutCompute(N, 4096, dRec, cRec, &l);
    struct Part {
      long long off, bytes;
    };
    std::vector<Part> parts = {{l.sigOff, 4LL * N * 8},
                               {l.hdrSendOff, (long long)N * EP_INTER_HDR_BYTES},
                               {l.hdrRecvOff, (long long)N * EP_INTER_HDR_BYTES},
                               {l.dSendOff, l.dRegion * N},
                               {l.dRecvOff, l.dRegion * N},
                               {l.cSendOff, l.cRegion * N},
                               {l.cRecvOff, l.cRegion * N}};
    for (size_t i = 0; i + 1 < parts.size(); i++)
      EXPECT_LE(parts[i].off + parts[i].bytes, parts[i + 1].off) << "part " << i << " overlaps the next (N=" << N << ")";
    EXPECT_LE(parts.back().off + parts.back().bytes, l.total);
    EXPECT_GE(l.dRegion, 4096LL * dRec);
    EXPECT_GE(l.cRegion, 4096LL * cRec);
    for (long long o : {l.dSendOff, l.dRecvOff, l.cSendOff, l.cRecvOff}) EXPECT_EQ(0, o % 128);
    EXPECT_EQ(0, l.dRegion % 128);
    EXPECT_LE(l.total, (long long)((1ull << 48) - 1)) << "window offsets must fit the descriptor's 48 bits";
    // Signal slots: distinct, inside the signal area, 8-byte words.
    std::vector<uint32_t> slots;
    for (int w = 0; w < 4; w++)
      for (int m = 0; m < N; m++) slots.push_back(epInterSigSlot(l, w, m));
    std::sort(slots.begin(), slots.end());
    EXPECT_TRUE(std::adjacent_find(slots.begin(), slots.end()) == slots.end());
    EXPECT_LT((long long)slots.back() * 8 + 8, l.hdrSendOff + 1);
  }
}

TEST(InternodePlan, PutChunksCoverExactly) {
  const std::vector<uint64_t> sizes = {0, 1, 4096, EP_INTER_PUT_CHUNK, EP_INTER_PUT_CHUNK + 16, 123456789};
  for (uint64_t bytes : sizes) {
    auto v = epInterPlanPuts(bytes, EP_INTER_PUT_CHUNK);
    uint64_t next = 0;
    for (auto& c : v) {
      EXPECT_EQ(next, c.off);
      EXPECT_GT(c.bytes, 0u);
      EXPECT_LE(c.bytes, EP_INTER_PUT_CHUNK);
      next += c.bytes;
    }
    EXPECT_EQ(bytes, next);
    EXPECT_EQ((bytes + EP_INTER_PUT_CHUNK - 1) / EP_INTER_PUT_CHUNK, v.size());
  }
}

TEST(InternodePlan, PlacementTables) {
  epInterPlacement pl = placement(2, 2, 3);
  EXPECT_EQ(2, pl.nNodes);
  EXPECT_EQ(2, pl.G);
  EXPECT_EQ(1, pl.myNode);
  EXPECT_EQ(1, pl.myLocal);
  EXPECT_EQ((std::vector<int>{0, 1, 2, 3}), pl.nodeRank);
  // Interleaved placement (ranks not numbered node by node) is supported.
  std::vector<int> node = {0, 1, 0, 1}, local = {0, 0, 1, 1}, nvl = {1, 0, 1, 0};
  epInterPlacement p2;
  std::string why;
  ASSERT_TRUE(epInterPlacementBuild(0, 4, node, local, nvl, 8, &p2, &why)) << why;
  EXPECT_EQ((std::vector<int>{0, 2, 1, 3}), p2.nodeRank);
}

TEST(InternodePlan, PlacementRefusals) {
  epInterPlacement pl;
  std::string why;
  EXPECT_FALSE(epInterPlacementBuild(0, 3, {0, 0, 1}, {0, 1, 0}, {1, 1, 0}, 8, &pl, &why));
  EXPECT_NE(std::string::npos, why.find("same rank count")) << why;
  EXPECT_FALSE(epInterPlacementBuild(0, 4, {0, 0, 1, 1}, {0, 1, 0, 1}, {1, 0, 0, 0}, 8, &pl, &why));
  EXPECT_NE(std::string::npos, why.find("NVLink")) << why;
  EXPECT_FALSE(epInterPlacementBuild(0, 4, {0, 0, 1, 1}, {0, 1, 0, 1}, {1, 1, 0, 0}, 1, &pl, &why));
  EXPECT_NE(std::string::npos, why.find("limit")) << why;
  std::vector<int> node(33), local(33, 0), nvl(33, 0);
  for (int r = 0; r < 33; r++) node[r] = r;
  EXPECT_FALSE(epInterPlacementBuild(0, 33, node, local, nvl, 8, &pl, &why));
  EXPECT_NE(std::string::npos, why.find("nodes")) << why;
  EXPECT_FALSE(epInterPlacementBuild(0, 4, {0, 0, 1, 1}, {0, 0, 0, 1}, {1, 1, 0, 0}, 8, &pl, &why));
  EXPECT_NE(std::string::npos, why.find("share")) << why;
}

TEST(InternodePlan, SubExpertIds) {
  epInterPlacement pl = placement(2, 2, 0);
  const int L = 4;  // 16 experts: rank r holds [4r, 4r+4)
  EXPECT_EQ(0, epInterSubExpert(pl, L, 0, 0));
  EXPECT_EQ(7, epInterSubExpert(pl, L, 7, 0));   // rank 1, local expert 3 -> sub id 1*4+3
  EXPECT_EQ(-1, epInterSubExpert(pl, L, 8, 0));  // lives on node 1
  EXPECT_EQ(0, epInterSubExpert(pl, L, 8, 1));
  EXPECT_EQ(7, epInterSubExpert(pl, L, 15, 1));
  EXPECT_EQ(-1, epInterSubExpert(pl, L, -1, 0));
  EXPECT_EQ(-1, epInterSubExpert(pl, L, 16, 1));
}

TEST(InternodePlan, NodeLayoutReference) {
  epInterPlacement pl = placement(2, 2, 0);
  // E = 16, L = 4: node 0 = experts [0, 8), node 1 = [8, 16).
  std::vector<int64_t> ids = {0,  1,  // node 0 only
                              8,  -1, // node 1 only
                              3,  12, // both
                              -1, -1, // none
                              20, 9,  // bad id (ignored) + node 1
                              5,  7}; // node 0
  epInterNodeLayout l = epInterNodeLayoutRef(ids.data(), 6, 2, 16, pl, 1);
  EXPECT_EQ((std::vector<int>{3, 3}), l.nodeCount);
  EXPECT_EQ((std::vector<int>{0, -1, -1, 0, 1, 1, -1, -1, -1, 2, 2, -1}), l.slot);
  EXPECT_EQ((std::vector<int>{1, 1, 2, 0, 1, 1}), l.nodesOfToken);
  EXPECT_EQ(2, l.firstOverLimit);
  EXPECT_EQ(4, l.firstBadId);
  EXPECT_EQ(-1, epInterNodeLayoutRef(ids.data(), 6, 2, 16, pl, 0).firstOverLimit) << "0 = no limit";
}

/* Simulates one dispatch of every rank on the host the way the kernels index
 * it and checks the rows `me` gets, in output order, against the intranode
 * contract: ordered by source rank, then source token; local expert ids. */
void simulate(int N, int G, int T, int K, int E, int Tcfg, uint64_t seed) {
  const int R = N * G, L = E / R;
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> ids(R);
  std::vector<int> Tof(R);
  for (int r = 0; r < R; r++) {
    Tof[r] = r == 1 ? 0 : T - (int)(rng() % 3);  // rank 1 has no tokens
    ids[r].resize((size_t)Tof[r] * K);
    for (auto& e : ids[r]) e = rng() % 10 == 0 ? -1 : (int64_t)(rng() % E);
  }
  std::vector<epInterNodeLayout> lay(R);
  for (int r = 0; r < R; r++) lay[r] = epInterNodeLayoutRef(ids[r].data(), Tof[r], K, E, placement(N, G, r), 0);
  for (int me = 0; me < R; me++) {
    epInterPlacement pl = placement(N, G, me);
    const int myNode = pl.myNode, myLocal = pl.myLocal;
    const long long Tpad = (long long)N * Tcfg;
    // Forwarders (myNode, j): virtual tokens vp = myLocal * Tpad + p routed to me, ascending.
    std::vector<int> vpOfRow, rankPrefix = {0};
    std::vector<std::vector<int>> idsOfRow;
    for (int j = 0; j < G; j++) {
      for (int s = 0; s < N; s++) {
        const int src = pl.nodeRank[(size_t)s * G + j];
        // Records arrive in slot order; the forwarder places token t at p = s*Tcfg + t.
        for (int t = 0; t < Tof[src]; t++) {
          if (lay[src].slot[(size_t)t * N + myNode] < 0) continue;
          std::vector<int> sub(K);
          bool mine = false;
          for (int k = 0; k < K; k++) {
            const int id = epInterSubExpert(pl, L, ids[src][(size_t)t * K + k], myNode);
            sub[k] = id >= myLocal * L && id < (myLocal + 1) * L ? id - myLocal * L : -1;
            mine |= sub[k] >= 0;
          }
          if (!mine) continue;
          vpOfRow.push_back((int)(myLocal * Tpad + (long long)s * Tcfg + t));
          idsOfRow.push_back(sub);
        }
      }
      rankPrefix.push_back((int)vpOfRow.size());
    }
    std::vector<int> dest = epInterRowOrderRef(vpOfRow, rankPrefix, pl, Tcfg);
    EXPECT_EQ(dest, epInterRowMapCounts(vpOfRow, rankPrefix, pl, Tcfg))
        << "the kernel's counting map differs from the sorted order (rank " << me << ")";
    const int n = (int)vpOfRow.size();
    std::vector<std::tuple<int, int, std::vector<int>>> got(n);
    for (int i = 0; i < n; i++) {
      ASSERT_GE(dest[i], 0);
      ASSERT_LT(dest[i], n);
      int j = 0;
      while (i >= rankPrefix[j + 1]) j++;
      const long long p = vpOfRow[i] % Tpad;
      got[dest[i]] = {pl.nodeRank[(size_t)(p / Tcfg) * G + j], (int)(p % Tcfg), idsOfRow[i]};
    }
    // Expected, straight from the intranode contract.
    std::vector<std::tuple<int, int, std::vector<int>>> want;
    for (int src = 0; src < R; src++) {
      for (int t = 0; t < Tof[src]; t++) {
        std::vector<int> loc(K);
        bool any = false;
        for (int k = 0; k < K; k++) {
          const int64_t e = ids[src][(size_t)t * K + k];
          loc[k] = e >= 0 && e / L == me ? (int)(e % L) : -1;
          any |= loc[k] >= 0;
        }
        if (any) want.emplace_back(src, t, loc);
      }
    }
    ASSERT_EQ(want.size(), got.size()) << "rank " << me;
    for (size_t i = 0; i < want.size(); i++) ASSERT_EQ(want[i], got[i]) << "rank " << me << " row " << i;
  }
}

TEST(InternodePlan, IndexMappingMatchesIntranodeContract2x2) { simulate(2, 2, 64, 8, 32, 64, 1); }
TEST(InternodePlan, IndexMappingMatchesIntranodeContract2x1) { simulate(2, 1, 50, 4, 16, 64, 2); }
TEST(InternodePlan, IndexMappingMatchesIntranodeContract4x2) { simulate(4, 2, 40, 8, 64, 48, 3); }
TEST(InternodePlan, IndexMappingMatchesIntranodeContract3x8) { simulate(3, 8, 20, 8, 96, 32, 4); }


}  // namespace
