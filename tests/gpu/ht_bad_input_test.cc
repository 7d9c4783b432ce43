/*************************************************************************
 * epcomm GPU suite: HT calls refuse bad input with a clear error.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Host-detected errors (shapes, limits, NULLs, foreign handles) must return
 * epInvalidArgument or epInvalidUsage with a message before anything moves,
 * on every rank, so they run on the main communicator. Device-detected errors
 * (expert ids out of range, receive capacity too small in mode b) and the
 * timeout case run on the separate fault communicator: they are reported by
 * epCommGetAsyncError after the call, guard regions past every output must
 * stay untouched, and the comm must still work afterwards.
 *************************************************************************/
#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/common/dev_buffer.h"
#include "tests/common/ht_check.h"
#include "tests/common/ht_reference.h"
#include "tests/common/payload.h"
#include "tests/gpu/ht_case.h"
#include "tests/gpu/ht_env.h"
#include "intranode/ht_direct.h"

namespace {

bool isRefusal(epResult_t r) { return r == epInvalidArgument || r == epInvalidUsage; }

#define EXPECT_REFUSED(call, comm)                                                                       \
  do {                                                                                                   \
    epResult_t r_ = (call);                                                                              \
    EXPECT_TRUE(isRefusal(r_)) << #call << " -> " << epTestErrText(r_, comm)                                      \
                               << " (expected epInvalidArgument or epInvalidUsage)";                     \
    if (isRefusal(r_)) {                                                                                 \
      EXPECT_STRNE("", epGetLastError(comm)) << #call << ": refused without a message";                  \
    }                                                                                                    \
  } while (0)

// A valid small workload on one comm, with outputs sized for mode a; tests
// break one thing at a time.
struct Workload {
  int R = 1, me = 0, T = 128, H = 2048, K = 8, E = 64;
  std::vector<epTestRouting> all;
  epTestHtRecvRef ref;
  epTestPayloadSpec ps;
  epTestDevBuf x, idx, w;
  epHtHandle_t handle = nullptr;
  epDispatchInput_t in = EP_DISPATCH_INPUT_INITIALIZER;
  ~Workload() {
    if (handle) epHtHandleDestroy(handle);
  }
  void setUp(epComm_t comm, uint64_t seed) {
    HtEnv& env = htEnv();
    R = env.nranks;
    me = env.rank;
    E = htExpertsFor(R, 64);
    epTestRoutingSpec rs;
    rs.numTokens = T;
    rs.numTopk = K;
    rs.numExperts = E;
    rs.maskRate = 0.05;
    rs.seed = seed;
    all = epTestMakeAllRoutings(rs, R);
    ref = epTestHtRecvRefCompute(all, me, 1);
    ps.hidden = H;
    ps.seed = seed + 1;
    std::vector<uint8_t> hx;
    epTestMakeTokens(ps, me, T, &hx, nullptr);
    EP_HT_ASSERT_CUDA(x.upload(hx));
    EP_HT_ASSERT_CUDA(idx.upload(all[me].topkIdx));
    EP_HT_ASSERT_CUDA(w.upload(all[me].topkWeights));
    EP_HT_ASSERT_OK(epHtHandleCreate(comm, EP_HT_TEST_MAX_TOKENS, &handle), comm);
    in.x = x.p;
    in.xType = epBfloat16;
    in.numTokens = T;
    in.hidden = H;
    in.topkIdx = idx.p;
    in.topkIdxType = epInt64;
    in.topkWeights = w.as<float>();
    in.numTopk = K;
    in.numExperts = E;
  }
};

// Outputs of `cap` rows followed by `guard` rows, poisoned.
struct Outs {
  epTestDevBuf x, idx, w, src, n;
  epDispatchOutput_t od = EP_DISPATCH_OUTPUT_INITIALIZER;
  void alloc(int cap, int guard, int H, int K, cudaStream_t st) {
    EP_HT_ASSERT_CUDA(x.alloc((size_t)cap * H * 2, (size_t)guard * H * 2));
    EP_HT_ASSERT_CUDA(idx.alloc((size_t)cap * K * 4, (size_t)guard * K * 4));
    EP_HT_ASSERT_CUDA(w.alloc((size_t)cap * K * 4, (size_t)guard * K * 4));
    EP_HT_ASSERT_CUDA(src.alloc((size_t)cap * 4, (size_t)guard * 4));
    EP_HT_ASSERT_CUDA(n.alloc(4, 60));
    for (epTestDevBuf* b : {&x, &idx, &w, &src}) EP_HT_ASSERT_CUDA(b->poison(0xEE, st));
    od.recvX = x.p;
    od.recvTopkIdx = idx.as<int32_t>();
    od.recvTopkWeights = w.as<float>();
    od.recvSrcIdx = src.as<int32_t>();
    od.numRecvTokens = n.as<int32_t>();
    od.capacity = cap;
  }
  void expectGuardsUntouched(const char* when) {
    epTestCheck chk;
    for (epTestDevBuf* b : {&x, &idx, &w, &src}) {
      std::vector<uint8_t> h;
      EP_HT_ASSERT_CUDA(b->download(&h));
      epTestCheckUntouched(h.data(), b->bytes, b->total(), 0xEE, "guard after an output array", &chk);
    }
    EXPECT_TRUE(chk.ok()) << when << ": out-of-bounds write: " << chk.summary();
  }
};

// Row-level problems (hidden, x, xType, scales) may be caught by notify or,
// since notify only needs the routing, by dispatch: one of them must refuse.
// Same calls on every rank, so a notify that goes through stays collective.
void expectRefusedByNotifyOrDispatch(epComm_t comm, const epDispatchInput_t& in, epHtHandle_t h, Outs* o,
                                     cudaStream_t st, const char* what) {
  epResult_t r1 = epDispatchNotify(comm, &in, h, nullptr, nullptr, st);
  if (isRefusal(r1)) {
    EXPECT_STRNE("", epGetLastError(comm)) << what << ": notify refused without a message";
    return;
  }
  EXPECT_EQ(epSuccess, r1) << what << ": notify -> " << epTestErrText(r1, comm);
  epResult_t r2 = epDispatch(comm, &in, &o->od, h, st);
  EXPECT_TRUE(isRefusal(r2)) << what << ": neither notify nor dispatch refused it; dispatch -> " << epTestErrText(r2, comm);
  if (isRefusal(r2)) {
    EXPECT_STRNE("", epGetLastError(comm)) << what << ": dispatch refused without a message";
  }
}

epResult_t takeAsync(epComm_t comm) {
  epResult_t a = epInternalError;
  if (epCommGetAsyncError(comm, &a) != epSuccess) return epInternalError;
  return a;
}

// Mode-a notify of the workload; *nrecv = rows this rank receives.
void notifyHostSync(epComm_t comm, Workload& wl, cudaStream_t st, int* nrecv) {
  std::vector<int> perExpert(wl.E / wl.R);
  *nrecv = -1;
  EP_HT_ASSERT_OK(epDispatchNotify(comm, &wl.in, wl.handle, nrecv, perExpert.data(), st), comm);
  ASSERT_EQ(wl.ref.numRecv, *nrecv) << "notify: rows to receive";
}

// After refused or failed calls the comm must still work: a mode-b notify +
// dispatch whose rows match the reference bitwise, with no device error.
void expectDispatchStillCorrect(epComm_t comm, Workload& wl, cudaStream_t st, const char* when) {
  Outs o;
  o.alloc(wl.T * wl.R, 2, wl.H, wl.K, st);
  EP_HT_ASSERT_OK(epDispatchNotify(comm, &wl.in, wl.handle, nullptr, nullptr, st), comm);
  EP_HT_ASSERT_OK(epDispatch(comm, &wl.in, &o.od, wl.handle, st), comm);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
  EXPECT_EQ(epSuccess, takeAsync(comm)) << when;
  std::vector<uint8_t> hx, hs, hn;
  EP_HT_ASSERT_CUDA(o.x.download(&hx));
  EP_HT_ASSERT_CUDA(o.src.download(&hs));
  EP_HT_ASSERT_CUDA(o.n.download(&hn));
  epTestHtDispatchGot got;
  memcpy(&got.numRecv, hn.data(), 4);
  got.x = hx.data();
  got.srcIdx = (const int32_t*)hs.data();
  epTestCheck chk;
  epTestCheckDispatch(wl.ref, wl.ps, wl.K, got, true, &chk);
  EXPECT_TRUE(chk.ok()) << when << ": " << chk.summary();
  o.expectGuardsUntouched(when);
}

// Tests that provoke device-side errors or timeouts: on the fault comm.
class HtBadInputFault : public testing::Test {
 protected:
  void SetUp() override {
    EP_HT_REQUIRE_GPU();
    std::string err;
    fc = htFaultComm(&err);
    ASSERT_NE(nullptr, fc) << err;
  }
  epComm_t fc = nullptr;
};

// ---------------------------------------------------------------- host-detected
TEST(HtBadInput, HiddenNotMultipleOfVectorWidth) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  Workload wl;
  wl.setUp(env.comm, 11);
  if (HasFatalFailure()) return;
  epDispatchInput_t in = wl.in;
  in.hidden = 2044;  // 4088 bytes: not a multiple of 16
  Outs o;
  o.alloc(wl.T * wl.R, 2, wl.H, wl.K, env.stream);
  expectRefusedByNotifyOrDispatch(env.comm, in, wl.handle, &o, env.stream, "hidden 2044 (BF16)");
  epCombineInput_t cin = EP_COMBINE_INPUT_INITIALIZER;
  cin.x = o.x.p;
  cin.hidden = 2044;
  epCombineOutput_t cout = EP_COMBINE_OUTPUT_INITIALIZER;
  cout.out = o.x.p;
  EXPECT_REFUSED(epCombine(env.comm, &cin, &cout, wl.handle, env.stream), env.comm);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  o.expectGuardsUntouched("hidden 2044");
}

