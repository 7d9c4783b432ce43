/*************************************************************************
 * epcomm GPU suites: one HT round trip checked against the host reference.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/gpu/ht_case.h"

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "tests/common/dev_buffer.h"
#include "tests/common/dtype.h"
#include "tests/common/ht_check.h"
#include "tests/common/ht_reference.h"
#include "tests/common/payload.h"
#include "tests/gpu/ht_env.h"
#include "intranode/ht_direct.h"

namespace {
// Rows of guard after every output array; poison bytes: payload (NaN in
// BF16 and e4m3) and metadata (0xA5A5A5A5 is no valid id, count or -1).
const int kGuardRows = 3;
const uint8_t kPoisonRows = 0xFF;
const uint8_t kPoisonMeta = 0xA5;

struct Handle {
  epHtHandle_t h = nullptr;
  ~Handle() {
    if (h) epHtHandleDestroy(h);
  }
};

// Device outputs of one dispatch, each with its guard.
struct DispatchOut {
  int capacity = 0;
  size_t rb = 0, sb = 0;
  int K = 0, L = 0;
  epTestDevBuf x, scales, topkIdx, topkWeights, srcIdx, perExpert, numRecv;
  cudaError_t alloc(int cap, size_t rowBytes, size_t scaleBytes, int numTopk, int localExperts, bool topk,
                    bool src) {
    capacity = cap;
    rb = rowBytes;
    sb = scaleBytes;
    K = numTopk;
    L = localExperts;
    cudaError_t e = x.alloc(cap * rb, kGuardRows * rb);
    if (e == cudaSuccess && sb) e = scales.alloc(cap * sb, kGuardRows * sb);
    if (e == cudaSuccess && topk) e = topkIdx.alloc((size_t)cap * K * 4, (size_t)kGuardRows * K * 4);
    if (e == cudaSuccess && topk) e = topkWeights.alloc((size_t)cap * K * 4, (size_t)kGuardRows * K * 4);
    if (e == cudaSuccess && src) e = srcIdx.alloc((size_t)cap * 4, kGuardRows * 4);
    if (e == cudaSuccess) e = perExpert.alloc((size_t)L * 4, 64);
    if (e == cudaSuccess) e = numRecv.alloc(4, 64);
    return e;
  }
  cudaError_t poison(cudaStream_t s) {
    cudaError_t e = x.poison(kPoisonRows, s);
    for (epTestDevBuf* b : {&scales}) e = e == cudaSuccess ? b->poison(kPoisonRows, s) : e;
    for (epTestDevBuf* b : {&topkIdx, &topkWeights, &srcIdx, &perExpert, &numRecv})
      e = e == cudaSuccess ? b->poison(kPoisonMeta, s) : e;
    return e;
  }
  epDispatchOutput_t desc() const {
    epDispatchOutput_t o = EP_DISPATCH_OUTPUT_INITIALIZER;
    o.recvX = x.p;
    o.recvXScales = scales.p;
    o.recvTopkIdx = topkIdx.as<int32_t>();
    o.recvTopkWeights = topkWeights.as<float>();
    o.recvSrcIdx = srcIdx.as<int32_t>();
    o.recvCountPerExpert = perExpert.as<int32_t>();
    o.numRecvTokens = numRecv.as<int32_t>();
    o.capacity = capacity;
    return o;
  }
};

// Host copies of DispatchOut, checked against the reference; bytes past
// `valid` rows (up to the end of the guard) must still hold the poison.
struct DispatchHost {
  std::vector<uint8_t> x, scales, topkIdx, topkWeights, srcIdx, perExpert, numRecv;
};

void downloadAndCheck(const DispatchOut& d, const epTestHtRecvRef& ref, const epTestPayloadSpec& ps, int numRecvHost,
                      DispatchHost* h, const char* when) {
  EP_HT_ASSERT_CUDA(d.x.download(&h->x));
  EP_HT_ASSERT_CUDA(d.scales.download(&h->scales));
  EP_HT_ASSERT_CUDA(d.topkIdx.download(&h->topkIdx));
  EP_HT_ASSERT_CUDA(d.topkWeights.download(&h->topkWeights));
  EP_HT_ASSERT_CUDA(d.srcIdx.download(&h->srcIdx));
  EP_HT_ASSERT_CUDA(d.perExpert.download(&h->perExpert));
  EP_HT_ASSERT_CUDA(d.numRecv.download(&h->numRecv));
  int devCount;
  memcpy(&devCount, h->numRecv.data(), 4);
  EXPECT_EQ(ref.numRecv, devCount) << when << ": out.numRecvTokens";
  const int n = numRecvHost >= 0 ? numRecvHost : devCount;
  epTestHtDispatchGot got;
  got.numRecv = n;
  got.x = h->x.data();
  got.scales = d.sb ? h->scales.data() : nullptr;
  got.topkIdx = d.topkIdx.p ? (const int32_t*)h->topkIdx.data() : nullptr;
  got.topkWeights = d.topkWeights.p ? (const float*)h->topkWeights.data() : nullptr;
  got.srcIdx = d.srcIdx.p ? (const int32_t*)h->srcIdx.data() : nullptr;
  got.perExpert = (const int32_t*)h->perExpert.data();
  epTestCheck chk;
  epTestCheckDispatch(ref, ps, d.K, got, /*requireOrder=*/true, &chk);
  // Everything past the rows actually received -- the unused capacity (mode
  // b) and the guard -- must be untouched.
  const size_t rows = n < 0 ? 0 : (size_t)n;
  epTestCheckUntouched(h->x.data(), rows * d.rb, d.x.total(), kPoisonRows, "recvX past the received rows", &chk);
  if (d.sb)
    epTestCheckUntouched(h->scales.data(), rows * d.sb, d.scales.total(), kPoisonRows, "recvXScales tail", &chk);
  if (d.topkIdx.p)
    epTestCheckUntouched(h->topkIdx.data(), rows * d.K * 4, d.topkIdx.total(), kPoisonMeta, "recvTopkIdx tail", &chk);
  if (d.topkWeights.p)
    epTestCheckUntouched(h->topkWeights.data(), rows * d.K * 4, d.topkWeights.total(), kPoisonMeta,
                         "recvTopkWeights tail", &chk);
  if (d.srcIdx.p)
    epTestCheckUntouched(h->srcIdx.data(), rows * 4, d.srcIdx.total(), kPoisonMeta, "recvSrcIdx tail", &chk);
  epTestCheckUntouched(h->perExpert.data(), (size_t)d.L * 4, d.perExpert.total(), kPoisonMeta,
                       "recvCountPerExpert guard", &chk);
  epTestCheckUntouched(h->numRecv.data(), 4, d.numRecv.total(), kPoisonMeta, "numRecvTokens guard", &chk);
  EXPECT_TRUE(chk.ok()) << when << ": " << chk.summary();
}

