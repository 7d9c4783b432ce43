/*************************************************************************
 * epcomm unit tests: LL over RDMA, host-checkable parts. The send phase of
 * a rank writes a remote peer's bytes into a local mirror and then ships
 * whole ranges of it (ll_remote.h); these tests pin that every byte the LL
 * kernels write for a peer lies inside a shipped range, that the ranges stay
 * inside their region of the set, and that ranges of different source ranks
 * never overlap (a put must never overwrite another rank's slots).
 *************************************************************************/
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/comm.h"
#include "lowlatency/ll_layout.h"
#include "lowlatency/ll_remote.h"

namespace {

using ep::ll::DispatchHdr;
using ep::ll::Layout;
using ep::ll::RmRange;

struct Shape {
  int R, M, H, E, K;
};
const Shape kShapes[] = {{2, 128, 7168, 256, 16}, {4, 128, 7168, 256, 16}, {4, 16, 640, 32, 8},
                         {8, 64, 2048, 64, 8},    {16, 128, 7168, 256, 8}, {3, 5, 128, 6, 2}};

bool inside(const RmRange& r, size_t lo, size_t hi) { return r.off >= lo && r.off + r.bytes <= hi; }
bool contains(const RmRange& r, size_t off, size_t bytes) { return off >= r.off && off + bytes <= r.off + r.bytes; }
bool disjoint(const RmRange& a, const RmRange& b) {
  return a.bytes == 0 || b.bytes == 0 || a.off + a.bytes <= b.off || b.off + b.bytes <= a.off;
}

TEST(LlRemote, DispatchRangesCoverTheKernelsStoresAndStayInTheirRegions) {
  for (const Shape& s : kShapes) {
    const Layout l = ep::ll::makeLayout(s.R, s.M, s.H, s.E, s.K);
    for (int b = 0; b < 2; b++) {
      for (bool fp8 : {false, true}) {
        const size_t msg = ep::ll::dispatchMsgStride(s.H, fp8);
        for (bool dedup : {false, true}) {
          const int per = dedup ? 1 : s.K;
          std::vector<RmRange> info, hdr, data;
          for (int me = 0; me < s.R; me++) {
            const int T = s.M;  // the largest call: every smaller T ships a prefix
            info.push_back(ep::ll::rmDispatchInfo(l.infoOff(b), l.infoStride, me));
            hdr.push_back(ep::ll::rmDispatchHdr(l.hdrOff(b), sizeof(DispatchHdr), me, s.M, T));
            data.push_back(ep::ll::rmDispatchData(l.dataOff(b), me, s.M, T, per, msg));
            SCOPED_TRACE("R=" + std::to_string(s.R) + " M=" + std::to_string(s.M) + " H=" + std::to_string(s.H) +
                         " set " + std::to_string(b) + " me " + std::to_string(me));
            EXPECT_TRUE(inside(info[me], l.infoOff(b), l.infoOff(b) + l.infoBytes));
            EXPECT_TRUE(inside(hdr[me], l.hdrOff(b), l.hdrOff(b) + l.hdrBytes));
            EXPECT_TRUE(inside(data[me], l.dataOff(b), l.dataOff(b) + l.dataBytes));
            // What send_counts / send_tokens store for a peer (ll_dispatch.cu).
            for (int w = 0; w < 2 + l.L; w++)
              EXPECT_TRUE(contains(info[me], l.infoOff(b) + (size_t)me * l.infoStride + 8 * (size_t)w, 8));
            for (int t = 0; t < T; t += std::max(1, T / 7)) {
              EXPECT_TRUE(contains(hdr[me], l.hdrOff(b) + ((size_t)me * s.M + t) * sizeof(DispatchHdr),
                                   sizeof(DispatchHdr)));
              for (int k = 0; k < per; k++) {
                const size_t slot = dedup ? (size_t)me * s.M + t : ((size_t)me * s.M + t) * s.K + k;
                EXPECT_TRUE(contains(data[me], l.dataOff(b) + slot * msg, msg)) << "t " << t << " k " << k;
              }
            }
            // A smaller call ships a prefix of the same ranges.
            RmRange d5 = ep::ll::rmDispatchData(l.dataOff(b), me, s.M, T / 2, per, msg);
            EXPECT_EQ(d5.off, data[me].off);
            EXPECT_LE(d5.bytes, data[me].bytes);
          }
          for (int a = 0; a < s.R; a++)
            for (int c = a + 1; c < s.R; c++) {
              EXPECT_TRUE(disjoint(info[a], info[c])) << a << " vs " << c;
              EXPECT_TRUE(disjoint(hdr[a], hdr[c])) << a << " vs " << c;
              EXPECT_TRUE(disjoint(data[a], data[c])) << a << " vs " << c;
            }
        }
      }
    }
  }
}

TEST(LlRemote, CombineRangesAreDisjointAcrossSendersAndInsideTheDataRegion) {
  for (const Shape& s : kShapes) {
    const Layout l = ep::ll::makeLayout(s.R, s.M, s.H, s.E, s.K);
    const size_t row = 2 * (size_t)s.H;
    for (int b = 0; b < 2; b++) {
      std::vector<RmRange> red;
      for (int me = 0; me < s.R; me++) {
        red.push_back(ep::ll::rmCombineReduced(l.dataOff(b), me, s.M, s.M, row));
        EXPECT_TRUE(inside(red[me], l.dataOff(b), l.dataOff(b) + l.dataBytes)) << "me " << me;
        for (int t = 0; t < s.M; t += std::max(1, s.M / 5))
          EXPECT_TRUE(contains(red[me], l.dataOff(b) + ((size_t)me * s.M + t) * row, row));
      }
      for (int a = 0; a < s.R; a++)
        for (int c = a + 1; c < s.R; c++) EXPECT_TRUE(disjoint(red[a], red[c])) << a << " vs " << c;
      // Per-expert rows: one per (t, k), all distinct, inside the data region; the
      // kernel's address for pick k of token t is exactly the range.
      std::set<size_t> offs;
      for (int t = 0; t < s.M; t++)
        for (int k = 0; k < s.K; k++) {
          RmRange r = ep::ll::rmCombineRow(l.dataOff(b), t, s.K, k, row);
          EXPECT_EQ(l.dataOff(b) + ((size_t)t * s.K + k) * row, r.off);
          EXPECT_TRUE(inside(r, l.dataOff(b), l.dataOff(b) + l.dataBytes));
          EXPECT_TRUE(offs.insert(r.off).second);
        }
    }
  }
}

TEST(LlRemote, SignalSlotsAreDistinct) {
  for (int R : {1, 2, 4, 16, 1024}) {
    std::set<size_t> seen;
    for (int set = 0; set < 2; set++)
      for (int kind : {ep::ll::kRemoteData, ep::ll::kRemoteAck})
        for (int r = 0; r < R; r++) {
          size_t slot = ep::ll::remoteSigSlot(R, set, kind, r);
          EXPECT_LT(slot, 4 * (size_t)R);
          EXPECT_TRUE(seen.insert(slot).second) << "R " << R << " set " << set << " kind " << kind << " r " << r;
        }
  }
}

TEST(LlRemote, RemotePeersAreThoseOfOtherNodes) {
  epComm_t c[4];
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.emulateNodes = 2;
  cfg.bootstrapTimeoutMs = 10000;
  ASSERT_EQ(epSuccess, epCommInitAll(c, 4, nullptr, &cfg)) << epGetLastError(nullptr);
  for (int r = 0; r < 4; r++) {
    // GPU-less ranks reach nobody over NVLink: every other rank counts as remote.
    EXPECT_TRUE(epLlNeedsRemote(c[r]));
    // What LL's state setup builds from it: with same-node P2P, exactly the other node's ranks.
    int remote = 0;
    for (int q = 0; q < 4; q++) remote += c[r]->rankNode[q] != c[r]->node;
    EXPECT_EQ(2, remote);
  }
  std::vector<std::thread> ts;  // destroy is collective: one thread per rank
  for (int r = 0; r < 4; r++) ts.emplace_back([&c, r] { EXPECT_EQ(epSuccess, epCommDestroy(c[r])); });
  for (auto& t : ts) t.join();
  epComm_t one;
  cfg.emulateNodes = 1;
  ASSERT_EQ(epSuccess, epCommInitAll(&one, 1, nullptr, &cfg));
  EXPECT_FALSE(epLlNeedsRemote(one)) << "a rank always reaches itself";
  EXPECT_EQ(epSuccess, epCommDestroy(one));
}

}  // namespace