TEST(HtBadInput, Fp8HiddenNotMultipleOf128) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  Workload wl;
  wl.setUp(env.comm, 12);
  if (HasFatalFailure()) return;
  epTestDevBuf scales;
  EP_HT_ASSERT_CUDA(scales.alloc((size_t)wl.T * 32 * 4));
  epDispatchInput_t in = wl.in;
  in.xType = epFloat8E4M3;
  in.hidden = 2112;  // multiple of 16, not of 128
  in.xScales = scales.p;
  in.scaleFormat = epScaleFloat32;
  Outs o;
  o.alloc(wl.T * wl.R, 2, wl.H, wl.K, env.stream);
  expectRefusedByNotifyOrDispatch(env.comm, in, wl.handle, &o, env.stream, "FP8 hidden 2112");
  in.hidden = 2048;
  in.xScales = nullptr;
  expectRefusedByNotifyOrDispatch(env.comm, in, wl.handle, &o, env.stream, "FP8 without scales");
  in.xScales = scales.p;
  in.scaleFormat = epScaleNone;
  expectRefusedByNotifyOrDispatch(env.comm, in, wl.handle, &o, env.stream, "FP8 with scaleFormat none");
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  o.expectGuardsUntouched("bad FP8 inputs");
}

TEST(HtBadInput, TokensAboveConfiguredMaximum) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  epHtHandle_t h = nullptr;
  EXPECT_REFUSED(epHtHandleCreate(env.comm, EP_HT_TEST_MAX_TOKENS + 1, &h), env.comm);
  if (h) epHtHandleDestroy(h);
  Workload wl;
  wl.setUp(env.comm, 13);
  if (HasFatalFailure()) return;
  epDispatchInput_t in = wl.in;
  in.numTokens = EP_HT_TEST_MAX_TOKENS + 1;
  EXPECT_REFUSED(epDispatchNotify(env.comm, &in, wl.handle, nullptr, nullptr, env.stream), env.comm);
  // Above the handle's own maximum (but within the comm's).
  epHtHandle_t small = nullptr;
  EP_HT_ASSERT_OK(epHtHandleCreate(env.comm, 16, &small), env.comm);
  in.numTokens = 17;
  EXPECT_REFUSED(epDispatchNotify(env.comm, &in, small, nullptr, nullptr, env.stream), env.comm);
  epHtHandleDestroy(small);
  in.numTokens = -1;
  EXPECT_REFUSED(epDispatchNotify(env.comm, &in, wl.handle, nullptr, nullptr, env.stream), env.comm);
  EXPECT_REFUSED(epGetDispatchLayout(env.comm, wl.idx.p, epInt64, -1, wl.K, wl.E, nullptr, nullptr, nullptr,
                                     nullptr, env.stream),
                 env.comm);
}

