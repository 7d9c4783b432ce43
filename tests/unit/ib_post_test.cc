/*************************************************************************
 * epcomm unit tests: verbs data path of one QP: op planning (chunking,
 * adaptive-routing ordering rule, signal forms), immediate encoding, and
 * the sender's in-flight accounting against a fake NIC.
 *************************************************************************/
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <cstring>
#include <vector>

#include "tests/unit/ib_fake_verbs.h"
#include "transports/ib/ib_post.h"
#include "transports/ib/ib_qp.h"

namespace {

epNetOpFields putSignal(uint32_t bytes, uint32_t sigOp = EP_NET_SIG_ADD) {
  epNetOpFields f{};
  f.op = EP_NET_OP_PUT_SIGNAL;
  f.peer = 1;
  f.srcWin = 0;
  f.dstWin = 0;
  f.bytes = bytes;
  f.sigWin = 1;
  f.sigSlot = 3;
  f.sigValue = 1;
  f.sigOp = sigOp;
  return f;
}

std::vector<epIbStep> plan(const epNetOpFields& f, bool ar, int mode, uint32_t chunk = 1 << 20) {
  epIbSendOptions o;
  o.adaptiveRouting = ar;
  o.signalMode = mode;
  o.maxChunk = chunk;
  epIbStep s[EP_IB_MAX_STEPS];
  int n = epIbPlan(f, o, s, EP_IB_MAX_STEPS);
  return n < 0 ? std::vector<epIbStep>() : std::vector<epIbStep>(s, s + n);
}

TEST(IbPost, PlanChunksData) {
  epNetOpFields f = putSignal(2500);
  f.op = EP_NET_OP_PUT;
  auto s = plan(f, false, EP_IB_SIGNAL_ATOMIC, 1000);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].off, 0u);
  EXPECT_EQ(s[1].off, 1000u);
  EXPECT_EQ(s[2].len, 500u);
  for (auto& x : s) EXPECT_EQ(x.kind, EP_IB_STEP_WRITE);
  f.bytes = 64 * 1000 + 1;  // 65 chunks > EP_IB_MAX_STEPS
  EXPECT_TRUE(plan(f, false, EP_IB_SIGNAL_ATOMIC, 1000).empty());
}

TEST(IbPost, PlanAtomicSignals) {
  auto s = plan(putSignal(100), false, EP_IB_SIGNAL_ATOMIC);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].kind, EP_IB_STEP_WRITE);
  EXPECT_EQ(s[1].kind, EP_IB_STEP_FETCH_ADD);
  EXPECT_FALSE(s[1].deferred) << "no AR: the RC QP orders the atomic after the data";
  s = plan(putSignal(100, EP_NET_SIG_SET), false, EP_IB_SIGNAL_ATOMIC);
  EXPECT_EQ(s[1].kind, EP_IB_STEP_WRITE_INLINE);
  // Adaptive routing: data stays plain writes, the signal waits for their completion.
  s = plan(putSignal(100), true, EP_IB_SIGNAL_ATOMIC);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].kind, EP_IB_STEP_WRITE);
  EXPECT_TRUE(s[1].deferred);
}

TEST(IbPost, PlanImmSignals) {
  auto s = plan(putSignal(100), false, EP_IB_SIGNAL_IMM);
  ASSERT_EQ(s.size(), 1u) << "no AR: the imm rides on the last data write";
  EXPECT_EQ(s[0].kind, EP_IB_STEP_WRITE_IMM);
  s = plan(putSignal(100), true, EP_IB_SIGNAL_IMM);
  ASSERT_EQ(s.size(), 2u) << "AR: plain data write, then a separate zero-byte write-with-imm";
  EXPECT_EQ(s[0].kind, EP_IB_STEP_WRITE);
  EXPECT_EQ(s[1].kind, EP_IB_STEP_IMM);
  EXPECT_FALSE(s[1].deferred) << "imm completion is ordered at the responder: no need to wait";
  epNetOpFields sig = putSignal(0);
  sig.op = EP_NET_OP_SIGNAL;
  s = plan(sig, false, EP_IB_SIGNAL_IMM);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].kind, EP_IB_STEP_IMM);
}

