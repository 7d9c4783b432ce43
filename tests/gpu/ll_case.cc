/*************************************************************************
 * epcomm GPU suites (LL): communicator, case runner and host references.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/gpu/ll_case.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "tests/common/dtype.h"
#include "tests/common/rng.h"

namespace {

// Port offsets under EP_COMM_ID (world.h): 0..2 are the HT suites', 10/11 the LL ones.
const int kLlCommPortOffset = 10;
const int kLlFaultCommPortOffset = 11;
epComm_t gFault = nullptr;

epConfig_t llConfig(int timeoutMs, const char* name) {
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.llMaxTokensPerRank = EP_LL_TEST_M;
  cfg.llHidden = EP_LL_TEST_H;
  cfg.llNumExperts = EP_LL_TEST_E;
  cfg.llMaxTopk = EP_LL_TEST_K;
  cfg.timeoutMs = timeoutMs;
  cfg.commName = name;
  return cfg;
}

class LlEnvTeardown : public testing::Environment {
 public:
  void TearDown() override {
    LlEnv& e = llEnv();
    if (!e.initialised || !e.skipReason.empty()) return;
    llResetFaultComm();
    if (e.stream) cudaStreamSynchronize(e.stream);
    if (e.handle) epLowLatencyHandleDestroy(e.handle);
    e.handle = nullptr;
    if (e.comm) epCommDestroy(e.comm);
    e.comm = nullptr;
  }
};
testing::Environment* const gTeardown = testing::AddGlobalTestEnvironment(new LlEnvTeardown);

float bf(uint16_t b) { return epTestBf16ToFloat(b); }

}  // namespace

LlEnv& llEnv() {
  static LlEnv e;
  if (e.initialised) return e;
  e.initialised = true;
  e.world = epTestWorldFromEnv();
  e.rank = e.world.rank;
  e.nranks = e.world.size;
  e.skipReason = epTestNoGpuReason("the LL suite needs one GPU per rank (mpirun -np N build/test/ep_gpu_tests)");
  if (!e.skipReason.empty()) return e;
  if (cudaSetDevice(e.world.localRank % epTestCudaDeviceCount()) != cudaSuccess) {
    e.initError = "cudaSetDevice failed";
    return e;
  }
  epTestDefaultCommId();
  // EP_TIMEOUT_MS (e.g. gpu_suite.sh under compute-sanitizer) wins over the suite's 30 s.
  epConfig_t cfg = llConfig(getenv("EP_TIMEOUT_MS") ? EP_CONFIG_UNDEF_INT : 30000, "ll-tests");
  epResult_t r = epTestCommInitAt(e.rank, e.nranks, kLlCommPortOffset, &cfg, &e.comm);
  if (r != epSuccess) {
    e.initError = "LL comm init failed: " + epTestErrText(r, nullptr);
    e.comm = nullptr;
    return e;
  }
  r = epLowLatencyHandleCreate(e.comm, &e.handle);
  if (r != epSuccess) {
    e.initError = "epLowLatencyHandleCreate failed: " + epTestErrText(r, e.comm);
    return e;
  }
  if (cudaStreamCreateWithFlags(&e.stream, cudaStreamNonBlocking) != cudaSuccess) {
    e.initError = "cudaStreamCreate failed";
    return e;
  }
  const size_t M = EP_LL_TEST_M, H = EP_LL_TEST_H, E = EP_LL_TEST_E, K = EP_LL_TEST_K, R = e.nranks;
  const size_t L = E / R, RM = R * M;
  const size_t guard = 4096;
  bool ok = e.x.alloc(M * H * 2) == cudaSuccess && e.topk.alloc(M * K * 8) == cudaSuccess &&
            e.weights.alloc(M * K * 4) == cudaSuccess && e.recvX.alloc(L * RM * H * 2, guard) == cudaSuccess &&
            e.recvScales.alloc(L * RM * (H / 128) * 4, guard) == cudaSuccess &&
            e.recvCount.alloc(L * 4, guard) == cudaSuccess && e.range.alloc(L * R * 8, guard) == cudaSuccess &&
            e.srcInfo.alloc(L * RM * 4, guard) == cudaSuccess && e.recvW.alloc(L * RM * 4, guard) == cudaSuccess &&
            e.cumStats.alloc(L * 4) == cudaSuccess && e.y.alloc(L * RM * H * 2) == cudaSuccess &&
            e.out.alloc(M * H * 2, guard) == cudaSuccess;
  if (!ok) e.initError = "device buffer allocation failed";
  return e;
}

epComm_t llFaultComm(int timeoutMs, std::string* error) {
  LlEnv& e = llEnv();
  if (gFault) return gFault;
  epConfig_t cfg = llConfig(timeoutMs, "ll-fault-tests");
  epResult_t r = epTestCommInitAt(e.rank, e.nranks, kLlFaultCommPortOffset, &cfg, &gFault);
  if (r != epSuccess) {
    *error = "LL fault comm init failed: " + epTestErrText(r, nullptr);
    gFault = nullptr;
  }
  return gFault;
}

void llResetFaultComm() {
  if (!gFault) return;
  cudaDeviceSynchronize();
  epCommDestroy(gFault);
  gFault = nullptr;
}

std::string LlCase::name() const {
  char b[256];
  snprintf(b, sizeof(b), "%s T=%d H=%d K=%d E=%d %s%s%s %s%s%s%s%s", epTestRoutingName(routing).c_str(),
           routing.numTokens, hidden, routing.numTopk, routing.numExperts,
           fp8 ? "fp8" : "bf16", roundScale ? "+round" : "", ue8m0 ? "+ue8m0" : "",
           scaleLayout == epLlScalesMnMajor ? "mn" : "tok", dedup ? " dedup" : " plain", hook ? " hook" : "",
           reduce ? " reduce" : "", zeroCopy ? " zcopy" : "");
  return b;
}

void llTokenRow(uint64_t seed, int rank, int t, int H, uint16_t* row) {
  epTestRng rng(seed, EP_RNG_ROWS, (uint64_t)rank);
  for (int g = 0; g < H / 128; g++) {
    // Magnitudes vary per group so that scales differ; one group of some
    // tokens is all zero (amax clamp path).
    int ex = (int)rng.below(((uint64_t)t << 20) | (uint64_t)g, 17) - 8;
    float mag = ldexpf(1.f, ex);
    bool zero = (t % 7 == 3) && g == 1;
    for (int i = 0; i < 128; i++) {
      int h = g * 128 + i;
      float v = zero ? 0.f : (float)(rng.uniform(((uint64_t)t << 32) | (uint64_t)h | (1ull << 62)) * 2.0 - 1.0) * mag;
      row[h] = epTestFloatToBf16(v);
    }
  }
}

uint16_t llExpertOut(uint64_t seed, int rank, int le, int row, int h) {
  epTestRng rng(seed, EP_RNG_COMBINE, (uint64_t)rank);
  uint64_t i = ((uint64_t)le << 44) ^ ((uint64_t)row << 20) ^ (uint64_t)h;
  return epTestFloatToBf16((float)(rng.uniform(i) * 2.0 - 1.0));
}

int LlPlan::rowOf(int d, int e, int s, int t, int k) const {
  int le = e - d * L;
  int base = 0;
  for (int s2 = 0; s2 < s; s2++) base += cnt[s2][e];
  (void)le;
  return base + j[s][t * routing[s].numTopk + k];
}

LlPlan llMakePlan(const LlCase& c, int nranks) {
  LlPlan p;
  p.c = c;
  p.R = nranks;
  p.L = c.routing.numExperts / nranks;
  p.M = EP_LL_TEST_M;
  p.RM = p.R * p.M;
  p.routing = epTestMakeAllRoutings(c.routing, nranks);
  const int K = c.routing.numTopk, E = c.routing.numExperts;
  p.j.resize(nranks);
  p.cnt.resize(nranks);
  for (int s = 0; s < nranks; s++) {
    epTestRouting& r = p.routing[s];
    for (auto& b : c.badIds)
      if (b.first < r.numTokens) r.topkIdx[(size_t)b.first * K + b.second] = E + 7 + b.first;
    p.j[s].assign((size_t)r.numTokens * K, -1);
    p.cnt[s].assign(E, 0);
    for (int t = 0; t < r.numTokens; t++)
      for (int k = 0; k < K; k++) {
        long long e = r.topkIdx[(size_t)t * K + k];
        if (e < 0 || e >= E) continue;
        p.j[s][(size_t)t * K + k] = p.cnt[s][e]++;
      }
  }
  return p;
}

bool llUploadInputs(LlEnv& env, const LlPlan& plan) {
  const LlCase& c = plan.c;
  const epTestRouting& r = plan.routing[env.rank];
  const int T = r.numTokens, H = c.hidden, K = c.routing.numTopk;
  std::vector<uint16_t> x((size_t)std::max(T, 1) * H);
  for (int t = 0; t < T; t++) llTokenRow(c.routing.seed, env.rank, t, H, x.data() + (size_t)t * H);
  EXPECT_EQ(cudaSuccess, cudaMemcpy(env.x.p, x.data(), (size_t)T * H * 2, cudaMemcpyHostToDevice));
  if (c.int32Idx) {
    std::vector<int32_t> ids(r.topkIdx.begin(), r.topkIdx.end());
    EXPECT_EQ(cudaSuccess, cudaMemcpy(env.topk.p, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  } else {
    EXPECT_EQ(cudaSuccess, cudaMemcpy(env.topk.p, r.topkIdx.data(), r.topkIdx.size() * 8, cudaMemcpyHostToDevice));
  }
  EXPECT_EQ(cudaSuccess,
            cudaMemcpy(env.weights.p, r.topkWeights.data(), (size_t)T * K * 4, cudaMemcpyHostToDevice));
  return !testing::Test::HasFailure();
}

bool llPoisonOutputs(LlEnv& env) {
  for (epTestDevBuf* b : {&env.recvX, &env.recvScales, &env.recvCount, &env.range, &env.srcInfo, &env.recvW,
                          &env.out})
    EXPECT_EQ(cudaSuccess, b->poison(0xFF, env.stream));
  return !testing::Test::HasFailure();
}

void llFillDispatchArgs(LlEnv& env, const LlPlan& plan, epLlDispatchInput_t* in, epLlDispatchOutput_t* out) {
  const LlCase& c = plan.c;
  *in = EP_LL_DISPATCH_INPUT_INITIALIZER;
  *out = EP_LL_DISPATCH_OUTPUT_INITIALIZER;
  in->x = env.x.p;
  in->numTokens = plan.routing[env.rank].numTokens;
  in->hidden = c.hidden;
  in->topkIdx = env.topk.p;
  in->topkIdxType = c.int32Idx ? epInt32 : epInt64;
  in->topkWeights = c.withWeights ? env.weights.as<float>() : nullptr;
  in->numTopk = c.routing.numTopk;
  in->numExperts = c.routing.numExperts;
  in->useFp8 = c.fp8;
  in->roundScale = c.roundScale;
  in->ue8m0 = c.ue8m0;
  in->scaleLayout = c.scaleLayout;
  in->dedup = c.dedup;
  in->hook = c.hook;
  in->numSms = c.numSms;
  out->recvX = env.recvX.p;
  out->recvScales = c.fp8 ? env.recvScales.p : nullptr;
  out->recvCount = env.recvCount.as<int32_t>();
  out->recvLayoutRange = env.range.as<int64_t>();
  out->recvSrcInfo = env.srcInfo.as<int32_t>();
  out->recvTopkWeights = c.withWeights ? env.recvW.as<float>() : nullptr;
}

namespace {

// The reference quantisation of one 128-channel group (see ll_case.h).
void quantGroup(const uint16_t* in, bool roundScale, uint8_t* q, float* scale) {
  float amax = 0.f;
  for (int i = 0; i < 128; i++) amax = std::max(amax, std::fabs(bf(in[i])));
  amax = std::max(amax, 1e-4f);
  float s = amax / 448.f, inv;
  if (roundScale) {
    uint32_t b;
    memcpy(&b, &s, 4);
    if (b & 0x7fffffu) b = (b & 0xff800000u) + 0x800000u;
    memcpy(&s, &b, 4);
    inv = 1.f / s;
  } else {
    inv = 448.f / amax;
  }
  volatile float vinv = inv;  // keep the product a plain float multiply
  for (int i = 0; i < 128; i++) {
    float v = bf(in[i]) * vinv;
    q[i] = epTestFloatToFp8E4M3(v);
  }
  *scale = s;
}

}  // namespace

bool llCheckDispatch(LlEnv& env, const LlPlan& plan) {
  const LlCase& c = plan.c;
  const int R = plan.R, L = plan.L, RM = plan.RM, H = c.hidden, K = c.routing.numTopk, me = env.rank;
  const int G = H / 128, S = c.ue8m0 ? (G + 3) / 4 : G;
  const size_t rowBytes = c.fp8 ? (size_t)H : (size_t)H * 2;
  const std::string what = c.name();
  // Expected counts and ranges.
  std::vector<int32_t> count(L);
  std::vector<int64_t> range((size_t)L * R);
  EXPECT_EQ(cudaSuccess, cudaMemcpy(count.data(), env.recvCount.p, L * 4, cudaMemcpyDeviceToHost));
  EXPECT_EQ(cudaSuccess, cudaMemcpy(range.data(), env.range.p, (size_t)L * R * 8, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int le = 0; le < L; le++) {
    int e = me * L + le, base = 0;
    for (int s = 0; s < R; s++) {
      int n = plan.cnt[s][e];
      int64_t want = ((int64_t)base << 32) | (uint32_t)n;
      if (range[(size_t)le * R + s] != want && bad++ < 5)
        ADD_FAILURE() << what << ": rank " << me << " expert " << le << " source " << s << " range "
                      << (range[(size_t)le * R + s] >> 32) << "+" << (range[(size_t)le * R + s] & 0xffffffff)
                      << " want " << base << "+" << n;
      base += n;
    }
    if (count[le] != base && bad++ < 5)
      ADD_FAILURE() << what << ": rank " << me << " expert " << le << " count " << count[le] << " want " << base;
  }
  if (bad) return false;
  // Rows, scales, source info, weights.
  std::vector<int32_t> src((size_t)L * RM);
  std::vector<float> w((size_t)L * RM);
  EXPECT_EQ(cudaSuccess, cudaMemcpy(src.data(), env.srcInfo.p, src.size() * 4, cudaMemcpyDeviceToHost));
  if (c.withWeights) {
    EXPECT_EQ(cudaSuccess, cudaMemcpy(w.data(), env.recvW.p, w.size() * 4, cudaMemcpyDeviceToHost));
  }
  std::vector<uint8_t> scales;
  if (c.fp8) {
    scales.resize((size_t)L * RM * S * 4);
    EXPECT_EQ(cudaSuccess, cudaMemcpy(scales.data(), env.recvScales.p, scales.size(), cudaMemcpyDeviceToHost));
  }
  std::vector<uint16_t> xrow(H);
  std::vector<uint8_t> got, want(rowBytes);
  std::vector<float> wantScale(G);
  for (int le = 0; le < L; le++) {
    if (count[le] == 0) continue;
    size_t n = std::min(RM, count[le] + 1);  // one row past the end must still be poisoned
    got.resize(n * rowBytes);
    EXPECT_EQ(cudaSuccess, cudaMemcpy(got.data(), static_cast<char*>(env.recvX.p) + (size_t)le * RM * rowBytes,
                                      got.size(), cudaMemcpyDeviceToHost));
    if ((int)n > count[le]) {
      const uint8_t* past = got.data() + (size_t)count[le] * rowBytes;
      for (size_t i = 0; i < rowBytes; i++)
        if (past[i] != 0xFF) {
          if (bad++ < 5) ADD_FAILURE() << what << ": expert " << le << " row past the count was written";
          break;
        }
    }
  }
  for (int s = 0; s < R; s++) {
    const epTestRouting& r = plan.routing[s];
    for (int t = 0; t < r.numTokens; t++) {
      bool haveRow = false;
      for (int k = 0; k < K; k++) {
        long long e = r.topkIdx[(size_t)t * K + k];
        if (e < 0 || e >= c.routing.numExperts || e / L != me) continue;
        int le = (int)e - me * L;
        int row = plan.rowOf(me, (int)e, s, t, k);
        size_t flat = (size_t)le * RM + row;
        if (!haveRow) {
          llTokenRow(c.routing.seed, s, t, H, xrow.data());
          if (c.fp8) {
            for (int g = 0; g < G; g++) quantGroup(&xrow[g * 128], c.roundScale, &want[g * 128], &wantScale[g]);
          } else {
            memcpy(want.data(), xrow.data(), rowBytes);
          }
          haveRow = true;
        }
        if (src[flat] != t && bad++ < 5)
          ADD_FAILURE() << what << ": srcInfo of expert " << le << " row " << row << " = " << src[flat] << " want "
                        << t << " (source " << s << ")";
        if (c.withWeights && w[flat] != r.topkWeights[(size_t)t * K + k] && bad++ < 5)
          ADD_FAILURE() << what << ": weight of expert " << le << " row " << row << " = " << w[flat] << " want "
                        << r.topkWeights[(size_t)t * K + k];
        // Row bytes: fetch that one row.
        std::vector<uint8_t> g1(rowBytes);
        EXPECT_EQ(cudaSuccess, cudaMemcpy(g1.data(), static_cast<char*>(env.recvX.p) + flat * rowBytes, rowBytes,
                                          cudaMemcpyDeviceToHost));
        if (memcmp(g1.data(), want.data(), rowBytes) != 0) {
          size_t i = 0;
          while (g1[i] == want[i]) i++;
          if (bad++ < 5)
            ADD_FAILURE() << what << ": rank " << me << " expert " << le << " row " << row << " (source " << s
                          << " token " << t << ") differs at byte " << i << ": got " << (int)g1[i] << " want "
                          << (int)want[i];
        }
        if (c.fp8) {
          for (int q = 0; q < S; q++) {
            size_t idx = c.scaleLayout == epLlScalesMnMajor ? ((size_t)le * S + q) * RM + row : flat * S + q;
            uint32_t gotw, wantw = 0;
            memcpy(&gotw, &scales[idx * 4], 4);
            if (c.ue8m0) {
              for (int jj = 0; jj < 4 && 4 * q + jj < G; jj++) {
                uint32_t b;
                memcpy(&b, &wantScale[4 * q + jj], 4);
                wantw |= ((b >> 23) & 0xffu) << (8 * jj);
              }
            } else {
              memcpy(&wantw, &wantScale[q], 4);
            }
            if (gotw != wantw && bad++ < 5)
              ADD_FAILURE() << what << ": scale " << q << " of expert " << le << " row " << row << " = 0x" << std::hex
                            << gotw << " want 0x" << wantw << std::dec;
          }
        }
      }
    }
  }
  return bad == 0 && !testing::Test::HasFailure();
}

bool llUploadExpertOutputs(LlEnv& env, const LlPlan& plan, void* dst) {
  const LlCase& c = plan.c;
  const int L = plan.L, RM = plan.RM, H = c.hidden, me = env.rank;
  // Rows the combine must not read are NaN.
  EXPECT_EQ(cudaSuccess, cudaMemset(dst, 0xFF, (size_t)L * RM * H * 2));
  std::vector<uint16_t> rows;
  for (int le = 0; le < L; le++) {
    int n = 0;
    for (int s = 0; s < plan.R; s++) n += plan.cnt[s][me * L + le];
    if (n == 0) continue;
    rows.resize((size_t)n * H);
    for (int row = 0; row < n; row++)
      for (int h = 0; h < H; h++) rows[(size_t)row * H + h] = llExpertOut(c.routing.seed, me, le, row, h);
    EXPECT_EQ(cudaSuccess, cudaMemcpy(static_cast<char*>(dst) + (size_t)le * RM * H * 2, rows.data(),
                                      rows.size() * 2, cudaMemcpyHostToDevice));
  }
  return !testing::Test::HasFailure();
}

void llFillCombineArgs(LlEnv& env, const LlPlan& plan, epLlCombineInput_t* in, epLlCombineOutput_t* out) {
  const LlCase& c = plan.c;
  *in = EP_LL_COMBINE_INPUT_INITIALIZER;
  *out = EP_LL_COMBINE_OUTPUT_INITIALIZER;
  in->x = env.y.p;
  in->topkIdx = env.topk.p;
  in->topkIdxType = c.int32Idx ? epInt32 : epInt64;
  in->topkWeights = env.weights.as<float>();
  in->numTokens = plan.routing[env.rank].numTokens;
  in->numTopk = c.routing.numTopk;
  in->hidden = c.hidden;
  in->zeroCopy = c.zeroCopy;
  in->reduceOnSender = c.reduce;
  in->hook = c.hook;
  in->numSms = c.numSms;
  out->out = env.out.p;
}

bool llCheckCombine(LlEnv& env, const LlPlan& plan, const void* devOut) {
  const LlCase& c = plan.c;
  const int me = env.rank, H = c.hidden, K = c.routing.numTopk, L = plan.L, E = c.routing.numExperts;
  const epTestRouting& r = plan.routing[me];
  const int T = r.numTokens;
  std::vector<uint16_t> got((size_t)T * H);
  EXPECT_EQ(cudaSuccess, cudaMemcpy(got.data(), devOut, got.size() * 2, cudaMemcpyDeviceToHost));
  std::vector<double> ref(H), mag(H);
  int bad = 0;
  double errN = 0, refN = 0;
  for (int t = 0; t < T; t++) {
    std::fill(ref.begin(), ref.end(), 0.0);
    std::fill(mag.begin(), mag.end(), 0.0);
    for (int k = 0; k < K; k++) {
      long long e = r.topkIdx[(size_t)t * K + k];
      if (e < 0 || e >= E) continue;
      int d = (int)(e / L), le = (int)e - d * L;
      int row = plan.rowOf(d, (int)e, me, t, k);
      double w = r.topkWeights[(size_t)t * K + k];
      for (int h = 0; h < H; h++) {
        double v = w * bf(llExpertOut(c.routing.seed, d, le, row, h));
        ref[h] += v;
        mag[h] += std::fabs(v);
      }
    }
    for (int h = 0; h < H; h++) {
      double g = bf(got[(size_t)t * H + h]);
      double err = std::fabs(g - ref[h]);
      errN += err * err;
      refN += ref[h] * ref[h];
      if (!(err <= std::ldexp(mag[h], -7) + 1e-6) && bad++ < 5)
        ADD_FAILURE() << c.name() << ": rank " << me << " combine out[" << t << "][" << h << "] = " << g << " want "
                      << ref[h] << " (tolerance " << std::ldexp(mag[h], -7) + 1e-6 << ")";
    }
  }
  if (refN > 0 && std::sqrt(errN / refN) > 5e-3 && bad++ < 5)
    ADD_FAILURE() << c.name() << ": combine relative error " << std::sqrt(errN / refN) << " > 5e-3";
  return bad == 0 && !testing::Test::HasFailure();
}

bool llRunCase(LlEnv& env, const LlCase& c, bool doCombine) {
  SCOPED_TRACE(c.name());
  LlPlan plan = llMakePlan(c, env.nranks);
  if (!llUploadInputs(env, plan) || !llPoisonOutputs(env)) return false;
  epLlDispatchInput_t in;
  epLlDispatchOutput_t out;
  llFillDispatchArgs(env, plan, &in, &out);
  epLlHook_t hook;
  epResult_t res = epLowLatencyDispatch(env.comm, &in, &out, env.handle, &hook, env.stream);
  EXPECT_EQ(epSuccess, res) << epTestErrText(res, env.comm);
  if (res != epSuccess) return false;
  if (c.hook) {
    res = epLowLatencyRecv(env.comm, hook, env.stream);
    EXPECT_EQ(epSuccess, res) << epTestErrText(res, env.comm);
  }
  EXPECT_EQ(cudaSuccess, cudaStreamSynchronize(env.stream));
  epResult_t async = epSuccess;
  EXPECT_EQ(epSuccess, epCommGetAsyncError(env.comm, &async));
  if (c.badIds.empty()) {
    EXPECT_EQ(epSuccess, async) << epTestErrText(async, env.comm);
  } else {
    EXPECT_EQ(epInvalidArgument, async) << "out-of-range expert ids must be reported";
  }
  if (testing::Test::HasFailure() || !llCheckDispatch(env, plan)) return false;
  if (!doCombine) return true;

  void* ybuf = env.y.p;
  if (c.zeroCopy) {
    size_t bytes = 0;
    res = epLowLatencyGetNextCombineBuffer(env.comm, &ybuf, &bytes);
    EXPECT_EQ(epSuccess, res) << epTestErrText(res, env.comm);
    if (res != epSuccess) return false;
  }
  if (!llUploadExpertOutputs(env, plan, ybuf)) return false;
  epLlCombineInput_t cin;
  epLlCombineOutput_t cout;
  llFillCombineArgs(env, plan, &cin, &cout);
  EXPECT_EQ(cudaSuccess, env.out.poison(0xFF, env.stream));
  res = epLowLatencyCombine(env.comm, &cin, &cout, env.handle, &hook, env.stream);
  EXPECT_EQ(epSuccess, res) << epTestErrText(res, env.comm);
  if (res != epSuccess) return false;
  if (c.hook) {
    res = epLowLatencyRecv(env.comm, hook, env.stream);
    EXPECT_EQ(epSuccess, res) << epTestErrText(res, env.comm);
  }
  EXPECT_EQ(cudaSuccess, cudaStreamSynchronize(env.stream));
  EXPECT_EQ(epSuccess, epCommGetAsyncError(env.comm, &async));
  EXPECT_EQ(epSuccess, async) << epTestErrText(async, env.comm);
  return !testing::Test::HasFailure() && llCheckCombine(env, plan, env.out.p);
}
