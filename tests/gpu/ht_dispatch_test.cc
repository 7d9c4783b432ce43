/*************************************************************************
 * epcomm GPU suite: HT dispatch + combine round trips (see ht_case.h).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every case runs twice: on the ring path (unregistered buffers) and, with
 * the suffix _direct, on the direct path (buffers registered with
 * epCommRegister). Names say what each case covers; `--gtest_filter='*Small*'` selects the
 * small cases meant for compute-sanitizer (memcheck, racecheck).
 *************************************************************************/
#include <vector>

#include <gtest/gtest.h>

#include "tests/gpu/ht_case.h"
#include "tests/gpu/ht_env.h"

namespace {


std::vector<HtCase> cases() {
  std::vector<HtCase> v;
  // compute-sanitizer sized
  { HtCase c = htCaseBase("Small_bf16", 64, 2048); c.numExperts = 32; c.maskRate = 0.1; v.push_back(c); }
  { HtCase c = htCaseFp8(htCaseBase("Small_fp8", 64, 2048)); c.numExperts = 32; c.maskRate = 0.1; c.mode = 'b'; v.push_back(c); }
  // hidden sizes, BF16, random routing with -1 masks
  for (int H : {2048, 4096, 7168, 8192}) {
    HtCase c = htCaseBase("", 512, H);
    c.name = "Uniform_masked_H" + std::to_string(H) + "_bf16";
    v.push_back(c);
  }
  // FP8 with float32 and UE8M0 scales
  for (int H : {2048, 4096, 7168, 8192}) {
    HtCase c = htCaseFp8(htCaseBase("", 512, H));
    c.name = "Uniform_masked_H" + std::to_string(H) + "_fp8_f32scales";
    v.push_back(c);
  }
  { HtCase c = htCaseFp8(htCaseBase("Fp8_colmajor_scales_H7168", 512, 7168)); c.scalesColMajor = true; v.push_back(c); }
  v.push_back(htCaseFp8(htCaseBase("Fp8_ue8m0_H7168", 512, 7168), epScaleUE8M0));
  v.push_back(htCaseMode(htCaseFp8(htCaseBase("Fp8_ue8m0_H4096_modeB", 512, 4096), epScaleUE8M0), 'b'));
  // the three sizing modes
  v.push_back(htCaseMode(htCaseBase("ModeA_host_sync_H7168", 1024, 7168), 'a'));
  v.push_back(htCaseMode(htCaseBase("ModeB_worst_case_capacity_H7168", 1024, 7168), 'b'));
  v.push_back(htCaseMode(htCaseBase("ModeC_cached_H7168", 1024, 7168), 'c'));
  v.push_back(htCaseMode(htCaseFp8(htCaseBase("ModeC_cached_fp8_H7168", 1024, 7168)), 'c'));
  // full DeepSeek-V3 shape
  v.push_back(htCaseMode(htCaseBase("DeepSeekShape_T4096_H7168_bf16_modeB", 4096, 7168), 'b'));
  v.push_back(htCaseMode(htCaseFp8(htCaseBase("DeepSeekShape_T4096_H7168_fp8_modeA", 4096, 7168)), 'a'));
  // skewed routing
  { HtCase c = htCaseBase("Hot_expert_half_tokens_bf16", 1024, 4096); c.routing = epTestRoutingKind::Hot; v.push_back(c); }
  { HtCase c = htCaseFp8(htCaseBase("Hot_expert_half_tokens_fp8_modeB", 1024, 4096)); c.routing = epTestRoutingKind::Hot; c.mode = 'b'; v.push_back(c); }
  { HtCase c = htCaseBase("Zipf1.2_bf16", 1024, 4096); c.routing = epTestRoutingKind::Zipf; v.push_back(c); }
  // empty ranks, single token, fully masked
  { HtCase c = htCaseBase("Zero_tokens_last_rank_bf16", 512, 4096); c.zeroTokenRank = -2; v.push_back(c); }
  { HtCase c = htCaseBase("Zero_tokens_rank0_fp8_modeB", 512, 4096); c = htCaseFp8(c); c.zeroTokenRank = 0; c.mode = 'b'; v.push_back(c); }
  { HtCase c = htCaseBase("Zero_tokens_rank0_modeC", 512, 2048); c.zeroTokenRank = 0; c.mode = 'c'; v.push_back(c); }
  { HtCase c = htCaseBase("T1_bf16", 1, 7168); c.maskRate = 0; v.push_back(c); }
  { HtCase c = htCaseFp8(htCaseBase("T1_fp8_modeB", 1, 7168)); c.maskRate = 0; c.mode = 'b'; v.push_back(c); }
  { HtCase c = htCaseBase("All_masked_bf16", 256, 2048); c.maskRate = 1.0; v.push_back(c); }
  { HtCase c = htCaseBase("Topk1_bf16", 512, 2048); c.numTopk = 1; v.push_back(c); }
  // optional inputs/outputs and options
  { HtCase c = htCaseBase("Without_topk_and_srcidx_bf16", 512, 4096); c.withTopk = false; c.withSrcIdx = false; v.push_back(c); }
  { HtCase c = htCaseBase("Without_topk_modeB", 512, 4096); c.withTopk = false; c.mode = 'b'; v.push_back(c); }
  { HtCase c = htCaseBase("Int32_topk_ids", 512, 4096); c.int32Idx = true; v.push_back(c); }
  { HtCase c = htCaseBase("Precomputed_layout", 512, 4096); c.withLayout = true; v.push_back(c); }
  { HtCase c = htCaseBase("Expert_alignment_128", 512, 4096); c.alignment = 128; v.push_back(c); }
  { HtCase c = htCaseBase("Combine_with_two_biases", 512, 4096); c.bias = true; v.push_back(c); }
  { HtCase c = htCaseBase("Sms4_budget", 1024, 7168); c.numSms = 4; v.push_back(c); }
  { HtCase c = htCaseMode(htCaseFp8(htCaseBase("Sms8_budget_fp8_modeB", 1024, 7168)), 'b'); c.numSms = 8; v.push_back(c); }
  // Every case again on the direct path (registered outputs and combine input).
  const size_t n = v.size();
  for (size_t i = 0; i < n; i++) v.push_back(htCaseDirect(v[i]));
  return v;
}

class HtDispatchCombine : public testing::TestWithParam<HtCase> {};

TEST_P(HtDispatchCombine, MatchesHostReference) {
  EP_HT_REQUIRE_GPU();
  htRunCase(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Cases, HtDispatchCombine, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<HtCase>& i) {
                           std::string n = i.param.name;
                           for (char& ch : n)
                             if (!isalnum((unsigned char)ch)) ch = '_';
                           return n;
                         });

}  // namespace
