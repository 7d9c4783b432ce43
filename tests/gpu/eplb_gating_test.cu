/*************************************************************************
 * epcomm GPU tests: epGroupLimitedGating against the host reference
 * (gatingRef). Expert ids AND weights must match bitwise: the kernel and the
 * reference use the same correctly rounded arithmetic (src/eplb/eplb_math.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "epcomm.h"
#include "eplb/gating_ref.h"
#include "tests/common/dtype.h"
#include "tests/gpu/eplb_gpu_util.h"

namespace {

struct GatingCase {
  const char* name;
  int T, E, G, topkGroups, K;
  float scale;
  int numRanks, ranksPerNode, maxNodes;
  int flags;
  epDataType_t scoreType, idType;
  bool bias;
  int logits;  // 0: normal(0, 2), 1: values in {-1, 0, 1} (ties everywhere), 2: normal with NaNs, 3: scores in [0,1]
};

std::string describe(const GatingCase& c) {
  std::ostringstream s;
  s << c.name << ": T=" << c.T << " E=" << c.E << " G=" << c.G << " topkGroups=" << c.topkGroups << " K=" << c.K
    << " ranks=" << c.numRanks << "/" << c.ranksPerNode << " maxNodes=" << c.maxNodes << " flags=" << c.flags
    << (c.scoreType == epBfloat16 ? " bf16" : " f32") << (c.idType == epInt64 ? " i64" : " i32")
    << (c.bias ? " bias" : "") << " logits=" << c.logits;
  return s.str();
}

epGatingDesc_t descOf(const GatingCase& c) {
  epGatingDesc_t d;
  memset(&d, 0, sizeof(d));
  d.numExperts = c.E, d.numGroups = c.G, d.topkGroups = c.topkGroups, d.topk = c.K;
  d.routedScalingFactor = c.scale;
  d.numRanks = c.numRanks, d.ranksPerNode = c.ranksPerNode, d.maxNodes = c.maxNodes;
  d.flags = c.flags;
  return d;
}

void runCase(const GatingCase& c, uint64_t seed) {
  SCOPED_TRACE(describe(c));
  const epGatingDesc_t d = descOf(c);
  const size_t n = (size_t)c.T * c.E, nk = (size_t)c.T * c.K;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::uniform_int_distribution<int> tern(-1, 1);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; i++) {
    switch (c.logits) {
      case 1: x[i] = (float)tern(rng); break;
      case 2: x[i] = (i % 37 == 5) ? NAN : nd(rng); break;
      case 3: x[i] = unit(rng); break;
      default: x[i] = nd(rng); break;
    }
  }
  // bf16 input: the reference sees exactly the values the kernel converts.
  std::vector<uint16_t> xb;
  if (c.scoreType == epBfloat16) {
    xb.resize(n);
    for (size_t i = 0; i < n; i++) {
      xb[i] = epTestFloatToBf16(x[i]);
      x[i] = epTestBf16ToFloat(xb[i]);
    }
  }
  std::vector<float> bias(c.E);
  for (auto& b : bias) b = (c.logits == 1) ? 0.25f * (float)tern(rng) : nd(rng) * 0.02f;

  std::vector<int64_t> refIdx(nk);
  std::vector<float> refW(nk);
  const bool wantNodes = c.numRanks > 0;
  int refNodes = -1;
  ep::eplb::gatingRef(x.data(), c.bias ? bias.data() : nullptr, c.T, d, refIdx.data(), refW.data(),
                      wantNodes ? &refNodes : nullptr);

  DevBuf<float> dX(c.scoreType == epFloat32 ? n : 0), dBias(c.E), dW(nk);
  DevBuf<uint16_t> dXb(c.scoreType == epBfloat16 ? n : 0);
  DevBuf<int64_t> dIdx64(c.idType == epInt64 ? nk : 0);
  DevBuf<int32_t> dIdx32(c.idType == epInt32 ? nk : 0);
  DevBuf<int> dNodes(1);
  if (c.scoreType == epFloat32) {
    EPLB_CUDA_OK(dX.upload(x));
  } else {
    EPLB_CUDA_OK(dXb.upload(xb));
  }
  EPLB_CUDA_OK(dBias.upload(bias));
  cudaStream_t stream;
  EPLB_CUDA_OK(cudaStreamCreate(&stream));
  const void* in = c.scoreType == epFloat32 ? (const void*)dX.p : (const void*)dXb.p;
  void* idx = c.idType == epInt64 ? (void*)dIdx64.p : (void*)dIdx32.p;
  epResult_t r = epGroupLimitedGating(in, c.scoreType, c.bias ? dBias.p : nullptr, c.T, &d, idx, c.idType, dW.p,
                                      wantNodes ? dNodes.p : nullptr, stream);
  ASSERT_EQ(r, epSuccess) << epGetLastError(nullptr);
  EPLB_CUDA_OK(cudaStreamSynchronize(stream));
  EPLB_CUDA_OK(cudaStreamDestroy(stream));

  std::vector<int64_t> gotIdx(nk);
  if (c.idType == epInt64) {
    gotIdx = dIdx64.download();
  } else {
    std::vector<int32_t> g = dIdx32.download();
    for (size_t i = 0; i < nk; i++) gotIdx[i] = g[i];
  }
  std::vector<float> gotW = dW.download();
  int mismatches = 0;
  for (size_t i = 0; i < nk && mismatches < 5; i++) {
    if (gotIdx[i] != refIdx[i] || floatBits(gotW[i]) != floatBits(refW[i])) {
      const size_t t = i / c.K, k = i % c.K;
      ADD_FAILURE() << "token " << t << " slot " << k << ": GPU (id " << gotIdx[i] << ", weight " << gotW[i]
                    << ") vs host (id " << refIdx[i] << ", weight " << refW[i] << ")";
      mismatches++;
    }
  }
  ASSERT_EQ(mismatches, 0);
  if (wantNodes) {
    std::vector<int> gn = dNodes.download();
    EXPECT_EQ(gn[0], refNodes) << "nodesPerTokenMax";
    if (c.maxNodes > 0) {
      EXPECT_LE(gn[0], c.maxNodes) << "node limit violated";
    }
  }
  // Sanity on the values themselves (the reference could share a bug with the kernel).
  if (!(c.flags & EP_GATING_FLAG_NO_RENORMALIZE) && c.logits != 2) {
    for (int t = 0; t < c.T; t++) {
      double s = 0;
      for (int k = 0; k < c.K; k++) s += gotW[(size_t)t * c.K + k];
      ASSERT_NEAR(s, c.scale, 1e-5 * c.scale) << "token " << t << ": weights do not sum to the scaling factor";
    }
  }
}

TEST(EplbGatingGpu, DeepSeekV3MatchesHostBitwise) {
  EPLB_REQUIRE_GPU();
  // E=256, n_group=8, topk_group=4, K=8, scale 2.5: fp32 and bf16 logits, int64 and int32 ids.
  const GatingCase cases[] = {
      {"dsv3", 4096, 256, 8, 4, 8, 2.5f, 0, 0, 0, 0, epFloat32, epInt64, true, 0},
      {"dsv3-bf16", 4099, 256, 8, 4, 8, 2.5f, 0, 0, 0, 0, epBfloat16, epInt32, true, 0},
      {"dsv3-ties", 2048, 256, 8, 4, 8, 2.5f, 0, 0, 0, 0, epBfloat16, epInt64, true, 1},
      {"dsv3-nan", 1024, 256, 8, 4, 8, 2.5f, 0, 0, 0, 0, epFloat32, epInt64, true, 2},
      {"dsv3-nobias", 777, 256, 8, 4, 8, 1.0f, 0, 0, 0, 0, epFloat32, epInt32, false, 0},
      {"dsv3-nodes-report", 1500, 256, 8, 4, 8, 2.5f, 64, 8, 0, 0, epFloat32, epInt64, true, 0},
  };
  uint64_t seed = 100;
  for (const auto& c : cases) runCase(c, seed++);
}

TEST(EplbGatingGpu, OddShapesMatchHostBitwise) {
  EPLB_REQUIRE_GPU();
  const GatingCase cases[] = {
      {"v2-like", 999, 160, 8, 3, 6, 16.0f, 0, 0, 0, 0, epFloat32, epInt64, false, 0},
      {"no-groups", 513, 72, 1, 1, 5, 1.0f, 0, 0, 0, 0, epFloat32, epInt32, true, 0},
      {"groups-of-one", 300, 64, 64, 8, 8, 1.0f, 0, 0, 0, 0, epFloat32, epInt64, true, 0},
      {"E33", 333, 33, 3, 2, 7, 1.5f, 0, 0, 0, 0, epBfloat16, epInt64, true, 0},
      {"K1", 257, 128, 4, 1, 1, 1.0f, 0, 0, 0, 0, epFloat32, epInt32, true, 0},
      {"K64", 129, 128, 2, 1, 64, 1.0f, 0, 0, 0, 0, epFloat32, epInt64, true, 0},
      {"E1024", 200, 1024, 16, 4, 16, 2.0f, 0, 0, 0, 0, epBfloat16, epInt64, true, 0},
      {"E4096", 37, 4096, 32, 8, 12, 1.0f, 0, 0, 0, 0, epFloat32, epInt64, true, 0},
      {"scores-input", 400, 256, 8, 4, 8, 2.5f, 0, 0, 0, EP_GATING_FLAG_INPUT_IS_SCORES, epFloat32, epInt64, true, 3},
      {"no-renorm", 400, 256, 8, 4, 8, 2.5f, 0, 0, 0, EP_GATING_FLAG_NO_RENORMALIZE, epFloat32, epInt64, true, 0},
      {"T1", 1, 256, 8, 4, 8, 2.5f, 0, 0, 0, 0, epFloat32, epInt64, true, 0},
      {"T0", 0, 256, 8, 4, 8, 2.5f, 32, 4, 0, 0, epFloat32, epInt64, true, 0},
  };
  uint64_t seed = 200;
  for (const auto& c : cases) runCase(c, seed++);
}

TEST(EplbGatingGpu, NodeLimitedBoundHolds) {
  EPLB_REQUIRE_GPU();
  const GatingCase cases[] = {
      // 8 nodes of 32 experts (64 ranks, 8 per node), at most 4 nodes per token, no groups.
      {"nodes-only", 2048, 256, 1, 1, 8, 2.5f, 64, 8, 4, 0, epFloat32, epInt64, true, 0},
      // Groups and nodes misaligned: 8 groups of 32 and 16 nodes of 16, keep 4 groups then 3 nodes.
      {"groups+nodes", 2048, 256, 8, 4, 8, 2.5f, 64, 4, 3, 0, epBfloat16, epInt32, true, 0},
      // Limit of one node: every token stays on one node.
      {"one-node", 1024, 256, 1, 1, 8, 1.0f, 32, 4, 1, 0, epFloat32, epInt64, true, 0},
      // Overlapping groups and nodes that leave fewer than K candidates (-1 slots).
      {"shortfall", 500, 12, 3, 1, 4, 1.0f, 2, 1, 1, 0, epFloat32, epInt64, false, 0},
  };
  uint64_t seed = 300;
  for (const auto& c : cases) runCase(c, seed++);
}

/* Bad shapes are rejected before anything touches the device (runs without a GPU too). */
TEST(EplbGatingGpu, BadShapesAreErrors) {
  epGatingDesc_t d;
  memset(&d, 0, sizeof(d));
  d.numExperts = 256, d.numGroups = 8, d.topkGroups = 4, d.topk = 8, d.routedScalingFactor = 2.5f;
  float* fake = reinterpret_cast<float*>(0x1000);  // never dereferenced: validation fails first
  auto expectErr = [&](const epGatingDesc_t& dd, const char* needle, epDataType_t st = epFloat32,
                       epDataType_t it = epInt64, int T = 4, int* nodes = nullptr) {
    EXPECT_EQ(epGroupLimitedGating(fake, st, nullptr, T, &dd, fake, it, fake, nodes, nullptr), epInvalidArgument);
    EXPECT_NE(std::string(epGetLastError(nullptr)).find(needle), std::string::npos) << epGetLastError(nullptr);
  };
  epGatingDesc_t b = d;
  b.numGroups = 7;
  expectErr(b, "divide numExperts");
  b = d, b.topkGroups = 0;
  expectErr(b, "topkGroups");
  b = d, b.topk = 0;
  expectErr(b, "topk must be");
  b = d, b.maxNodes = 2;
  expectErr(b, "numRanks > 0");
  expectErr(d, "nodesPerTokenMax", epFloat32, epInt64, 4, reinterpret_cast<int*>(0x1000));
  expectErr(d, "scoreType", epInt32);
  expectErr(d, "idType", epFloat32, epFloat32);
  expectErr(d, "numTokens", epFloat32, epInt64, -3);
  EXPECT_EQ(epGroupLimitedGating(fake, epFloat32, nullptr, 4, nullptr, fake, epInt64, fake, nullptr, nullptr),
            epInvalidArgument);
  EXPECT_EQ(epGroupLimitedGating(nullptr, epFloat32, nullptr, 4, &d, fake, epInt64, fake, nullptr, nullptr),
            epInvalidArgument);
}

}  // namespace
