/*************************************************************************
 * epcomm GPU suite: HT internode (v1) round trips on a multi-node comm.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Run on one host through virtual nodes and the emulated RDMA transport:
 *   EP_EMULATE_NODES=2 EP_NET=emulated EP_INTERNODE_MAX_HIDDEN=8192 CUDA_MODULE_LOADING=EAGER \
 *   mpirun -np 4 build/test/ep_gpu_tests --gtest_filter='Internode*'
 * (scripts/gpu_suite.sh --only internode). Every case goes through htRunCase
 * (tests/gpu/ht_case.h): the same host references, bitwise row checks,
 * poisoned outputs, guard regions and combine tolerance as intranode HT --
 * internode keeps the intranode contract (rows ordered by source rank, then
 * source token; one BF16 rounding per combined element).
 * Skips, by name: without a GPU; when the comm has one node.
 * CUDA_MODULE_LOADING=EAGER: with the emulated transport the proxy thread is
 * a CUDA client, and lazy loading of a kernel (the test's own checks) while an
 * internode wait spins would stall it (docs/internode.md, "Lazy loading").
 *************************************************************************/
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "epcomm/ht.h"
#include "tests/common/dev_buffer.h"
#include "tests/gpu/ht_case.h"
#include "tests/gpu/ht_env.h"