TEST(HtBadInput, ExpertsNotDivisibleByRanks) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  if (env.nranks < 2) GTEST_SKIP() << "needs >= 2 ranks: every expert count is divisible by 1 rank";
  Workload wl;
  wl.setUp(env.comm, 14);
  if (HasFatalFailure()) return;
  const int E = wl.E + 1;
  epTestDevBuf perRank, inRank;
  EP_HT_ASSERT_CUDA(perRank.alloc((size_t)env.nranks * 4));
  EP_HT_ASSERT_CUDA(inRank.alloc((size_t)wl.T * env.nranks));
  EXPECT_REFUSED(epGetDispatchLayout(env.comm, wl.idx.p, epInt64, wl.T, wl.K, E, perRank.as<int>(), nullptr,
                                     nullptr, inRank.as<uint8_t>(), env.stream),
                 env.comm);
  epDispatchInput_t in = wl.in;
  in.numExperts = E;
  EXPECT_REFUSED(epDispatchNotify(env.comm, &in, wl.handle, nullptr, nullptr, env.stream), env.comm);
}

TEST(HtBadInput, TopkTooLarge) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  Workload wl;
  wl.setUp(env.comm, 15);
  if (HasFatalFailure()) return;
  // 33 > EP_HT_MAX_TOPK (32), and K > E is never valid.
  epTestDevBuf bigIdx, inRank;
  EP_HT_ASSERT_CUDA(bigIdx.alloc((size_t)wl.T * 1024 * 8));
  EP_HT_ASSERT_CUDA(cudaMemset(bigIdx.p, 0xFF, bigIdx.bytes));  // all -1
  EP_HT_ASSERT_CUDA(inRank.alloc((size_t)wl.T * env.nranks));
  for (int K : {33, 1024, wl.E + 1}) {
    SCOPED_TRACE("K = " + std::to_string(K));
    EXPECT_REFUSED(epGetDispatchLayout(env.comm, bigIdx.p, epInt64, wl.T, K, wl.E, nullptr, nullptr, nullptr,
                                       inRank.as<uint8_t>(), env.stream),
                   env.comm);
    epDispatchInput_t in = wl.in;
    in.topkIdx = bigIdx.p;
    in.topkWeights = nullptr;
    in.numTopk = K;
    EXPECT_REFUSED(epDispatchNotify(env.comm, &in, wl.handle, nullptr, nullptr, env.stream), env.comm);
  }
}

