/*************************************************************************
 * epcomm unit tests: the whole verbs path on a fake NIC. Two ranks (one
 * process, CPU communicators with EP_EMULATE_NODES=2 so that they are on
 * different nodes) build the real IB backend: NIC choice, PD, CQ, one QP per
 * (peer, channel) connected through the bootstrap, window MRs exchanged;
 * host producers post put-with-signal through the real rings and proxy.
 * Checked: every byte arrives, a signal is never seen before its data
 * (adaptive-routing placement model on), imm signals applied by the
 * receiver's proxy, and no send queue ever overflows.
 *************************************************************************/
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "core/comm.h"
#include "core/cuda_util.h"
#include "tests/unit/ib_fake_verbs.h"
#include "transports/ib/ib_backend.h"
#include "transports/ib/ib_post.h"
#include "transports/proxy/proxy.h"
#include "transports/proxy/ring_alloc.h"

namespace {

constexpr int kHt = 2, kLl = 1, kCh = kHt + kLl;
constexpr int kOps = 600;       // per rank
constexpr uint32_t kBytes = 96; // per put
constexpr uint64_t kSec = 1000000000ull;

struct Rank {
  epComm* comm = nullptr;
  std::unique_ptr<epNetBackend> backend;
  std::vector<char> data;      // window 0: [0, kOps*kBytes) source, [kOps*kBytes, 2x) where the peer writes
  std::vector<uint64_t> sig;   // window 1: one counter per channel
  std::unique_ptr<epNetWindowTable> table;
  std::vector<epNetRingMem> rings;
  std::unique_ptr<epProxy> proxy;
  epResult_t res = epSuccess;
};

void runRank(Rank& R, int mode, int ar, std::atomic<int>* failures) {
  const int me = R.comm->rank, peer = 1 - me;
  epIbBackendConfig cfg;
  cfg.ibv = fakeib::table();
  cfg.sysfsRoot = "/nonexistent";
  cfg.signalMode = mode;
  cfg.adaptiveRouting = ar;
  cfg.maxInflight = 16;  // small, so that flow control is exercised
  cfg.maxChunk = 40;     // several writes per put
  if ((R.res = epIbBackendCreateWith(R.comm, kHt, kLl, cfg, &R.backend)) != epSuccess) return;
  R.data.assign(2 * kOps * kBytes, 0);
  R.sig.assign(kCh, 0);
  for (int i = 0; i < kOps; i++)
    for (uint32_t b = 0; b < kBytes; b++) R.data[i * kBytes + b] = (char)(me * 101 + i * 7 + b);
  if ((R.res = R.backend->registerWindow(0, R.data.data(), R.data.size(), false)) != epSuccess) return;
  if ((R.res = R.backend->registerWindow(1, R.sig.data(), R.sig.size() * 8, false)) != epSuccess) return;
  R.table.reset(new epNetWindowTable(2));
  R.table->publish(0, R.data.data(), R.data.size(), false, {R.data.size(), R.data.size()});
  R.table->publish(1, R.sig.data(), kCh * 8, false, {kCh * 8, kCh * 8});
  R.rings.resize(kCh);
  std::vector<epNetRing> views;
  for (int c = 0; c < kCh; c++) {
    if ((R.res = epNetRingAlloc(32, c, 2, false, &R.rings[c])) != epSuccess) return;
    R.rings[c].host.nwindows = 2;
    views.push_back(R.rings[c].host);
  }
  epProxyOptions opt;
  opt.rank = me;
  opt.bindNuma = false;
  R.proxy.reset(new epProxy(R.backend.get(), R.table.get(), views, opt));
  if ((R.res = R.proxy->start()) != epSuccess) return;
  for (int i = 0; i < kOps; i++) {
    epNetOpFields f{};
    f.op = EP_NET_OP_PUT_SIGNAL;
    f.peer = peer;
    f.srcWin = 0;
    f.srcOff = (uint64_t)i * kBytes;
    f.dstWin = 0;
    f.dstOff = (uint64_t)(kOps + i) * kBytes;
    f.bytes = kBytes;
    f.sigWin = 1;
    int c = i % kCh;
    f.sigSlot = (uint32_t)c;
    f.sigValue = 1;
    if (epNetRingPost(R.rings[c].host, f, 30 * kSec, nullptr) != EP_NET_POST_OK) failures->fetch_add(1);
  }
  // Receiver side: a counter that moved announces data that must already be there.
  const uint64_t perCh[kCh] = {(kOps + 2) / 3, (kOps + 1) / 3, kOps / 3};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    bool all = true;
    for (int c = 0; c < kCh; c++) {
      uint64_t seen = __atomic_load_n(&R.sig[c], __ATOMIC_ACQUIRE);
      if (seen > perCh[c]) failures->fetch_add(1000);  // more signals than puts
      for (uint64_t k = 0; k < seen; k++) {
        int i = (int)(k * kCh + c);  // the k-th op of channel c
        const char* got = &R.data[(kOps + i) * kBytes];
        for (uint32_t b = 0; b < kBytes; b++)
          if (got[b] != (char)(peer * 101 + i * 7 + b)) {
            failures->fetch_add(1);
            break;
          }
      }
      if (seen != perCh[c]) all = false;
    }
    if (all || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::yield();
  }
  for (int c = 0; c < kCh; c++)
    if (R.sig[c] != perCh[c]) failures->fetch_add(1);
  R.res = R.proxy->drain(30000);
}

void runPair(int mode, int ar) {
  if (epCudaDeviceCount() > 0) GTEST_SKIP() << "CUDA device present: this fake-NIC case runs GPU-less ranks";
  fakeib::DevCfg d;
  d.name = "mlx5_0";
  fakeib::PortCfg p;
  p.gids.push_back(fakeib::gidLinkLocal(1));
  d.ports.push_back(p);
  fakeib::reset({d});
  fakeib::setAdaptiveRouting(ar == 1);
  epComm_t comms[2];
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.emulateNodes = 2;  // two nodes of one rank: every peer is remote
  cfg.bootstrapTimeoutMs = 10000;
  ASSERT_EQ(epCommInitAll(comms, 2, nullptr, &cfg), epSuccess) << epGetLastError(nullptr);
  ASSERT_NE(comms[0]->rankNode[0], comms[0]->rankNode[1]);
  Rank R[2];
  std::atomic<int> failures{0};
  std::vector<std::thread> th;
  for (int r = 0; r < 2; r++) {
    R[r].comm = comms[r];
    th.emplace_back([&, r] { runRank(R[r], mode, ar, &failures); });
  }
  for (auto& t : th) t.join();
  for (int r = 0; r < 2; r++) {
    EXPECT_EQ(R[r].res, epSuccess) << "rank " << r << ": " << epGetLastError(nullptr);
    std::string msg;
    if (R[r].proxy) {
      EXPECT_EQ(R[r].proxy->error(&msg), epSuccess) << msg;
    }
  }
  EXPECT_EQ(failures.load(), 0);
  fakeib::Stats st = fakeib::stats();
  EXPECT_EQ(st.sqOverflows, 0u) << "in-flight limit let a send queue overflow";
  EXPECT_LE(st.maxOutstanding, 16);
  EXPECT_EQ(st.accessErrors, 0u) << "a write used a wrong key or went out of its window";
  EXPECT_EQ(st.badTransitions, 0u);
  EXPECT_EQ(fakeib::qpns().size(), (size_t)(2 * kCh + (mode == EP_IB_SIGNAL_IMM ? 2 : 0)))
      << "one QP per (remote peer, channel), plus the imm loopback QPs";
  for (int r = 0; r < 2; r++) {
    if (R[r].proxy) R[r].proxy->stop();
    R[r].proxy.reset();
    R[r].backend.reset();
    for (auto& ring : R[r].rings) epNetRingFree(&ring);
  }
  std::vector<std::thread> ds;
  for (int r = 0; r < 2; r++) ds.emplace_back([&, r] { epCommDestroy(comms[r]); });
  for (auto& t : ds) t.join();
}

TEST(IbLoopback, AtomicSignals) { runPair(EP_IB_SIGNAL_ATOMIC, 0); }
TEST(IbLoopback, AtomicSignalsAdaptiveRouting) { runPair(EP_IB_SIGNAL_ATOMIC, 1); }
TEST(IbLoopback, ImmSignals) { runPair(EP_IB_SIGNAL_IMM, 0); }
TEST(IbLoopback, ImmSignalsAdaptiveRouting) { runPair(EP_IB_SIGNAL_IMM, 1); }

}  // namespace
