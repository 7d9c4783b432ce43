/*************************************************************************
 * epcomm GPU suite: 1000 back-to-back HT calls with stable results.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Two routings (two handles) alternate. Each iteration poisons every output,
 * then runs notify (mode b, no host sync) + dispatch, or a cached dispatch
 * (mode c) every third iteration, then combine. Results are compared ON THE
 * DEVICE after each call with golden outputs (the first iteration's outputs,
 * themselves verified bitwise / within tolerance against the host reference),
 * adding mismatches to a device counter, so the 1000 iterations run without
 * any host synchronisation; the counter is read once at the end. The second
 * test registers set 0's buffers only, so calls alternate between the direct
 * and the ring path.
 *************************************************************************/
#include <cmath>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "tests/common/dev_buffer.h"
#include "tests/common/device_ops.h"
#include "tests/common/ht_check.h"
#include "tests/common/ht_reference.h"
#include "tests/common/payload.h"
#include "tests/gpu/ht_case.h"
#include "tests/gpu/ht_env.h"
#include "intranode/ht_direct.h"

namespace {

const int kIters = 1000;

struct Set {
  std::vector<epTestRouting> all;
  epTestRouting routing;
  epTestHtRecvRef ref;
  epHtHandle_t handle = nullptr;
  epTestDevBuf x, idx, w;                              // inputs
  epTestDevBuf rx, rIdx, rW, rSrc, rCnt, rN, out, outW; // outputs
  epTestDevBuf gx, gIdx, gW, gSrc, gN, outRef, outTol, gOutW; // golden
  epDispatchInput_t in = EP_DISPATCH_INPUT_INITIALIZER;
  epDispatchOutput_t od = EP_DISPATCH_OUTPUT_INITIALIZER;
  epCombineInput_t cin = EP_COMBINE_INPUT_INITIALIZER;
  epCombineOutput_t cout = EP_COMBINE_OUTPUT_INITIALIZER;
  epTestDevBuf cx;
  ~Set() {
    if (handle) epHtHandleDestroy(handle);
  }
};

// mixed: set 0's outputs and combine input are registered (direct path),
// set 1's are not (ring path), so consecutive calls alternate between the
// two paths and their per-call handshakes. graph: the calls are captured
// once into a CUDA graph and replayed.
void stressRun(bool mixed, bool graph = false) {
  HtEnv& env = htEnv();
  const int R = env.nranks, me = env.rank, T = 256, H = 2048, K = 8, E = htExpertsFor(R, 64);
  cudaStream_t st = env.stream;
  epComm_t comm = env.comm;
  Set sets[2];
  HtRegs regs(comm);  // after `sets`: deregistered before the buffers are freed
  int worst = T * R;
  for (int s = 0; s < 2; s++) {
    Set& S = sets[s];
    epTestRoutingSpec rs;
    rs.numTokens = T;
    rs.numTopk = K;
    rs.numExperts = E;
    rs.maskRate = 0.05;
    rs.kind = s ? epTestRoutingKind::Hot : epTestRoutingKind::Uniform;
    rs.seed = 900 + s;
    S.all = epTestMakeAllRoutings(rs, R);
    S.routing = S.all[me];
    S.ref = epTestHtRecvRefCompute(S.all, me, 1);
    epTestPayloadSpec ps;
    ps.hidden = H;
    ps.seed = 1900 + s;
    std::vector<uint8_t> x;
    epTestMakeTokens(ps, me, T, &x, nullptr);
    EP_HT_ASSERT_CUDA(S.x.upload(x));
    EP_HT_ASSERT_CUDA(S.idx.upload(S.routing.topkIdx));
    EP_HT_ASSERT_CUDA(S.w.upload(S.routing.topkWeights));
    EP_HT_ASSERT_OK(epHtHandleCreate(comm, T, &S.handle), comm);
    EP_HT_ASSERT_CUDA(S.rx.alloc((size_t)worst * H * 2));
    EP_HT_ASSERT_CUDA(S.rIdx.alloc((size_t)worst * K * 4));
    EP_HT_ASSERT_CUDA(S.rW.alloc((size_t)worst * K * 4));
    EP_HT_ASSERT_CUDA(S.rSrc.alloc((size_t)worst * 4));
    EP_HT_ASSERT_CUDA(S.rCnt.alloc((size_t)(E / R) * 4));
    EP_HT_ASSERT_CUDA(S.rN.alloc(4));
    EP_HT_ASSERT_CUDA(S.out.alloc((size_t)T * H * 2));
    EP_HT_ASSERT_CUDA(S.outW.alloc((size_t)T * K * 4));
    S.in.x = S.x.p;
    S.in.numTokens = T;
    S.in.hidden = H;
    S.in.topkIdx = S.idx.p;
    S.in.topkIdxType = epInt64;
    S.in.topkWeights = S.w.as<float>();
    S.in.numTopk = K;
    S.in.numExperts = E;
    S.od.recvX = S.rx.p;
    S.od.recvTopkIdx = S.rIdx.as<int32_t>();
    S.od.recvTopkWeights = S.rW.as<float>();
    S.od.recvSrcIdx = S.rSrc.as<int32_t>();
    S.od.recvCountPerExpert = S.rCnt.as<int32_t>();
    S.od.numRecvTokens = S.rN.as<int32_t>();
    S.od.capacity = worst;
    S.cout.out = S.out.p;
    S.cout.outTopkWeights = S.outW.as<float>();
    if (mixed && s == 0)
      for (epTestDevBuf* b : {&S.rx, &S.rIdx, &S.rW, &S.rSrc}) EP_HT_ASSERT_OK(regs.add(b->p, b->total()), comm);
  }

  // Golden run: one checked round trip per set.
  for (int s = 0; s < 2; s++) {
    Set& S = sets[s];
    EP_HT_ASSERT_OK(epDispatchNotify(comm, &S.in, S.handle, nullptr, nullptr, st), comm);
    EP_HT_ASSERT_OK(epDispatch(comm, &S.in, &S.od, S.handle, st), comm);
    EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
    EXPECT_EQ(htExpectedPath(comm, mixed && s == 0 ? 1 : 0), epHtLastCallDirect(comm, EP_HT_KIND_DISPATCH)) << "set " << s << " path";
    const int n = S.ref.numRecv;
    std::vector<uint8_t> hx, hidx, hw, hsrc, hn;
    EP_HT_ASSERT_CUDA(S.rx.download(&hx));
    EP_HT_ASSERT_CUDA(S.rIdx.download(&hidx));
    EP_HT_ASSERT_CUDA(S.rW.download(&hw));
    EP_HT_ASSERT_CUDA(S.rSrc.download(&hsrc));
    EP_HT_ASSERT_CUDA(S.rN.download(&hn));
    epTestHtDispatchGot got;
    memcpy(&got.numRecv, hn.data(), 4);
    got.x = hx.data();
    got.topkIdx = (const int32_t*)hidx.data();
    got.topkWeights = (const float*)hw.data();
    got.srcIdx = (const int32_t*)hsrc.data();
    epTestPayloadSpec ps;
    ps.hidden = H;
    ps.seed = 1900 + s;
    epTestCheck chk;
    epTestCheckDispatch(S.ref, ps, K, got, true, &chk);
    ASSERT_TRUE(chk.ok()) << "golden dispatch of set " << s << ": " << chk.summary();
    // Golden copies of the meaningful prefix.
    hx.resize((size_t)n * H * 2);
    hidx.resize((size_t)n * K * 4);
    hw.resize((size_t)n * K * 4);
    hsrc.resize((size_t)n * 4);
    hn.resize(4);
    EP_HT_ASSERT_CUDA(S.gx.upload(hx));
    EP_HT_ASSERT_CUDA(S.gIdx.upload(hidx));
    EP_HT_ASSERT_CUDA(S.gW.upload(hw));
    EP_HT_ASSERT_CUDA(S.gSrc.upload(hsrc));
    EP_HT_ASSERT_CUDA(S.gN.upload(hn));
    // Combine input from the GPU's order, reference and tolerance as floats.
    std::vector<int> cr, ci;
    epTestRecvOrder(S.ref, got.srcIdx, &cr, &ci);
    std::vector<uint16_t> cx;
    epTestCombineInput(77 + s, me, cr, ci, H, &cx);
    EP_HT_ASSERT_CUDA(S.cx.alloc(cx.size() * 2, 256));  // never NULL: every rank registers it
    if (!cx.empty()) EP_HT_ASSERT_CUDA(cudaMemcpy(S.cx.p, cx.data(), cx.size() * 2, cudaMemcpyHostToDevice));
    if (mixed && s == 0) EP_HT_ASSERT_OK(regs.add(S.cx.p, S.cx.total()), comm);
    S.cin.x = S.cx.p;
    S.cin.topkWeights = S.rW.as<float>();
    S.cin.hidden = H;
    std::vector<double> ref, sumAbs;
    epTestHtCombineRef(S.all, me, H, 77 + s, nullptr, nullptr, &ref, &sumAbs);
    std::vector<float> fref(ref.size()), ftol(ref.size());
    for (size_t i = 0; i < ref.size(); i++) {
      fref[i] = (float)ref[i];
      // The float copy of ref adds up to 2^-24|ref| of its own.
      ftol[i] = (float)(epTestCombineTolerance(ref[i], sumAbs[i]) + std::ldexp(std::fabs(ref[i]), -23));
    }
    EP_HT_ASSERT_CUDA(S.outRef.upload(fref));
    EP_HT_ASSERT_CUDA(S.outTol.upload(ftol));
    EP_HT_ASSERT_CUDA(S.gOutW.upload(epTestHtCombineWeightsRef(S.routing)));
  }

  epTestDevBuf counters;  // [0] dispatch bytes, [1] combine elements, [2] combined weights
  EP_HT_ASSERT_CUDA(counters.alloc(3 * sizeof(unsigned long long)));
  EP_HT_ASSERT_CUDA(cudaMemset(counters.p, 0, counters.bytes));
  unsigned long long* cnt = counters.as<unsigned long long>();
  // One iteration's stream work: poison, (notify,) dispatch, device-side
  // comparisons with the golden run, combine, comparisons.
  auto enqueue = [&](int it, int poison, bool notify) {
    Set& S = sets[it % 2];
    const size_t n = (size_t)S.ref.numRecv;
    for (epTestDevBuf* b : {&S.rx, &S.rIdx, &S.rW, &S.rSrc, &S.rN, &S.out, &S.outW})
      EP_HT_ASSERT_CUDA(b->poison(poison, st));
    if (notify) EP_HT_ASSERT_OK(epDispatchNotify(comm, &S.in, S.handle, nullptr, nullptr, st), comm);
    EP_HT_ASSERT_OK(epDispatch(comm, &S.in, &S.od, S.handle, st), comm);
    EP_HT_ASSERT_CUDA(epTestCountByteMismatch(S.rx.p, S.gx.p, n * H * 2, cnt, st));
    EP_HT_ASSERT_CUDA(epTestCountByteMismatch(S.rIdx.p, S.gIdx.p, n * K * 4, cnt, st));
    EP_HT_ASSERT_CUDA(epTestCountByteMismatch(S.rW.p, S.gW.p, n * K * 4, cnt, st));
    EP_HT_ASSERT_CUDA(epTestCountByteMismatch(S.rSrc.p, S.gSrc.p, n * 4, cnt, st));
    EP_HT_ASSERT_CUDA(epTestCountByteMismatch(S.rN.p, S.gN.p, 4, cnt, st));
    EP_HT_ASSERT_OK(epCombine(comm, &S.cin, &S.cout, S.handle, st), comm);
    EP_HT_ASSERT_CUDA(epTestCountBf16OutOfTol(S.out.p, S.outRef.as<float>(), S.outTol.as<float>(), (size_t)T * H,
                                              cnt + 1, st));
    EP_HT_ASSERT_CUDA(epTestCountByteMismatch(S.outW.p, S.gOutW.p, (size_t)T * K * 4, cnt + 2, st));
  };
  if (!graph) {
    for (int it = 0; it < kIters; it++) {
      enqueue(it, it % 3 == 1 ? 0x00 : 0xFF, it % 3 != 2);
      if (testing::Test::HasFatalFailure()) return;
    }
  } else {
    // Captured once (set 0: notify + dispatch + combine; set 1: cached
    // dispatch + combine), replayed kIters / 2 times: every replay must move
    // the rows again and wait for the peers' SAME replay (the call epochs
    // live on the device, so a replay cannot pass a wait on the previous
    // replay's flag).
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    EP_HT_ASSERT_CUDA(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    enqueue(0, 0xFF, true);
    enqueue(1, 0x00, false);
    const cudaError_t ce = cudaStreamEndCapture(st, &g);
    if (testing::Test::HasFatalFailure()) return;
    EP_HT_ASSERT_CUDA(ce);
    EP_HT_ASSERT_CUDA(cudaGraphInstantiate(&ge, g, 0));
    for (int it = 0; it < kIters / 2; it++) EP_HT_ASSERT_CUDA(cudaGraphLaunch(ge, st));
    EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
  }
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
  unsigned long long h[3];
  EP_HT_ASSERT_CUDA(cudaMemcpy(h, cnt, sizeof(h), cudaMemcpyDeviceToHost));
  EXPECT_EQ(0ull, h[0]) << "dispatch output bytes that differed from the verified first run over " << kIters
                        << " back-to-back iterations";
  EXPECT_EQ(0ull, h[1]) << "combine elements outside tolerance over " << kIters << " iterations";
  EXPECT_EQ(0ull, h[2]) << "combined top-k weight bytes that differed over " << kIters << " iterations";
  epResult_t async = epInternalError;
  ASSERT_EQ(epSuccess, epCommGetAsyncError(comm, &async));
  EXPECT_EQ(epSuccess, async) << epTestErrText(async, comm);
  EXPECT_EQ(htExpectedPath(comm, 0), epHtLastCallDirect(comm, EP_HT_KIND_COMBINE)) << "the last call (set 1) is on the ring path";
}

TEST(HtStress, BackToBack1000CallsStable) {
  EP_HT_REQUIRE_GPU();
  stressRun(false);
}

TEST(HtStress, BackToBack1000CallsStableDirectAndRingAlternating) {
  EP_HT_REQUIRE_GPU();
  stressRun(true);
}

TEST(HtStress, GraphReplayed500TimesStable) {
  EP_HT_REQUIRE_GPU();
  stressRun(false, true);
}

TEST(HtStress, GraphReplayed500TimesStableDirectAndRingAlternating) {
  EP_HT_REQUIRE_GPU();
  stressRun(true, true);
}

}  // namespace
