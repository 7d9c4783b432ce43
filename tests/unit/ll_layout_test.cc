/*************************************************************************
 * epcomm unit tests: the LL buffer layout of the flagged-line dispatch and
 * combine (ll_layout.h). The line and routing regions must lie inside the control
 * part of their set (epLowLatencyClean zeroes exactly that part: a stale
 * line flag or routing tag must never match an epoch of the restarted
 * sequence), must not overlap the other regions, and every line a sender
 * writes for any (source, token, chunk) must be a whole, 128-byte aligned
 * line of its own slot (the platform property is about aligned lines).
 *************************************************************************/
#include <gtest/gtest.h>

#include "lowlatency/ll_layout.h"

namespace {

using ep::ll::Layout;

struct Shape {
  int R, M, H, E, K;
};
const Shape kShapes[] = {{2, 128, 7168, 256, 16}, {4, 128, 7168, 256, 8}, {4, 16, 640, 32, 8},
                         {8, 64, 2048, 64, 8},    {16, 128, 7168, 256, 8}, {3, 5, 128, 6, 2}};

TEST(LlLayout, LineAndRoutingRegionsAreInsideTheControlPartAndDisjoint) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(testing::Message() << "R=" << s.R << " M=" << s.M << " H=" << s.H << " K=" << s.K);
    const Layout l = ep::ll::makeLayout(s.R, s.M, s.H, s.E, s.K);
    for (int b = 0; b < 2; b++) {
      const size_t ctrlLo = l.sigOff(b), ctrlHi = ctrlLo + l.ctrlBytes;
      // sig | info | headers | routing | lines, then data: in this order, no overlap.
      EXPECT_LE(l.infoOff(b) + l.infoBytes, l.hdrOff(b));
      EXPECT_LE(l.hdrOff(b) + l.hdrBytes, l.routeOff(b));
      EXPECT_LE(l.routeOff(b) + l.routeBytes, l.lineOff(b));
      EXPECT_LE(l.lineOff(b) + l.lineBytes, ctrlHi) << "lines past the part epLowLatencyClean zeroes";
      EXPECT_EQ(ctrlHi, l.dataOff(b));
      EXPECT_LE(l.dataOff(b) + l.dataBytes, l.setOff(b) + l.setBytes);
      EXPECT_GE(l.routeOff(b), ctrlLo);
    }
    EXPECT_EQ(2 * l.setBytes, l.total);
    EXPECT_EQ(0u, l.setBytes % ep::ll::kLineBytes) << "set 1's lines must stay 128-byte aligned";
  }
}

TEST(LlLayout, EveryLineOfEverySlotIsAlignedAndInsideTheLineRegion) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(testing::Message() << "R=" << s.R << " M=" << s.M << " H=" << s.H);
    const Layout l = ep::ll::makeLayout(s.R, s.M, s.H, s.E, s.K);
    const int C = (s.H + ep::ll::kChunk - 1) / ep::ll::kChunk;
    // A chunk's lines as send_chunk_lines addresses them: 512 FP8 bytes + 4 scales fit its lines.
    ASSERT_GE(ep::ll::kLinesPerChunk * ep::ll::kLineUnits * 16, ep::ll::kChunk + 16);
    for (int b = 0; b < 2; b++) {
      const size_t lo = l.lineOff(b), hi = lo + l.lineBytes;
      for (int src = 0; src < s.R; src++)
        for (int t = 0; t < s.M; t += (s.M > 8 ? s.M / 8 : 1))
          for (int c = 0; c < C; c++) {
            const size_t off = lo + ((size_t)src * s.M + t) * l.lineStride +
                               (size_t)ep::ll::kLinesPerChunk * c * ep::ll::kLineBytes;
            ASSERT_EQ(0u, off % ep::ll::kLineBytes);
            ASSERT_GE(off, lo);
            ASSERT_LE(off + (size_t)ep::ll::kLinesPerChunk * ep::ll::kLineBytes, hi);
          }
    }
  }
}

// The lines combine (ll_combine.cu): every chunk of every (expert rank, token) slot is whole lines inside the
// region, the chunks cover the row, and a chunk's flags sit where a dispatch slot's flags do (whole lines from
// the same slot start), so a line of one protocol never reads as payload of the other.
TEST(LlLayout, CombineLinesOfEverySlotAreAlignedAndCoverTheRow) {
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(testing::Message() << "R=" << s.R << " M=" << s.M << " H=" << s.H);
    const Layout l = ep::ll::makeLayout(s.R, s.M, s.H, s.E, s.K);
    const int C = ep::ll::combineLineChunks(s.H);
    EXPECT_GE((size_t)C * ep::ll::kCombineLineChunk, (size_t)s.H);
    EXPECT_LT((size_t)(C - 1) * ep::ll::kCombineLineChunk, (size_t)s.H) << "no chunk wholly past the row";
    EXPECT_EQ(ep::ll::kCombineLineChunk, ep::ll::kCombineLinesPerChunk * ep::ll::kLineUnits * 16 / 2)
        << "a line carries 7 units of 8 BF16 channels";
    EXPECT_EQ(0u, l.lineStride % ep::ll::kLineBytes);
    for (int b = 0; b < 2; b++) {
      const size_t lo = l.lineOff(b), hi = lo + l.lineBytes;
      for (int d = 0; d < s.R; d++)
        for (int t = 0; t < s.M; t += (s.M > 8 ? s.M / 8 : 1))
          for (int c = 0; c < C; c++) {
            const size_t off = lo + ep::ll::combineLineRel(s.M, l.lineStride, d, t, c);
            ASSERT_EQ(0u, off % ep::ll::kLineBytes);
            ASSERT_LE(off + (size_t)ep::ll::kCombineLinesPerChunk * ep::ll::kLineBytes,
                      lo + ((size_t)d * s.M + t + 1) * l.lineStride)
                << "chunk spills into the next slot";
            ASSERT_LE(off + (size_t)ep::ll::kCombineLinesPerChunk * ep::ll::kLineBytes, hi);
          }
    }
  }
}

TEST(LlLayout, RoutingWordsOfEverySourceStayInTheRoutingRegion) {
  for (const Shape& s : kShapes) {
    const Layout l = ep::ll::makeLayout(s.R, s.M, s.H, s.E, s.K);
    // The last weight word of the last source (the largest offset a sender writes).
    const size_t last = ep::ll::routeWeightRel(s.M, s.K, s.R - 1, s.M - 1, s.K - 1) + sizeof(uint64_t);
    EXPECT_LE(last, l.routeBytes);
    // Ids and weights of a source do not overlap the next source's ids.
    EXPECT_LE(ep::ll::routeWeightRel(s.M, s.K, 0, s.M - 1, s.K - 1) + sizeof(uint64_t),
              ep::ll::routeIdRel(s.M, s.K, 1, 0, 0));
  }
}

}  // namespace