TEST(HtBadInput, NullPointersAndBadDescriptors) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  epComm_t comm = env.comm;
  Workload wl;
  wl.setUp(comm, 16);
  if (HasFatalFailure()) return;
  cudaStream_t st = env.stream;
  Outs o;
  o.alloc(wl.T * wl.R, 2, wl.H, wl.K, st);
  epDispatchInput_t in;
  // comm / descriptor / handle NULL
  EXPECT_REFUSED(epDispatchNotify(nullptr, &wl.in, wl.handle, nullptr, nullptr, st), nullptr);
  EXPECT_REFUSED(epDispatchNotify(comm, nullptr, wl.handle, nullptr, nullptr, st), comm);
  EXPECT_REFUSED(epDispatchNotify(comm, &wl.in, nullptr, nullptr, nullptr, st), comm);
  EXPECT_REFUSED(epDispatch(comm, &wl.in, nullptr, wl.handle, st), comm);
  EXPECT_REFUSED(epDispatch(comm, nullptr, &o.od, wl.handle, st), comm);
  EXPECT_REFUSED(epHtHandleCreate(comm, 16, nullptr), comm);
  EXPECT_REFUSED(epGetDispatchLayout(comm, nullptr, epInt64, wl.T, wl.K, wl.E, nullptr, nullptr, nullptr,
                                     o.x.as<uint8_t>(), st),
                 comm);
  // NULL data pointers with rows to move
  in = wl.in;
  in.topkIdx = nullptr;
  EXPECT_REFUSED(epDispatchNotify(comm, &in, wl.handle, nullptr, nullptr, st), comm);
  // wrong struct size / types
  in = wl.in;
  in.size = 8;
  EXPECT_REFUSED(epDispatchNotify(comm, &in, wl.handle, nullptr, nullptr, st), comm);
  in = wl.in;
  in.topkIdxType = epFloat32;
  EXPECT_REFUSED(epDispatchNotify(comm, &in, wl.handle, nullptr, nullptr, st), comm);
  in = wl.in;
  in.expertAlignment = 0;
  EXPECT_REFUSED(epDispatchNotify(comm, &in, wl.handle, nullptr, nullptr, st), comm);
  // dispatch/combine before any notify on this handle (a fresh one)
  epHtHandle_t fresh = nullptr;
  EP_HT_ASSERT_OK(epHtHandleCreate(comm, wl.T, &fresh), comm);
  epDispatchOutput_t od = o.od;
  EXPECT_REFUSED(epDispatch(comm, &wl.in, &od, fresh, st), comm);
  epCombineInput_t cin = EP_COMBINE_INPUT_INITIALIZER;
  cin.x = o.x.p;
  cin.hidden = wl.H;
  epCombineOutput_t cout = EP_COMBINE_OUTPUT_INITIALIZER;
  cout.out = o.x.p;
  EXPECT_REFUSED(epCombine(comm, &cin, &cout, fresh, st), comm);
  epHtHandleDestroy(fresh);
  // Row-level: NULL x, a non-float row type.
  in = wl.in;
  in.x = nullptr;
  expectRefusedByNotifyOrDispatch(comm, in, wl.handle, &o, st, "x NULL");
  in = wl.in;
  in.xType = epInt32;
  expectRefusedByNotifyOrDispatch(comm, in, wl.handle, &o, st, "xType int32");
  // A valid notify, then bad dispatch outputs / combine descriptors.
  int nrecv = -1;
  notifyHostSync(comm, wl, st, &nrecv);
  if (HasFatalFailure()) return;
  od = o.od;
  od.recvX = nullptr;
  if (nrecv > 0) EXPECT_REFUSED(epDispatch(comm, &wl.in, &od, wl.handle, st), comm);
  od = o.od;
  od.size = 4;
  EXPECT_REFUSED(epDispatch(comm, &wl.in, &od, wl.handle, st), comm);
  cin.size = 0;
  EXPECT_REFUSED(epCombine(comm, &cin, &cout, wl.handle, st), comm);
  cin = EP_COMBINE_INPUT_INITIALIZER;
  cin.hidden = wl.H;
  cin.x = nullptr;
  if (nrecv > 0) EXPECT_REFUSED(epCombine(comm, &cin, &cout, wl.handle, st), comm);
  cin.x = o.x.p;
  cout.out = nullptr;
  if (wl.T > 0) EXPECT_REFUSED(epCombine(comm, &cin, &cout, wl.handle, st), comm);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
  o.expectGuardsUntouched("bad descriptors");
  expectDispatchStillCorrect(comm, wl, st, "dispatch after refused calls");
}