void expectNoAsyncError(epComm_t comm, const char* when) {
  epResult_t a = epInternalError;
  ASSERT_EQ(epSuccess, epCommGetAsyncError(comm, &a));
  EXPECT_EQ(epSuccess, a) << when << ": device reported " << epTestErrText(a, comm);
}

void uploadTokens(const HtCase& c, const epTestPayloadSpec& ps, int me, int T, epTestDevBuf* dx, epTestDevBuf* ds,
                  long long* strideTok, long long* strideCol) {
  std::vector<uint8_t> x, sc;
  epTestMakeTokens(ps, me, T, &x, &sc);
  EP_HT_ASSERT_CUDA(dx->upload(x));
  *strideTok = *strideCol = 0;
  if (ps.type == epFloat8E4M3) {
    if (c.scalesColMajor) {
      std::vector<uint8_t> strided;
      *strideTok = 1;
      *strideCol = T;
      epTestStrideScales(sc, T, epTestScaleCols(ps), 1, T, &strided);
      sc.swap(strided);
    }
    EP_HT_ASSERT_CUDA(ds->upload(sc));
  }
}
}  // namespace

int htExpectedPath(epComm_t comm, int wantDirect) {
  int nodes = 1;
  if (epCommNodeCount(comm, &nodes) != epSuccess) nodes = 1;
  return nodes > 1 ? -1 : wantDirect;
}

void PrintTo(const HtCase& c, std::ostream* os) {
  *os << c.name << " (T=" << c.numTokens << " H=" << c.hidden << " K=" << c.numTopk << " E=" << c.numExperts
      << " " << epTestTypeName(c.xType) << " mode " << c.mode << ")";
}