namespace {

#define EP_INTER_REQUIRE_MULTINODE()                                                                           \
  do {                                                                                                         \
    EP_HT_REQUIRE_GPU();                                                                                       \
    if (htEnv().nNodes < 2)                                                                                    \
      GTEST_SKIP() << "comm has one node: run with EP_EMULATE_NODES=2 EP_NET=emulated";                       \
  } while (0)


std::vector<HtCase> cases() {
  std::vector<HtCase> v;
  { HtCase c = htCaseBase("Small_bf16", 64, 2048); c.numExperts = 32; c.maskRate = 0.1; v.push_back(c); }
  { HtCase c = htCaseFp8(htCaseBase("Small_fp8", 64, 2048)); c.numExperts = 32; c.maskRate = 0.1; c.mode = 'b'; v.push_back(c); }
  for (int H : {2048, 7168, 8192}) {
    HtCase c = htCaseBase("", 512, H);
    c.name = "Uniform_masked_H" + std::to_string(H) + "_bf16";
    v.push_back(c);
  }
  v.push_back(htCaseFp8(htCaseBase("Uniform_masked_H7168_fp8_f32scales", 512, 7168)));
  { HtCase c = htCaseFp8(htCaseBase("Fp8_colmajor_scales_H4096", 512, 4096)); c.scalesColMajor = true; v.push_back(c); }
  v.push_back(htCaseFp8(htCaseBase("Fp8_ue8m0_H7168", 512, 7168), epScaleUE8M0));
  v.push_back(htCaseMode(htCaseBase("ModeA_host_sync_H7168", 1024, 7168), 'a'));
  v.push_back(htCaseMode(htCaseBase("ModeB_worst_case_capacity_H7168", 1024, 7168), 'b'));
  v.push_back(htCaseMode(htCaseBase("ModeC_cached_H7168", 1024, 7168), 'c'));
  v.push_back(htCaseMode(htCaseFp8(htCaseBase("ModeC_cached_fp8_H7168", 1024, 7168)), 'c'));
  v.push_back(htCaseMode(htCaseBase("DeepSeekShape_T4096_H7168_bf16_modeB", 4096, 7168), 'b'));
  { HtCase c = htCaseBase("Hot_expert_half_tokens_bf16", 1024, 4096); c.routing = epTestRoutingKind::Hot; v.push_back(c); }
  { HtCase c = htCaseBase("Zipf1.2_bf16_modeB", 1024, 4096); c.routing = epTestRoutingKind::Zipf; c.mode = 'b'; v.push_back(c); }
  { HtCase c = htCaseBase("Zero_tokens_last_rank_bf16", 512, 4096); c.zeroTokenRank = -2; v.push_back(c); }
  { HtCase c = htCaseFp8(htCaseBase("Zero_tokens_rank0_fp8_modeB", 512, 4096)); c.zeroTokenRank = 0; c.mode = 'b'; v.push_back(c); }
  { HtCase c = htCaseBase("T1_bf16", 1, 7168); c.maskRate = 0; v.push_back(c); }
  { HtCase c = htCaseBase("All_masked_bf16", 256, 2048); c.maskRate = 1.0; v.push_back(c); }
  { HtCase c = htCaseBase("Topk1_bf16", 512, 2048); c.numTopk = 1; v.push_back(c); }
  { HtCase c = htCaseBase("Without_topk_and_srcidx_bf16", 512, 4096); c.withTopk = false; c.withSrcIdx = false; v.push_back(c); }
  { HtCase c = htCaseBase("Int32_topk_ids", 512, 4096); c.int32Idx = true; v.push_back(c); }
  { HtCase c = htCaseBase("Precomputed_layout", 512, 4096); c.withLayout = true; v.push_back(c); }
  { HtCase c = htCaseBase("Expert_alignment_128", 512, 4096); c.alignment = 128; v.push_back(c); }
  { HtCase c = htCaseBase("Combine_with_two_biases", 512, 4096); c.bias = true; v.push_back(c); }
  { HtCase c = htCaseBase("Sms4_budget", 1024, 7168); c.numSms = 4; v.push_back(c); }
  return v;
}

class InternodeHt : public testing::TestWithParam<HtCase> {};

TEST_P(InternodeHt, MatchesHostReference) {
  EP_INTER_REQUIRE_MULTINODE();
  htRunCase(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Internode, InternodeHt, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<HtCase>& i) {
                           std::string n = i.param.name;
                           for (char& ch : n)
                             if (!isalnum((unsigned char)ch)) ch = '_';
                           return n;
                         });

// The device-side phase counters and signal words advance across calls: many
// round trips in a row, each checked, different routings and modes.
TEST(InternodeHtSequence, BackToBackRoundTripsStayCorrect) {
  EP_INTER_REQUIRE_MULTINODE();
  for (int i = 0; i < 24; i++) {
    HtCase c = htCaseBase("", 128 + 37 * (i % 5), i % 3 == 0 ? 2048 : 4096);
    c.name = "seq" + std::to_string(i);
    c.mode = "abc"[i % 3];
    c.seed = 1000 + i;
    if (i % 4 == 1) c = htCaseFp8(c);
    SCOPED_TRACE(c.name);
    htRunCase(c);
    if (HasFatalFailure() || HasFailure()) return;
  }
}

// Virtual nodes talk only through the emulated transport: asking for verbs
// on them is refused at the first HT call with a message naming EP_NET (the
// GPU-side face of the "no usable transport names the knob" rule; the no-NIC
// case itself is covered on CPU by ProxyNetInit.NoNicAndNoEmulationNamesEpNet).
TEST(InternodeHtTransport, VerbsOnVirtualNodesRefusedNamingEpNet) {
  EP_INTER_REQUIRE_MULTINODE();
  HtEnv& env = htEnv();
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.htMaxTokensPerRank = 64;
  cfg.emulateNodes = 2;
  cfg.net = "ib";
  cfg.commName = "internode-ib-refused";
  epComm_t c = nullptr;
  EP_HT_ASSERT_OK(epTestCommInitAt(env.rank, env.nranks, 3, &cfg, &c), nullptr);
  int nodes = 0;
  epCommNodeCount(c, &nodes);
  EXPECT_EQ(2, nodes);
  epHtHandle_t h = nullptr;
  EXPECT_EQ(epSuccess, epHtHandleCreate(c, 64, &h)) << epGetLastError(c);
  std::vector<int64_t> ids(8 * 2, 0);
  std::vector<uint16_t> x(8 * 256, 0);
  epTestDevBuf dids, dx;
  EP_HT_ASSERT_CUDA(dids.upload(ids));
  EP_HT_ASSERT_CUDA(dx.upload(x));
  epDispatchInput_t in = EP_DISPATCH_INPUT_INITIALIZER;
  in.x = dx.p;
  in.numTokens = 8;
  in.hidden = 256;
  in.topkIdx = dids.p;
  in.topkIdxType = epInt64;
  in.numTopk = 2;
  in.numExperts = 2 * env.nranks;
  if (h != nullptr) {
    epResult_t r = epDispatchNotify(c, &in, h, nullptr, nullptr, env.stream);
    EXPECT_EQ(epInvalidUsage, r) << epTestErrText(r, c);
    EXPECT_NE(nullptr, strstr(epGetLastError(c), "EP_NET")) << epGetLastError(c);
    epHtHandleDestroy(h);
  }
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  epCommDestroy(c);
}

// Node-limited routing: with EP_HT_MAX_NODES_PER_TOKEN=1 a token touching two
// nodes is reported (epInvalidArgument, kind node limit) after the call.
TEST(InternodeHtNodeLimit, TokenOverTheLimitIsReported) {
  EP_INTER_REQUIRE_MULTINODE();
  const char* lim = getenv("EP_HT_MAX_NODES_PER_TOKEN");
  if (lim == nullptr || atoi(lim) != 1)
    GTEST_SKIP() << "needs EP_HT_MAX_NODES_PER_TOKEN=1 (gpu_suite.sh internode section runs it so)";
  HtEnv& env = htEnv();
  std::string err;
  epComm_t fc = htFaultComm(&err);
  ASSERT_NE(nullptr, fc) << err;
  const int T = 64, K = 2, H = 2048, R = env.nranks, E = 4 * R;
  std::vector<int64_t> ids((size_t)T * K);
  for (int t = 0; t < T; t++) {
    ids[(size_t)t * K] = 0;                          // node 0
    ids[(size_t)t * K + 1] = t == 17 ? E - 1 : 1;    // token 17 also touches the last node
  }
  std::vector<uint16_t> x((size_t)T * H, 0);
  epTestDevBuf dids, dx;
  EP_HT_ASSERT_CUDA(dids.upload(ids));
  EP_HT_ASSERT_CUDA(dx.upload(x));
  epHtHandle_t h = nullptr;
  EP_HT_ASSERT_OK(epHtHandleCreate(fc, T, &h), fc);
  epDispatchInput_t in = EP_DISPATCH_INPUT_INITIALIZER;
  in.x = dx.p;
  in.numTokens = T;
  in.hidden = H;
  in.topkIdx = dids.p;
  in.topkIdxType = epInt64;
  in.numTopk = K;
  in.numExperts = E;
  epResult_t r = epDispatchNotify(fc, &in, h, nullptr, nullptr, env.stream);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  epResult_t a = epSuccess;
  epCommGetAsyncError(fc, &a);
  EXPECT_TRUE(r == epInvalidArgument || (r == epSuccess && a == epInvalidArgument))
      << "call -> " << epTestErrText(r, fc) << ", async -> " << epTestErrText(a, fc);
  epHtHandleDestroy(h);
  htResetFaultComm();
}

}  // namespace