TEST(HtBadInput, HandleFromAnotherComm) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  // A private single-rank comm per process (own bootstrap port per rank).
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.htMaxTokensPerRank = 256;
  cfg.commName = "ht-private";
  cfg.emulateNodes = 1;  // one rank: nothing to split, whatever EP_EMULATE_NODES the suite runs with
  epComm_t other = nullptr;
  EP_HT_ASSERT_OK(epTestCommInitAt(0, 1, 16 + env.rank, &cfg, &other), nullptr);
  epHtHandle_t foreign = nullptr;
  EXPECT_EQ(epSuccess, epHtHandleCreate(other, 128, &foreign)) << epTestErrText(epSuccess, other);
  Workload wl;
  wl.setUp(env.comm, 18);
  if (!HasFatalFailure() && foreign) {
    Outs o;
    o.alloc(wl.T * wl.R, 2, wl.H, wl.K, env.stream);
    EXPECT_REFUSED(epDispatchNotify(env.comm, &wl.in, foreign, nullptr, nullptr, env.stream), env.comm);
    EXPECT_REFUSED(epDispatch(env.comm, &wl.in, &o.od, foreign, env.stream), env.comm);
    epCombineInput_t cin = EP_COMBINE_INPUT_INITIALIZER;
    cin.x = o.x.p;
    cin.hidden = wl.H;
    epCombineOutput_t cout = EP_COMBINE_OUTPUT_INITIALIZER;
    cout.out = o.x.p;
    EXPECT_REFUSED(epCombine(env.comm, &cin, &cout, foreign, env.stream), env.comm);
    // ... and the main comm's handle on the private comm.
    epDispatchInput_t in1 = wl.in;
    EXPECT_REFUSED(epDispatchNotify(other, &in1, wl.handle, nullptr, nullptr, env.stream), other);
    EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
    o.expectGuardsUntouched("foreign handle");
  }
  if (foreign) epHtHandleDestroy(foreign);
  EXPECT_EQ(epSuccess, epCommDestroy(other));
}

// Mode a: the host knows the row count, so a short capacity may be refused
// before the call, or (like mode b) caught on the device; either way with
// epInvalidArgument/epInvalidUsage and nothing written past the capacity.
TEST_F(HtBadInputFault, CapacityInsufficientModeA) {
  HtEnv& env = htEnv();
  Workload wl;
  wl.setUp(fc, 17);
  if (HasFatalFailure()) return;
  int nrecv = -1;
  notifyHostSync(fc, wl, env.stream, &nrecv);
  if (HasFatalFailure()) return;
  Outs o;
  o.alloc(std::max(nrecv - 1, 0), 4, wl.H, wl.K, env.stream);
  epResult_t r = epDispatch(fc, &wl.in, &o.od, wl.handle, env.stream);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  epResult_t a = takeAsync(fc);
  if (nrecv > 0) {
    EXPECT_TRUE(isRefusal(r) || (r == epSuccess && isRefusal(a)))
        << "capacity " << nrecv - 1 << " < " << nrecv << " rows: call -> " << epTestErrText(r, fc) << ", async -> "
        << epTestErrText(a, fc);
  }
  o.expectGuardsUntouched("mode a, capacity = rows - 1");
}

// ---------------------------------------------------------------- device-detected (fault comm)
TEST_F(HtBadInputFault, ExpertIdOutOfRangeReportedAfterTheCall) {
  HtEnv& env = htEnv();
  Workload wl;
  wl.setUp(fc, 19);
  if (HasFatalFailure()) return;
  for (int64_t bad : {(int64_t)wl.E, (int64_t)wl.E + 1000, (int64_t)-2, (int64_t)-1000000}) {
    SCOPED_TRACE("bad expert id " + std::to_string(bad));
    std::vector<int64_t> ids = wl.all[wl.me].topkIdx;
    ids[(size_t)(wl.T / 2) * wl.K + 3] = bad;  // every rank has one bad id
    epTestDevBuf didx, inRank, perRank;
    EP_HT_ASSERT_CUDA(didx.upload(ids));
    EP_HT_ASSERT_CUDA(inRank.alloc((size_t)wl.T * wl.R, 64));
    EP_HT_ASSERT_CUDA(perRank.alloc((size_t)wl.R * 4, 64));
    EP_HT_ASSERT_CUDA(inRank.poison(0xEE, env.stream));
    EP_HT_ASSERT_CUDA(perRank.poison(0xEE, env.stream));
    epResult_t r = epGetDispatchLayout(fc, didx.p, epInt64, wl.T, wl.K, wl.E, perRank.as<int>(), nullptr, nullptr,
                                       inRank.as<uint8_t>(), env.stream);
    EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
    epResult_t a = takeAsync(fc);
    EXPECT_TRUE(r == epSuccess ? isRefusal(a) : isRefusal(r))
        << "layout with a bad id: call -> " << epTestErrText(r, fc) << ", async -> " << epTestErrText(a, fc);
    std::vector<uint8_t> h;
    EP_HT_ASSERT_CUDA(inRank.download(&h));
    epTestCheck chk;
    epTestCheckUntouched(h.data(), inRank.bytes, inRank.total(), 0xEE, "isTokenInRank guard", &chk);
    EP_HT_ASSERT_CUDA(perRank.download(&h));
    epTestCheckUntouched(h.data(), perRank.bytes, perRank.total(), 0xEE, "numTokensPerRank guard", &chk);
    EXPECT_TRUE(chk.ok()) << chk.summary();

    // Through notify (internal layout); mode a synchronises, so the error may come back directly.
    epDispatchInput_t in = wl.in;
    in.topkIdx = didx.p;
    int nrecv = -1;
    std::vector<int> perExpert(wl.E / wl.R);
    r = epDispatchNotify(fc, &in, wl.handle, &nrecv, perExpert.data(), env.stream);
    EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
    a = takeAsync(fc);
    EXPECT_TRUE(isRefusal(r) || (r == epSuccess && isRefusal(a)))
        << "notify with a bad id: call -> " << epTestErrText(r, fc) << ", async -> " << epTestErrText(a, fc);
  }
  expectDispatchStillCorrect(fc, wl, env.stream, "dispatch after the bad-id errors");
}

