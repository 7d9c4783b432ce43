/*************************************************************************
 * epcomm GPU suites (LL): dispatch bitwise and combine vs float64, over
 * formats, routings, hidden sizes, hook / non-hook, dedup / plain,
 * sender-side reduction, zero-copy. Collective: run on every rank.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include "tests/gpu/ll_case.h"

namespace {

LlCase baseCase(int T, int H) {
  LlCase c;
  c.routing.kind = epTestRoutingKind::Uniform;
  c.routing.numTokens = T;
  c.routing.numTopk = 8;
  c.routing.numExperts = EP_LL_TEST_E;
  c.routing.maskRate = 0.05;
  c.routing.seed = 11;
  c.hidden = H;
  return c;
}

}  // namespace

// Every output format at the DeepSeek-V3 decode shape, dedup on.
TEST(LlDispatchCombine, Formats) {
  EP_LL_REQUIRE_GPU();
  LlEnv& env = llEnv();
  struct F { int fp8, round, ue8m0; epLlScaleLayout_t lay; int reduce; };
  const F formats[] = {{0, 0, 0, epLlScalesMnMajor, 0},     {1, 0, 0, epLlScalesMnMajor, 1},
                       {1, 1, 0, epLlScalesMnMajor, 0},     {1, 1, 1, epLlScalesMnMajor, 1},
                       {1, 0, 0, epLlScalesTokenMajor, 0},  {1, 1, 1, epLlScalesTokenMajor, 0}};
  int seed = 100;
  for (const F& f : formats) {
    LlCase c = baseCase(EP_LL_TEST_M, 7168);
    c.fp8 = f.fp8;
    c.roundScale = f.round;
    c.ue8m0 = f.ue8m0;
    c.scaleLayout = f.lay;
    c.reduce = f.reduce;
    c.routing.seed = seed++;
    ASSERT_TRUE(llRunCase(env, c)) << c.name();
  }
}

// Routings and shapes: -1 masks, T < M, T = 0 on a rank, one expert that every
// rank sends to, several H (multiples of 128, not only of 512), top-16,
// int32 ids, dedup and plain, hook and not, reduce and not, zero-copy.
TEST(LlDispatchCombine, RoutingsAndShapes) {
  EP_LL_REQUIRE_GPU();
  LlEnv& env = llEnv();
  std::vector<LlCase> cases;
  {
    LlCase c = baseCase(37, 2048);  // T < M
    c.dedup = 0;
    cases.push_back(c);
    c.dedup = 1;
    c.hook = 1;
    c.reduce = 1;
    cases.push_back(c);
  }
  {
    LlCase c = baseCase(EP_LL_TEST_M, 640);  // H % 512 != 0 (partial chunk, partial UE8M0 word)
    c.routing.kind = epTestRoutingKind::Hot;  // one expert receives from every rank
    c.routing.hotFraction = 1.0;
    c.roundScale = 1;
    c.ue8m0 = 1;
    c.reduce = 1;
    cases.push_back(c);
    c.dedup = 0;
    c.hook = 1;
    c.reduce = 0;
    c.zeroCopy = 1;
    cases.push_back(c);
  }
  {
    LlCase c = baseCase(EP_LL_TEST_M, 4096);
    c.routing.zeroTokenRank = env.nranks > 1 ? 1 : 0;  // T = 0 on that rank
    c.routing.maskRate = 0.3;
    c.int32Idx = 1;
    c.hook = 1;
    cases.push_back(c);
    c.fp8 = 0;
    c.hook = 0;
    c.reduce = 1;
    c.zeroCopy = 1;
    cases.push_back(c);
  }
  {
    LlCase c = baseCase(64, 1024);  // top-16
    c.routing.numTopk = 16;
    c.routing.kind = epTestRoutingKind::Zipf;
    c.routing.zipfAlpha = 1.2;
    c.reduce = 1;
    cases.push_back(c);
    c.dedup = 0;
    c.reduce = 0;
    c.numSms = 8;  // fewer SMs
    cases.push_back(c);
  }
  {
    LlCase c = baseCase(EP_LL_TEST_M, 7168);
    c.withWeights = 0;  // weights only at combine
    c.hook = 1;
    cases.push_back(c);
  }
  {
    // The flagged-line protocol (FP8, dedup, not hooked) with int32 ids and
    // more masks, then token-major UE8M0 scales at H = 640 (a partial
    // 512-channel chunk, 5 groups: a partial UE8M0 word).
    LlCase c = baseCase(EP_LL_TEST_M, 2048);
    c.int32Idx = 1;
    c.routing.maskRate = 0.2;
    cases.push_back(c);
    c.hidden = 640;
    c.roundScale = 1;
    c.ue8m0 = 1;
    c.scaleLayout = epLlScalesTokenMajor;
    cases.push_back(c);
  }
  int seed = 200;
  for (LlCase& c : cases) {
    c.routing.seed = seed++;
    ASSERT_TRUE(llRunCase(env, c)) << c.name();
  }
}

// Out-of-range expert ids: reported (epInvalidArgument from
// epCommGetAsyncError), treated as masked, nothing written out of bounds
// (the checks compare every output, incl. guards, against that reference).
TEST(LlDispatchCombine, BadExpertIdsReportedAndMasked) {
  EP_LL_REQUIRE_GPU();
  LlEnv& env = llEnv();
  LlCase c = baseCase(EP_LL_TEST_M, 1024);
  c.badIds = {{0, 0}, {5, 3}, {100, 7}};
  c.routing.seed = 300;
  ASSERT_TRUE(llRunCase(env, c)) << c.name();
}

// A small case for compute-sanitizer (memcheck / racecheck):
//   compute-sanitizer ... build/test/ep_gpu_tests --gtest_filter='LlSmall.*'
TEST(LlSmall, DispatchCombine) {
  EP_LL_REQUIRE_GPU();
  LlEnv& env = llEnv();
  LlCase c = baseCase(8, 256);
  c.routing.numTopk = 4;
  c.routing.seed = 400;
  ASSERT_TRUE(llRunCase(env, c)) << c.name();
  c.hook = 1;
  c.reduce = 1;
  c.dedup = 0;
  ASSERT_TRUE(llRunCase(env, c)) << c.name();
}