void htRunCase(const HtCase& c) {
  HtEnv& env = htEnv();
  epComm_t comm = env.comm;
  cudaStream_t st = env.stream;
  const int R = env.nranks, me = env.rank;

  epTestRoutingSpec rs;
  rs.kind = c.routing;
  rs.zipfAlpha = c.zipfAlpha;
  rs.maskRate = c.maskRate;
  rs.numTokens = c.numTokens;
  rs.zeroTokenRank = c.zeroTokenRank == -2 ? R - 1 : c.zeroTokenRank;
  rs.numTopk = c.numTopk;
  rs.numExperts = htExpertsFor(R, c.numExperts);
  rs.seed = c.seed;
  const int E = rs.numExperts, K = c.numTopk, L = E / R, H = c.hidden;
  const std::vector<epTestRouting> all = epTestMakeAllRoutings(rs, R);
  const epTestRouting& mine = all[me];
  const int T = mine.numTokens;
  int worstRecv = 0;
  for (const auto& r : all) worstRecv += r.numTokens;

  epTestPayloadSpec ps;
  ps.type = c.xType;
  ps.scaleFormat = c.xType == epFloat8E4M3 ? c.scaleFormat : epScaleNone;
  ps.hidden = H;
  ps.seed = c.seed * 31 + 7;
  const size_t rb = epTestRowBytes(ps), sb = epTestScaleBytes(ps);

  // ---- inputs
  epTestDevBuf dx, ds, didx, dw;
  long long sTok = 0, sCol = 0;
  uploadTokens(c, ps, me, T, &dx, &ds, &sTok, &sCol);
  if (testing::Test::HasFatalFailure()) return;
  if (c.int32Idx)
    EP_HT_ASSERT_CUDA(didx.upload(epTestTopkIdx32(mine)));
  else
    EP_HT_ASSERT_CUDA(didx.upload(mine.topkIdx));
  EP_HT_ASSERT_CUDA(dw.upload(mine.topkWeights));
  if (T == 0) {
    // A rank without tokens still passes real (empty) buffers, as frameworks
    // usually do; NULL inputs with T = 0 are a separate question.
    for (epTestDevBuf* b : {&dx, &didx, &dw}) EP_HT_ASSERT_CUDA(b->alloc(0, 256));
    if (c.xType == epFloat8E4M3) EP_HT_ASSERT_CUDA(ds.alloc(0, 256));
  }
  const epDataType_t idxType = c.int32Idx ? epInt32 : epInt64;

  // ---- layout
  const epTestHtLayout lref = epTestHtLayoutRef(mine, R, env.nNodes);
  epTestDevBuf lRank, lNode, lExpert, lIn;
  EP_HT_ASSERT_CUDA(lRank.alloc((size_t)R * 4, 64));
  EP_HT_ASSERT_CUDA(lNode.alloc((size_t)env.nNodes * 4, 64));
  EP_HT_ASSERT_CUDA(lExpert.alloc((size_t)E * 4, 64));
  EP_HT_ASSERT_CUDA(lIn.alloc((size_t)T * R, 64));
  for (epTestDevBuf* b : {&lRank, &lNode, &lExpert, &lIn}) EP_HT_ASSERT_CUDA(b->poison(kPoisonMeta, st));
  EP_HT_ASSERT_OK(epGetDispatchLayout(comm, didx.p, idxType, T, K, E, lRank.as<int>(), lNode.as<int>(),
                                      lExpert.as<int>(), lIn.as<uint8_t>(), st),
                  comm);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
  expectNoAsyncError(comm, "layout");
  {
    std::vector<uint8_t> hr, hn, he, hi;
    EP_HT_ASSERT_CUDA(lRank.download(&hr));
    EP_HT_ASSERT_CUDA(lNode.download(&hn));
    EP_HT_ASSERT_CUDA(lExpert.download(&he));
    EP_HT_ASSERT_CUDA(lIn.download(&hi));
    epTestCheck chk;
    epTestCheckLayout(lref, (const int*)hr.data(), (const int*)hn.data(), (const int*)he.data(), hi.data(), &chk);
    epTestCheckUntouched(hr.data(), lRank.bytes, lRank.total(), kPoisonMeta, "numTokensPerRank guard", &chk);
    epTestCheckUntouched(hn.data(), lNode.bytes, lNode.total(), kPoisonMeta, "numTokensPerNode guard", &chk);
    epTestCheckUntouched(he.data(), lExpert.bytes, lExpert.total(), kPoisonMeta, "numTokensPerExpert guard", &chk);
    epTestCheckUntouched(hi.data(), lIn.bytes, lIn.total(), kPoisonMeta, "isTokenInRank guard", &chk);
    EXPECT_TRUE(chk.ok()) << "layout: " << chk.summary();
  }

  // ---- notify + dispatch
  const epTestHtRecvRef ref = epTestHtRecvRefCompute(all, me, c.alignment);
  Handle h;
  EP_HT_ASSERT_OK(epHtHandleCreate(comm, EP_HT_TEST_MAX_TOKENS, &h.h), comm);
  epDispatchInput_t in = EP_DISPATCH_INPUT_INITIALIZER;
  in.x = dx.p;
  in.xType = c.xType;
  in.xScales = ds.p;
  in.scaleFormat = ps.scaleFormat;
  in.scaleStrideToken = sTok;
  in.scaleStrideCol = sCol;
  in.numTokens = T;
  in.hidden = H;
  in.topkIdx = didx.p;
  in.topkIdxType = idxType;
  in.topkWeights = c.withTopk ? dw.as<float>() : nullptr;
  in.numTopk = K;
  in.numExperts = E;
  if (c.withLayout) {
    in.numTokensPerRank = lRank.as<int>();
    in.numTokensPerExpert = lExpert.as<int>();
    in.isTokenInRank = lIn.as<uint8_t>();
  }
  in.expertAlignment = c.alignment;
  in.numSms = c.numSms;

  DispatchOut out;
  int numRecvHost = -1;
  if (c.mode == 'b') {
    EP_HT_ASSERT_OK(epDispatchNotify(comm, &in, h.h, nullptr, nullptr, st), comm);
    EP_HT_ASSERT_CUDA(out.alloc(worstRecv, rb, sb, K, L, c.withTopk, c.withSrcIdx));
  } else {
    std::vector<int> perExpertHost(L, -7);
    int nrecv = -7;
    EP_HT_ASSERT_OK(epDispatchNotify(comm, &in, h.h, &nrecv, perExpertHost.data(), st), comm);
    EXPECT_EQ(ref.numRecv, nrecv) << "notify: rows to receive";
    EXPECT_EQ(ref.perExpertAligned, perExpertHost) << "notify: aligned per-local-expert counts";
    int hn = -7;
    EXPECT_EQ(epSuccess, epHtHandleNumRecv(h.h, &hn));
    EXPECT_EQ(ref.numRecv, hn) << "epHtHandleNumRecv after a host-synchronised notify";
    ASSERT_EQ(ref.numRecv, nrecv) << "cannot size the outputs";
    numRecvHost = nrecv;
    EP_HT_ASSERT_CUDA(out.alloc(nrecv, rb, sb, K, L, c.withTopk, c.withSrcIdx));
  }
  HtRegs regs(comm);  // after `out`: deregistered before it is freed
  if (c.direct) {
    for (epTestDevBuf* b : {&out.x, &out.scales, &out.topkIdx, &out.topkWeights, &out.srcIdx})
      if (b->p) EP_HT_ASSERT_OK(regs.add(b->p, b->total()), comm);
  }
  EP_HT_ASSERT_CUDA(out.poison(st));
  epDispatchOutput_t od = out.desc();
  EP_HT_ASSERT_OK(epDispatch(comm, &in, &od, h.h, st), comm);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
  expectNoAsyncError(comm, "dispatch");
  EXPECT_EQ(htExpectedPath(comm, c.direct ? 1 : 0), epHtLastCallDirect(comm, EP_HT_KIND_DISPATCH)) << "dispatch path (1: direct)";
  DispatchHost got;
  downloadAndCheck(out, ref, ps, numRecvHost, &got, c.mode == 'c' ? "dispatch (first, mode a)" : "dispatch");
  if (testing::Test::HasFatalFailure()) return;

  if (c.mode == 'c') {
    // Cached: new rows, same routing, no notify. Fresh bytes prove the rows moved again.
    epTestPayloadSpec ps2 = ps;
    ps2.seed = ps.seed ^ 0xc0ffee;
    uploadTokens(c, ps2, me, T, &dx, &ds, &sTok, &sCol);
    if (testing::Test::HasFatalFailure()) return;
    in.x = dx.p;
    in.xScales = ds.p;
    EP_HT_ASSERT_CUDA(out.poison(st));
    EP_HT_ASSERT_OK(epDispatch(comm, &in, &od, h.h, st), comm);
    EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
    expectNoAsyncError(comm, "cached dispatch");
    downloadAndCheck(out, ref, ps2, numRecvHost, &got, "cached dispatch (mode c)");
    if (testing::Test::HasFatalFailure()) return;
  }

  // ---- combine
  std::vector<int> cRank, cIdx;
  epTestRecvOrder(ref, c.withSrcIdx ? (const int32_t*)got.srcIdx.data() : nullptr, &cRank, &cIdx);
  std::vector<uint16_t> cx, b0, b1;
  epTestCombineInput(c.seed, me, cRank, cIdx, H, &cx);
  epTestDevBuf dcx, db0, db1, dout, doutw;
  HtRegs cregs(comm);
  if (c.direct) {
    // Never NULL (a rank may receive no rows), so every rank registers it.
    EP_HT_ASSERT_CUDA(dcx.alloc(cx.size() * 2, 256));
    if (!cx.empty()) EP_HT_ASSERT_CUDA(cudaMemcpy(dcx.p, cx.data(), cx.size() * 2, cudaMemcpyHostToDevice));
    EP_HT_ASSERT_OK(cregs.add(dcx.p, dcx.total()), comm);
  } else {
    EP_HT_ASSERT_CUDA(dcx.upload(cx));
  }
  if (c.bias) {
    epTestCombineBias(c.seed, me, 0, T, H, &b0);
    epTestCombineBias(c.seed, me, 1, T, H, &b1);
    EP_HT_ASSERT_CUDA(db0.upload(b0));
    EP_HT_ASSERT_CUDA(db1.upload(b1));
  }
  EP_HT_ASSERT_CUDA(dout.alloc((size_t)T * H * 2, kGuardRows * (size_t)H * 2));
  EP_HT_ASSERT_CUDA(dout.poison(kPoisonRows, st));
  if (c.withTopk) {
    EP_HT_ASSERT_CUDA(doutw.alloc((size_t)T * K * 4, kGuardRows * (size_t)K * 4));
    EP_HT_ASSERT_CUDA(doutw.poison(kPoisonMeta, st));
  }
  epCombineInput_t cin = EP_COMBINE_INPUT_INITIALIZER;
  cin.x = dcx.p;
  cin.topkWeights = c.withTopk ? out.topkWeights.as<float>() : nullptr;
  cin.bias0 = db0.p;
  cin.bias1 = db1.p;
  cin.hidden = H;
  cin.numSms = c.numSms;
  epCombineOutput_t cout = EP_COMBINE_OUTPUT_INITIALIZER;
  cout.out = dout.p;
  cout.outTopkWeights = doutw.as<float>();
  EP_HT_ASSERT_OK(epCombine(comm, &cin, &cout, h.h, st), comm);
  EP_HT_ASSERT_CUDA(cudaStreamSynchronize(st));
  expectNoAsyncError(comm, "combine");
  EXPECT_EQ(htExpectedPath(comm, c.direct ? 1 : 0), epHtLastCallDirect(comm, EP_HT_KIND_COMBINE)) << "combine path (1: direct)";
  {
    std::vector<double> cref, cabs;
    epTestHtCombineRef(all, me, H, c.seed, c.bias ? b0.data() : nullptr, c.bias ? b1.data() : nullptr, &cref, &cabs);
    std::vector<uint16_t> hout;
    EP_HT_ASSERT_CUDA(dout.download(&hout));
    epTestCheck chk;
    epTestCheckCombine(cref, cabs, hout.data(), H, &chk);
    epTestCheckUntouched((const uint8_t*)hout.data(), dout.bytes, dout.total(), kPoisonRows, "combine out guard", &chk);
    if (c.withTopk) {
      std::vector<float> wref = epTestHtCombineWeightsRef(mine), hw;
      EP_HT_ASSERT_CUDA(doutw.download(&hw));
      for (size_t i = 0; i < wref.size(); i++)
        if (memcmp(&hw[i], &wref[i], 4) != 0)
          chk.fail("outTopkWeights[token %zu][%zu] = %.9g, expected %.9g", i / K, i % K, hw[i], wref[i]);
      epTestCheckUntouched((const uint8_t*)hw.data(), doutw.bytes, doutw.total(), kPoisonMeta,
                           "outTopkWeights guard", &chk);
    }
    EXPECT_TRUE(chk.ok()) << "combine (tolerance |err| <= 2^-8|ref| + 2^-18 sum|terms|): " << chk.summary();
  }
}