TEST_F(HtBadInputFault, CapacityInsufficientModeBDetectedOnDeviceNoOutOfBoundsWrites) {
  HtEnv& env = htEnv();
  Workload wl;
  wl.setUp(fc, 20);
  if (HasFatalFailure()) return;
  const int cap = wl.ref.numRecv / 2;  // every rank overflows (each receives > 1 row)
  Outs o;
  o.alloc(cap, 16, wl.H, wl.K, env.stream);
  EP_HT_ASSERT_OK(epDispatchNotify(fc, &wl.in, wl.handle, nullptr, nullptr, env.stream), fc);
  epResult_t r = epDispatch(fc, &wl.in, &o.od, wl.handle, env.stream);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  epResult_t a = takeAsync(fc);
  EXPECT_EQ(epSuccess, r) << "mode b must not synchronise to find out: " << epTestErrText(r, fc);
  EXPECT_EQ(epInvalidUsage, a) << "capacity " << cap << " < " << wl.ref.numRecv
                               << " rows: expected epInvalidUsage from epCommGetAsyncError, got " << epTestErrText(a, fc);
  o.expectGuardsUntouched("mode b, capacity = rows / 2");
  expectDispatchStillCorrect(fc, wl, env.stream, "dispatch after the overflow");
}


// ---------------------------------------------------------------- registered buffers (direct path)
// Registers every output of `o` (collective: same order on every rank).
void registerOuts(HtRegs& regs, Outs& o, epComm_t comm) {
  for (epTestDevBuf* b : {&o.x, &o.idx, &o.w, &o.src}) EP_HT_ASSERT_OK(regs.add(b->p, b->total()), comm);
}

// Mode-b dispatch into `o`; rows bitwise against the reference, guards
// untouched, no device error, and the path taken is `wantDirect`.
void dispatchChecked(epComm_t comm, Workload& wl, Outs& o, cudaStream_t st, int wantDirect, const char* when) {
  EP_HT_ASSERT_OK(epDispatchNotify(comm, &wl.in, wl.handle, nullptr, nullptr, st), comm);
  EP_HT_ASSERT_OK(epDispatch(comm, &wl.in, &o.od, wl.handle, st), comm);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
  EXPECT_EQ(epSuccess, takeAsync(comm)) << when;
  EXPECT_EQ(htExpectedPath(comm, wantDirect), epHtLastCallDirect(comm, EP_HT_KIND_DISPATCH)) << when << ": path (1: direct)";
  std::vector<uint8_t> hx, hi, hw, hs, hn;
  EP_HT_ASSERT_CUDA(o.x.download(&hx));
  EP_HT_ASSERT_CUDA(o.idx.download(&hi));
  EP_HT_ASSERT_CUDA(o.w.download(&hw));
  EP_HT_ASSERT_CUDA(o.src.download(&hs));
  EP_HT_ASSERT_CUDA(o.n.download(&hn));
  epTestHtDispatchGot got;
  memcpy(&got.numRecv, hn.data(), 4);
  got.x = hx.data();
  got.topkIdx = (const int32_t*)hi.data();
  got.topkWeights = (const float*)hw.data();
  got.srcIdx = (const int32_t*)hs.data();
  epTestCheck chk;
  epTestCheckDispatch(wl.ref, wl.ps, wl.K, got, true, &chk);
  EXPECT_TRUE(chk.ok()) << when << ": " << chk.summary();
  o.expectGuardsUntouched(when);
}