TEST(IbPost, ImmEncoding) {
  uint32_t imm, w, slot, op;
  int32_t v;
  for (int32_t value : {0, 1, -1, 32767, -32768, 1234}) {
    ASSERT_TRUE(epIbImmEncode(31, 1023, EP_NET_SIG_SET, value, &imm));
    epIbImmDecode(imm, &w, &slot, &op, &v);
    EXPECT_EQ(w, 31u);
    EXPECT_EQ(slot, 1023u);
    EXPECT_EQ(op, (uint32_t)EP_NET_SIG_SET);
    EXPECT_EQ(v, value);
  }
  EXPECT_FALSE(epIbImmEncode(32, 0, 0, 1, &imm));
  EXPECT_FALSE(epIbImmEncode(0, 1024, 0, 1, &imm));
  EXPECT_FALSE(epIbImmEncode(0, 0, 0, 40000, &imm));
}

// A connected QP pair on the fake NIC, windows as host buffers.
struct Pair {
  const epIbvFns* ibv;
  ibv_pd* pd;
  ibv_cq* cq;
  ibv_qp *a, *b;
  std::vector<char> src, dst;
  std::vector<uint64_t> sig;
  uint64_t scratch = 0;
  ibv_mr *srcMr, *dstMr, *sigMr, *scratchMr;
  std::vector<epIbWinKeys> keys;

  explicit Pair(int sqDepth) : src(1 << 16), dst(1 << 16), sig(64, 0), keys(EP_NET_MAX_WINDOWS) {
    ibv_context* ctx = fakeib::openOnly(fakeib::singlePortNic());
    ibv = fakeib::table();
    pd = ibv->allocPd(ctx);
    cq = ibv->createCq(ctx, 4096, nullptr, nullptr, 0);
    EXPECT_EQ(epIbQpCreate(ibv, pd, cq, cq, sqDepth, 64, &a), epSuccess);
    EXPECT_EQ(epIbQpCreate(ibv, pd, cq, cq, sqDepth, 64, &b), epSuccess);
    epIbQpParams p;
    epIbConnInfo ra, rb;
    ra.linkLayer = rb.linkLayer = IBV_LINK_LAYER_INFINIBAND;
    ra.mtu = rb.mtu = IBV_MTU_4096;
    ra.qpn = a->qp_num;
    rb.qpn = b->qp_num;
    EXPECT_EQ(epIbQpConnect(ibv, a, p, 0, rb), epSuccess);
    EXPECT_EQ(epIbQpConnect(ibv, b, p, 0, ra), epSuccess);
    srcMr = ibv->regMr(pd, src.data(), src.size(), 0);
    dstMr = ibv->regMr(pd, dst.data(), dst.size(), 0);
    sigMr = ibv->regMr(pd, sig.data(), sig.size() * 8, 0);
    scratchMr = ibv->regMr(pd, &scratch, 8, 0);
    // window 0 = data (local src, remote dst at rank 1), window 1 = signals
    keys[0].live = true;
    keys[0].localAddr = (uint64_t)(uintptr_t)src.data();
    keys[0].lkey = srcMr->lkey;
    keys[0].remoteAddr = {0, (uint64_t)(uintptr_t)dst.data()};
    keys[0].rkey = {0, dstMr->rkey};
    keys[1].live = true;
    keys[1].remoteAddr = {0, (uint64_t)(uintptr_t)sig.data()};
    keys[1].rkey = {0, sigMr->rkey};
  }
};

struct Sink : epNetCompletionSink {
  std::vector<uint64_t> done;
  void complete(int, uint64_t t) override { done.push_back(t); }
};

void pump(Pair& p, epIbQpSender& s, Sink& sink, int rounds = 1000) {
  ibv_wc wc[16];
  for (int r = 0; r < rounds && !s.idle(); r++) {
    int n = p.ibv->pollCq(p.cq, 16, wc);
    for (int i = 0; i < n; i++) {
      ASSERT_EQ(wc[i].status, IBV_WC_SUCCESS);
      ASSERT_EQ(s.onCompletion(wc[i].wr_id, &sink), epSuccess);
    }
  }
}

