/*************************************************************************
 * epcomm GPU suite: epGetDispatchLayout against the host layout.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Layout is a local kernel (no communication), so these cases also cover
 * shapes the round trips do not: int32 and int64 ids, T = 0, one expert per
 * rank, K = 1, heavy masks, and NULL for the optional outputs.
 *************************************************************************/
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/common/dev_buffer.h"
#include "tests/common/ht_check.h"
#include "tests/common/ht_reference.h"
#include "tests/common/routing.h"
#include "tests/gpu/ht_env.h"

namespace {

struct LayoutCase {
  std::string name;
  int numTokens;
  int numTopk;
  int expertsPerRank;
  epTestRoutingKind kind;
  double maskRate;
  bool int32Idx;
  bool onlyInRank; /* the other outputs NULL */
};

void PrintTo(const LayoutCase& c, std::ostream* os) { *os << c.name; }

class HtLayout : public testing::TestWithParam<LayoutCase> {};

TEST_P(HtLayout, MatchesHostReference) {
  EP_HT_REQUIRE_GPU();
  const LayoutCase& c = GetParam();
  HtEnv& env = htEnv();
  const int R = env.nranks;
  epTestRoutingSpec rs;
  rs.kind = c.kind;
  rs.zipfAlpha = 1.5;
  rs.maskRate = c.maskRate;
  rs.numTokens = c.numTokens;
  rs.numTopk = c.numTopk;
  rs.numExperts = c.expertsPerRank * R;
  rs.seed = 77 + c.numTokens;
  const epTestRouting r = epTestMakeRouting(rs, env.rank);
  const int T = r.numTokens, E = rs.numExperts;
  const epTestHtLayout ref = epTestHtLayoutRef(r, R, env.nNodes);

  epTestDevBuf idx, pr, pn, pe, in;
  if (c.int32Idx)
    EP_HT_ASSERT_CUDA(idx.upload(epTestTopkIdx32(r)));
  else
    EP_HT_ASSERT_CUDA(idx.upload(r.topkIdx));
  EP_HT_ASSERT_CUDA(pr.alloc((size_t)R * 4, 64));
  EP_HT_ASSERT_CUDA(pn.alloc((size_t)env.nNodes * 4, 64));
  EP_HT_ASSERT_CUDA(pe.alloc((size_t)E * 4, 64));
  EP_HT_ASSERT_CUDA(in.alloc((size_t)T * R, 64));
  for (epTestDevBuf* b : {&pr, &pn, &pe, &in}) EP_HT_ASSERT_CUDA(b->poison(0xA5, env.stream));
  EP_HT_ASSERT_OK(epGetDispatchLayout(env.comm, idx.p, c.int32Idx ? epInt32 : epInt64, T, c.numTopk, E,
                                      c.onlyInRank ? nullptr : pr.as<int>(), c.onlyInRank ? nullptr : pn.as<int>(),
                                      c.onlyInRank ? nullptr : pe.as<int>(), in.as<uint8_t>(), env.stream),
                  env.comm);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  epResult_t async = epInternalError;
  ASSERT_EQ(epSuccess, epCommGetAsyncError(env.comm, &async));
  EXPECT_EQ(epSuccess, async) << epTestErrText(async, env.comm);

  std::vector<uint8_t> hr, hn, he, hi;
  EP_HT_ASSERT_CUDA(pr.download(&hr));
  EP_HT_ASSERT_CUDA(pn.download(&hn));
  EP_HT_ASSERT_CUDA(pe.download(&he));
  EP_HT_ASSERT_CUDA(in.download(&hi));
  epTestCheck chk;
  if (c.onlyInRank) {
    epTestCheckLayout(ref, nullptr, nullptr, nullptr, hi.data(), &chk);
    epTestCheckUntouched(hr.data(), 0, pr.total(), 0xA5, "numTokensPerRank (NULL was passed: a different buffer)", &chk);
  } else {
    epTestCheckLayout(ref, (const int*)hr.data(), (const int*)hn.data(), (const int*)he.data(), hi.data(), &chk);
    epTestCheckUntouched(hr.data(), pr.bytes, pr.total(), 0xA5, "numTokensPerRank guard", &chk);
    epTestCheckUntouched(hn.data(), pn.bytes, pn.total(), 0xA5, "numTokensPerNode guard", &chk);
    epTestCheckUntouched(he.data(), pe.bytes, pe.total(), 0xA5, "numTokensPerExpert guard", &chk);
  }
  epTestCheckUntouched(hi.data(), in.bytes, in.total(), 0xA5, "isTokenInRank guard", &chk);
  EXPECT_TRUE(chk.ok()) << chk.summary();
}

std::vector<LayoutCase> layoutCases() {
  using K = epTestRoutingKind;
  return {
      {"Small_uniform_masked_int64", 100, 8, 8, K::Uniform, 0.1, false, false},
      {"Uniform_T4096_E256ish_int64", 4096, 8, 64, K::Uniform, 0.0, false, false},
      {"Uniform_T4096_masked_int32", 4096, 8, 64, K::Uniform, 0.2, true, false},
      {"Zipf_T2048", 2048, 8, 64, K::Zipf, 0.05, false, false},
      {"Hot_T2048_int32", 2048, 8, 64, K::Hot, 0.05, true, false},
      {"T0", 0, 8, 64, K::Uniform, 0.0, false, false},
      {"T1", 1, 8, 64, K::Uniform, 0.0, false, false},
      {"One_expert_per_rank_K1", 777, 1, 1, K::Uniform, 0.0, false, false},
      {"Heavily_masked_K9_int32", 1000, 9, 32, K::Uniform, 0.7, true, false},
      {"Only_isTokenInRank", 1000, 8, 64, K::Uniform, 0.1, false, true},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, HtLayout, testing::ValuesIn(layoutCases()),
                         [](const testing::TestParamInfo<LayoutCase>& i) { return i.param.name; });

}  // namespace