TEST(HtBadInputRegister, RefusesBadRegionsAndKeepsWorking) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  epComm_t comm = env.comm;
  void* h = &env;
  // Same calls on every rank: all ranks fail (or succeed) together.
  EXPECT_REFUSED(epCommRegister(comm, nullptr, 4096, &h), comm);
  EXPECT_EQ(nullptr, h) << "a failed registration leaves *handle NULL";
  epTestDevBuf a;
  EP_HT_ASSERT_CUDA(a.alloc(1 << 20));
  EXPECT_REFUSED(epCommRegister(comm, a.p, 0, &h), comm);
  std::vector<char> host(4096);
  EXPECT_REFUSED(epCommRegister(comm, host.data(), host.size(), &h), comm);
  EXPECT_NE(std::string::npos, std::string(epGetLastError(comm)).find("not device memory")) << epGetLastError(comm);
  void* managed = nullptr;
  EP_HT_ASSERT_CUDA(cudaMallocManaged(&managed, 4096));
  EXPECT_REFUSED(epCommRegister(comm, managed, 4096, &h), comm);
  EP_HT_ASSERT_CUDA(cudaFree(managed));
  // Past the end of its allocation.
  EXPECT_REFUSED(epCommRegister(comm, a.as<char>() + 4096, (size_t)64 << 20, &h), comm);
  EXPECT_NE(std::string::npos, std::string(epGetLastError(comm)).find("past the end")) << epGetLastError(comm);
  // Overlap with a live registration; then a clean deregistration, and no second one.
  void* h1 = nullptr;
  EP_HT_ASSERT_OK(epCommRegister(comm, a.p, 1 << 19, &h1), comm);
  ASSERT_NE(nullptr, h1);
  EXPECT_REFUSED(epCommRegister(comm, a.as<char>() + 4096, 4096, &h), comm);
  EXPECT_NE(std::string::npos, std::string(epGetLastError(comm)).find("overlaps")) << epGetLastError(comm);
  // The second half of the same allocation is a separate, valid region (shares the peers' mapping).
  void* h2 = nullptr;
  EP_HT_ASSERT_OK(epCommRegister(comm, a.as<char>() + (1 << 19), 1 << 19, &h2), comm);
  EXPECT_EQ(epSuccess, epCommDeregister(comm, h1)) << epTestErrText(epSuccess, comm);
  EXPECT_REFUSED(epCommDeregister(comm, h1), comm);
  EXPECT_EQ(epSuccess, epCommDeregister(comm, h2)) << epTestErrText(epSuccess, comm);
  // The region can be registered again after all that.
  EP_HT_ASSERT_OK(epCommRegister(comm, a.p, a.bytes, &h1), comm);
  EXPECT_EQ(epSuccess, epCommDeregister(comm, h1));
}

// Outputs only partly in registered memory: every rank falls back to the
// ring path (correct rows); all registered: the direct path, same rows.
TEST(HtBadInputRegister, PartlyRegisteredOutputsFallBackToTheRingPath) {
  EP_HT_REQUIRE_GPU();
  HtEnv& env = htEnv();
  epComm_t comm = env.comm;
  Workload wl;
  wl.setUp(comm, 31);
  if (HasFatalFailure()) return;
  Outs o;
  o.alloc(wl.T * wl.R, 2, wl.H, wl.K, env.stream);
  HtRegs regs(comm);
  EP_HT_ASSERT_OK(regs.add(o.x.p, o.x.total()), comm);
  dispatchChecked(comm, wl, o, env.stream, 0, "recvX registered, metadata not: ring path");
  for (epTestDevBuf* b : {&o.idx, &o.w, &o.src}) {
    EP_HT_ASSERT_CUDA(b->poison(0xEE, env.stream));
    EP_HT_ASSERT_OK(regs.add(b->p, b->total()), comm);
  }
  EP_HT_ASSERT_CUDA(o.x.poison(0xEE, env.stream));
  dispatchChecked(comm, wl, o, env.stream, 1, "all outputs registered: direct path");
}

// Rank 0 passes registered outputs, the others unregistered ones: the
// kernels see it, every rank gets epInvalidUsage, nothing is written, and
// both paths work afterwards.
TEST_F(HtBadInputFault, RegisteredOnOneRankOnlyIsAPathMismatchOnEveryRank) {
  HtEnv& env = htEnv();
  if (env.nranks < 2) GTEST_SKIP() << "needs >= 2 ranks: a rank on each path";
  Workload wl;
  wl.setUp(fc, 32);
  if (HasFatalFailure()) return;
  Outs reg, plain;
  reg.alloc(wl.T * wl.R, 2, wl.H, wl.K, env.stream);
  plain.alloc(wl.T * wl.R, 2, wl.H, wl.K, env.stream);
  HtRegs regs(fc);
  registerOuts(regs, reg, fc);
  if (HasFatalFailure()) return;
  Outs& mine = env.rank == 0 ? reg : plain;
  EP_HT_ASSERT_OK(epDispatchNotify(fc, &wl.in, wl.handle, nullptr, nullptr, env.stream), fc);
  epResult_t r = epDispatch(fc, &wl.in, &mine.od, wl.handle, env.stream);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  epResult_t a = takeAsync(fc);
  EXPECT_EQ(epSuccess, r) << epTestErrText(r, fc);
  EXPECT_EQ(epInvalidUsage, a) << "mixed paths: " << epTestErrText(a, fc);
  EXPECT_NE(std::string::npos, std::string(epGetLastError(fc)).find("registered")) << epGetLastError(fc);
  {
    // No row moved: the outputs still hold the poison.
    std::vector<uint8_t> hx;
    EP_HT_ASSERT_CUDA(mine.x.download(&hx));
    epTestCheck chk;
    epTestCheckUntouched(hx.data(), 0, mine.x.total(), 0xEE, "recvX after a path mismatch", &chk);
    EXPECT_TRUE(chk.ok()) << chk.summary();
  }
  dispatchChecked(fc, wl, plain, env.stream, 0, "ring path after the mismatch");
  for (epTestDevBuf* b : {&reg.x, &reg.idx, &reg.w, &reg.src}) EP_HT_ASSERT_CUDA(b->poison(0xEE, env.stream));
  dispatchChecked(fc, wl, reg, env.stream, 1, "direct path after the mismatch");
}