TEST(IbPost, InflightLimitNeverOverflowsTheSendQueue) {
  const int kDepth = 8;
  Pair p(kDepth);
  epIbSendOptions o;
  o.maxInflight = kDepth;
  o.maxChunk = 256;
  epIbQpSender s(p.ibv, p.a, 7, 1, 0, o, &p.keys, (uint64_t)(uintptr_t)&p.scratch, p.scratchMr->lkey);
  Sink sink;
  // 1000-byte put + signal = 4 writes + 1 atomic = 5 WRs: only one fits in 8.
  for (int i = 0; i < 64; i++) memset(p.src.data() + i * 1000, i + 1, 1000);
  int accepted = 0, refused = 0;
  for (int i = 0; i < 64;) {
    epNetOpFields f = putSignal(1000);
    f.srcOff = f.dstOff = (uint64_t)i * 1000;
    epResult_t r = s.post(f, (uint64_t)i);
    if (r == epInProgress) {
      refused++;
      EXPECT_GT(s.inflight() + 5, kDepth);
      ibv_wc wc[16];
      int n = p.ibv->pollCq(p.cq, 16, wc);
      for (int k = 0; k < n; k++) ASSERT_EQ(s.onCompletion(wc[k].wr_id, &sink), epSuccess);
      continue;
    }
    ASSERT_EQ(r, epSuccess);
    ASSERT_LE(s.inflight(), kDepth);
    accepted++;
    i++;
  }
  pump(p, s, sink);
  EXPECT_EQ(accepted, 64);
  EXPECT_GT(refused, 0) << "the limit was never reached: the test does not test it";
  fakeib::Stats st = fakeib::stats();
  EXPECT_EQ(st.sqOverflows, 0u);
  EXPECT_LE(st.maxOutstanding, kDepth);
  EXPECT_EQ(st.accessErrors, 0u);
  ASSERT_EQ(sink.done.size(), 64u);
  for (size_t i = 0; i < 64; i++) EXPECT_EQ(sink.done[i], i) << "one QP completes in order";
  EXPECT_EQ(p.sig[3], 64u);
  for (int i = 0; i < 64; i++) ASSERT_EQ(p.dst[i * 1000 + 999], (char)(i + 1));
  // Only the last WR of each op was signalled: 64 completions for 320 WRs.
  EXPECT_EQ(st.posts, 64u * 5);
}

// With adaptive routing the fake fabric delays plain-write placement; the
// atomic signal must still never be seen before its data.
TEST(IbPost, AdaptiveRoutingSignalAfterData) {
  Pair p(64);
  fakeib::setAdaptiveRouting(true);
  epIbSendOptions o;
  o.adaptiveRouting = true;
  o.maxInflight = 64;
  epIbQpSender s(p.ibv, p.a, 1, 1, 0, o, &p.keys, (uint64_t)(uintptr_t)&p.scratch, p.scratchMr->lkey);
  Sink sink;
  ibv_wc wc[16];
  for (int i = 0; i < 200; i++) {
    p.src[i] = (char)(i + 1);
    epNetOpFields f = putSignal(1);
    f.srcOff = f.dstOff = (uint64_t)i;
    f.sigOp = EP_NET_SIG_SET;
    f.sigValue = i + 1;
    while (s.post(f, (uint64_t)i) == epInProgress) {
      int n = p.ibv->pollCq(p.cq, 16, wc);
      for (int k = 0; k < n; k++) ASSERT_EQ(s.onCompletion(wc[k].wr_id, &sink), epSuccess);
    }
    // Each time the signal word moves, every byte it announces must be there.
    for (int r = 0; r < 3; r++) {
      int n = p.ibv->pollCq(p.cq, 16, wc);
      for (int k = 0; k < n; k++) ASSERT_EQ(s.onCompletion(wc[k].wr_id, &sink), epSuccess);
      uint64_t seen = __atomic_load_n(&p.sig[3], __ATOMIC_ACQUIRE);
      for (uint64_t j = 0; j < seen; j++) ASSERT_EQ(p.dst[j], (char)(j + 1)) << "signal " << seen << " before data " << j;
    }
  }
  pump(p, s, sink);
  EXPECT_EQ(p.sig[3], 200u);
  EXPECT_EQ(sink.done.size(), 200u);
}