TEST_F(HtBadInputFault, CapacityInsufficientModeBDirectPath) {
  HtEnv& env = htEnv();
  Workload wl;
  wl.setUp(fc, 33);
  if (HasFatalFailure()) return;
  const int cap = wl.ref.numRecv / 2;
  Outs small, big;
  small.alloc(cap, 16, wl.H, wl.K, env.stream);
  big.alloc(wl.T * wl.R, 2, wl.H, wl.K, env.stream);
  HtRegs regs(fc);
  registerOuts(regs, small, fc);
  registerOuts(regs, big, fc);
  if (HasFatalFailure()) return;
  EP_HT_ASSERT_OK(epDispatchNotify(fc, &wl.in, wl.handle, nullptr, nullptr, env.stream), fc);
  epResult_t r = epDispatch(fc, &wl.in, &small.od, wl.handle, env.stream);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(env.stream));
  epResult_t a = takeAsync(fc);
  EXPECT_EQ(epSuccess, r) << epTestErrText(r, fc);
  EXPECT_EQ(1, epHtLastCallDirect(fc, EP_HT_KIND_DISPATCH));
  EXPECT_EQ(epInvalidUsage, a) << "capacity " << cap << " < " << wl.ref.numRecv << " rows: " << epTestErrText(a, fc);
  small.expectGuardsUntouched("direct path, capacity = rows / 2");
  dispatchChecked(fc, wl, big, env.stream, 1, "direct path after the overflow");
}

// Last: a rank that never joins a call must produce epTimeout naming the
// channel and the peer, never a hang. Leaves the fault comm unusable, so it
// is destroyed afterwards.
TEST_F(HtBadInputFault, ZZ_TimeoutWhenPeersNeverJoin) {
  HtEnv& env = htEnv();
  if (env.nranks < 2) GTEST_SKIP() << "needs >= 2 ranks: a peer that never joins";
  Workload wl;
  wl.setUp(fc, 21);
  if (HasFatalFailure()) return;
  int nrecv = -1;
  notifyHostSync(fc, wl, env.stream, &nrecv);
  if (HasFatalFailure()) return;
  Outs o;
  o.alloc(std::max(nrecv, 1), 4, wl.H, wl.K, env.stream);
  if (env.rank == 0) {
    // Cached dispatch on rank 0 only: its receivers wait for peers that never send.
    epResult_t r = epDispatch(fc, &wl.in, &o.od, wl.handle, env.stream);
    cudaError_t ce = cudaStreamSynchronize(env.stream);
    EXPECT_EQ(cudaSuccess, ce) << "a timeout must end the kernel cleanly: " << cudaGetErrorString(ce);
    epResult_t a = takeAsync(fc);
    EXPECT_TRUE(r == epTimeout || a == epTimeout) << "call -> " << epTestErrText(r, fc) << ", async -> " << epTestErrText(a, fc);
    std::string msg = epGetLastError(fc);
    for (char& ch : msg) ch = (char)tolower((unsigned char)ch);
    EXPECT_NE(std::string::npos, msg.find("channel")) << "the timeout message should name the channel: " << msg;
    EXPECT_NE(std::string::npos, msg.find("peer")) << "the timeout message should name the peer: " << msg;
    o.expectGuardsUntouched("timed-out dispatch");
  }
  htResetFaultComm();
}

// The same on the direct path: rank 0's kernel waits for the peers' path
// flags, which never come.
TEST_F(HtBadInputFault, ZZ_TimeoutWhenPeersNeverJoinDirect) {
  HtEnv& env = htEnv();
  if (env.nranks < 2) GTEST_SKIP() << "needs >= 2 ranks: a peer that never joins";
  Workload wl;
  wl.setUp(fc, 34);
  if (HasFatalFailure()) return;
  int nrecv = -1;
  notifyHostSync(fc, wl, env.stream, &nrecv);
  if (HasFatalFailure()) return;
  Outs o;
  o.alloc(std::max(nrecv, 1), 4, wl.H, wl.K, env.stream);
  HtRegs regs(fc);
  registerOuts(regs, o, fc);
  if (HasFatalFailure()) return;
  if (env.rank == 0) {
    epResult_t r = epDispatch(fc, &wl.in, &o.od, wl.handle, env.stream);
    cudaError_t ce = cudaStreamSynchronize(env.stream);
    EXPECT_EQ(cudaSuccess, ce) << "a timeout must end the kernel cleanly: " << cudaGetErrorString(ce);
    EXPECT_EQ(1, epHtLastCallDirect(fc, EP_HT_KIND_DISPATCH));
    epResult_t a = takeAsync(fc);
    EXPECT_TRUE(r == epTimeout || a == epTimeout) << "call -> " << epTestErrText(r, fc) << ", async -> " << epTestErrText(a, fc);
    std::string msg = epGetLastError(fc);
    EXPECT_NE(std::string::npos, msg.find("channel")) << msg;
    EXPECT_NE(std::string::npos, msg.find("peer")) << msg;
    o.expectGuardsUntouched("timed-out direct dispatch");
  }
  regs.handles.clear();  // released by the comm's destruction below
  htResetFaultComm();
}

}  // namespace