// The same fabric without the deferral rule shows the hazard the rule exists
// for: the fake really reorders, so the test above is meaningful.
TEST(IbPost, AdaptiveRoutingHazardIsReal) {
  Pair p(256);
  fakeib::setAdaptiveRouting(true);
  epIbSendOptions o;
  o.adaptiveRouting = false;  // wrong on purpose: signals are not held back
  o.maxInflight = 256;
  epIbQpSender s(p.ibv, p.a, 1, 1, 0, o, &p.keys, (uint64_t)(uintptr_t)&p.scratch, p.scratchMr->lkey);
  Sink sink;
  for (int i = 0; i < 100; i++) {
    p.src[i] = 1;
    epNetOpFields f = putSignal(1);
    f.srcOff = f.dstOff = (uint64_t)i;
    ASSERT_EQ(s.post(f, (uint64_t)i), epSuccess);
  }
  pump(p, s, sink);
  EXPECT_GT(fakeib::stats().reorderedPlacements, 0u);
}

TEST(IbPost, ImmSignalsAreDeliveredAsImmediates) {
  Pair p(64);
  epIbSendOptions o;
  o.signalMode = EP_IB_SIGNAL_IMM;
  o.maxInflight = 64;
  for (int i = 0; i < 8; i++) {
    ibv_recv_wr r, *bad;
    memset(&r, 0, sizeof(r));
    ASSERT_EQ(p.ibv->postRecv(p.b, &r, &bad), 0);
  }
  epIbQpSender s(p.ibv, p.a, 1, 1, 0, o, &p.keys, (uint64_t)(uintptr_t)&p.scratch, p.scratchMr->lkey);
  Sink sink;
  epNetOpFields f = putSignal(10);
  f.sigValue = -7;
  ASSERT_EQ(s.post(f, 0), epSuccess);
  epNetOpFields g = f;
  g.sigValue = 40000;  // does not fit an immediate
  EXPECT_EQ(s.post(g, 1), epInvalidUsage);
  ibv_wc wc[16];
  bool gotImm = false;
  for (int r = 0; r < 100 && !(gotImm && s.idle()); r++) {
    int n = p.ibv->pollCq(p.cq, 16, wc);
    for (int k = 0; k < n; k++) {
      if (wc[k].opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
        uint32_t w, slot, op;
        int32_t v;
        epIbImmDecode(ntohl(wc[k].imm_data), &w, &slot, &op, &v);
        EXPECT_EQ(w, 1u);
        EXPECT_EQ(slot, 3u);
        EXPECT_EQ(v, -7);
        EXPECT_EQ(wc[k].qp_num, p.b->qp_num);
        gotImm = true;
      } else {
        ASSERT_EQ(s.onCompletion(wc[k].wr_id, &sink), epSuccess);
      }
    }
  }
  EXPECT_TRUE(gotImm);
  EXPECT_EQ(fakeib::stats().posts, 1u) << "data and signal fused into one write-with-imm";
}

TEST(IbPost, OpLargerThanTheInflightLimitIsRefusedNotStalled) {
  Pair p(4);
  epIbSendOptions o;
  o.maxInflight = 4;
  o.maxChunk = 100;
  epIbQpSender s(p.ibv, p.a, 1, 1, 0, o, &p.keys, (uint64_t)(uintptr_t)&p.scratch, p.scratchMr->lkey);
  EXPECT_EQ(s.post(putSignal(1000), 0), epInvalidUsage) << "10 writes + 1 atomic can never fit 4 slots";
  EXPECT_EQ(s.post(putSignal(300), 1), epSuccess) << "3 writes + 1 atomic fit exactly";
  EXPECT_EQ(fakeib::stats().posts, 4u);
}

TEST(IbPost, MismatchedCompletionIsAnError) {
  Pair p(8);
  epIbSendOptions o;
  epIbQpSender s(p.ibv, p.a, 1, 1, 0, o, &p.keys, (uint64_t)(uintptr_t)&p.scratch, p.scratchMr->lkey);
  Sink sink;
  EXPECT_EQ(s.onCompletion(((uint64_t)1 << 32) | 5, &sink), epInternalError);
}

}  // namespace
