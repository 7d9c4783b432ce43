/*************************************************************************
 * epcomm unit tests: proxy rings and the proxy engine with host threads.
 * Producers are host threads running the same claim/publish code the GPU
 * runs (net_ring.h); the consumer is the real epProxy over a host backend.
 *************************************************************************/
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "tests/unit/proxy_fake_backend.h"
#include "transports/proxy/proxy.h"
#include "transports/proxy/ring_alloc.h"

namespace {

constexpr uint64_t kSec = 1000000000ull;

struct Harness {
  int nChannels;
  std::vector<epNetRingMem> rings;
  epNetWindowTable windows{2};
  std::vector<std::vector<char>> mem;  // [win*2 + rank]
  FakeBackend backend;
  std::unique_ptr<epProxy> proxy;

  Harness(int channels, uint32_t cap, size_t winBytes = 1 << 16) : nChannels(channels), rings(channels),
                                                                     backend(channels) {
    for (int c = 0; c < channels; c++) EXPECT_EQ(epNetRingAlloc(cap, c, 2, false, &rings[c]), epSuccess);
    mem.assign(4, std::vector<char>(winBytes, 0));
    backend.base = {{mem[0].data(), mem[1].data()}, {mem[2].data(), mem[3].data()}};
    windows.publish(0, mem[0].data(), winBytes, false, {winBytes, winBytes});
    windows.publish(1, mem[2].data(), winBytes, false, {winBytes, winBytes});
    for (auto& r : rings) r.host.nwindows = 2;
  }
  ~Harness() {
    proxy.reset();
    for (auto& r : rings) epNetRingFree(&r);
  }
  void makeProxy() {
    std::vector<epNetRing> v;
    for (auto& r : rings) v.push_back(r.host);
    epProxyOptions opt;
    opt.bindNuma = false;
    proxy.reset(new epProxy(&backend, &windows, v, opt));
  }
  const epNetRing& ring(int c) { return rings[c].host; }
};

epNetOpFields signalOp(int peer, uint32_t slot, int32_t value) {
  epNetOpFields f{};
  f.op = EP_NET_OP_SIGNAL;
  f.peer = peer;
  f.sigWin = 1;
  f.sigSlot = slot;
  f.sigValue = value;
  return f;
}

// Many producers, two rings, small rings (many laps), completions delayed
// and reordered inside a channel: every descriptor arrives exactly once,
// intact, in each producer's order; no ring ever holds more than its capacity.
TEST(ProxyRing, MultiProducerExactlyOnceInOrder) {
  const int kProducers = 4, kPerProducer = 20000;
  const uint32_t kCap = 64;
  Harness h(2, kCap);
  h.backend.reorder = true;
  h.makeProxy();
  ASSERT_EQ(h.proxy->start(), epSuccess);
  std::vector<std::thread> th;
  std::atomic<int> failures{0};
  for (int p = 0; p < kProducers; p++) {
    th.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; i++) {
        epNetOpFields f{};
        f.op = EP_NET_OP_PUT;
        f.peer = 1;
        f.srcWin = 0;
        f.dstWin = 0;
        f.bytes = 0;
        f.srcOff = (uint64_t)p;          // producer id
        f.dstOff = (uint64_t)i;          // sequence
        f.sigValue = (int32_t)(p * 1000003 + i);  // integrity check of the whole slot
        if (epNetRingPost(h.ring(p % 2), f, 10 * kSec, nullptr) != EP_NET_POST_OK) failures++;
      }
    });
  }
  for (auto& t : th) t.join();
  ASSERT_EQ(failures.load(), 0);
  ASSERT_EQ(h.proxy->drain(10000), epSuccess);
  h.proxy->stop();
  ASSERT_EQ(h.proxy->error(), epSuccess);

  ASSERT_EQ(h.backend.log.size(), (size_t)kProducers * kPerProducer);
  std::map<std::pair<int, int>, int64_t> last;  // (channel, producer) -> last sequence
  std::vector<uint64_t> nextTicket(2, 0);
  for (auto& op : h.backend.log) {
    int p = (int)op.f.srcOff;
    int64_t i = (int64_t)op.f.dstOff;
    ASSERT_EQ(op.f.sigValue, (int32_t)(p * 1000003 + i)) << "torn or overwritten slot";
    ASSERT_EQ(op.channel, p % 2);
    ASSERT_EQ(op.ticket, nextTicket[op.channel]++) << "tickets consumed out of order";
    auto key = std::make_pair(op.channel, p);
    auto it = last.find(key);
    if (it != last.end()) {
      ASSERT_GT(i, it->second) << "producer order broken";
    }
    last[key] = i;
  }
  for (int c = 0; c < 2; c++) EXPECT_EQ(h.ring(c).ctl->released, nextTicket[c]);
  // The structural guarantee: consumed-but-unreleased never exceeds capacity.
  EXPECT_LE(h.proxy->stats().maxOutstanding, (uint64_t)kCap);
  EXPECT_EQ(h.backend.completed.load(), (uint64_t)kProducers * kPerProducer);
}

// A full ring blocks producers (they never write a slot), a producer that
// times out holds no ticket, and releasing the backend lets work resume.
TEST(ProxyRing, BackPressureAndTimeoutNeverOverflow) {
  const uint32_t kCap = 8;
  Harness h(1, kCap);
  h.backend.holdCompletions = true;
  h.makeProxy();
  ASSERT_EQ(h.proxy->start(), epSuccess);
  for (uint32_t i = 0; i < kCap; i++) ASSERT_EQ(epNetRingPost(h.ring(0), signalOp(1, 0, 1), kSec, nullptr), 0);
  // Ring full: the next post waits for credit and gives up without writing.
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(epNetRingPost(h.ring(0), signalOp(1, 0, 1), 50 * 1000000ull, nullptr), EP_NET_POST_TIMEOUT);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
  EXPECT_EQ(*h.ring(0).claim, (uint64_t)kCap) << "a timed-out producer must not hold a ticket";
  // The slot of ticket 0 still holds ticket 0's publish sequence (not overwritten).
  EXPECT_EQ(h.ring(0).slots[0].seq, 1u);
  // A producer blocked now proceeds as soon as the proxy releases.
  std::atomic<int> rc{-1};
  std::thread late([&] { rc = epNetRingPost(h.ring(0), signalOp(1, 0, 1), 10 * kSec, nullptr); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(rc.load(), -1) << "producer wrote into a full ring";
  h.backend.holdCompletions = false;
  late.join();
  EXPECT_EQ(rc.load(), EP_NET_POST_OK);
  ASSERT_EQ(h.proxy->drain(10000), epSuccess);
  uint64_t* sig = reinterpret_cast<uint64_t*>(h.mem[3].data());  // window 1 of rank 1, slot 0
  EXPECT_EQ(*sig, (uint64_t)kCap + 1);
  EXPECT_LE(h.proxy->stats().maxOutstanding, (uint64_t)kCap);
}

// The backend's in-flight limit (epInProgress) stalls the ring head without
// reordering or dropping anything.
TEST(ProxyRing, FlowControlKeepsOrder) {
  Harness h(1, 256);
  h.backend.maxInflight = 3;
  h.backend.shuffle = true;
  h.makeProxy();
  ASSERT_EQ(h.proxy->start(), epSuccess);
  const int n = 5000;
  for (int i = 0; i < n; i++) {
    epNetOpFields f = signalOp(1, 1, i);
    f.sigOp = EP_NET_SIG_SET;
    ASSERT_EQ(epNetRingPost(h.ring(0), f, 10 * kSec, nullptr), 0);
  }
  ASSERT_EQ(h.proxy->drain(10000), epSuccess);
  h.proxy->stop();
  ASSERT_EQ(h.backend.log.size(), (size_t)n);
  for (int i = 0; i < n; i++) ASSERT_EQ(h.backend.log[i].f.sigValue, i);
  EXPECT_GT(h.proxy->stats().busy, 0u) << "the in-flight limit was never hit: test is not testing it";
  uint64_t* sig = reinterpret_cast<uint64_t*>(h.mem[3].data() + 8);
  EXPECT_EQ(*sig, (uint64_t)(n - 1)) << "SET signals applied out of order";
}

// Puts carry data; a put-with-signal's signal is seen only after its data.
TEST(ProxyRing, PutSignalDataBeforeSignal) {
  Harness h(1, 32);
  h.makeProxy();
  ASSERT_EQ(h.proxy->start(), epSuccess);
  for (int i = 0; i < 1000; i++) {
    char* src = h.mem[0].data() + (i % 64) * 64;
    memset(src, (char)i, 64);
    epNetOpFields f{};
    f.op = EP_NET_OP_PUT_SIGNAL;
    f.peer = 1;
    f.srcWin = 0;
    f.srcOff = (uint64_t)(i % 64) * 64;
    f.dstWin = 0;
    f.dstOff = 8192 + (uint64_t)(i % 64) * 64;
    f.bytes = 64;
    f.sigWin = 1;
    f.sigSlot = 2;
    f.sigValue = 1;
    uint64_t t;
    ASSERT_EQ(epNetRingPost(h.ring(0), f, 10 * kSec, &t), 0);
    ASSERT_EQ(epNetRingWaitDone(h.ring(0), t, 10 * kSec), 0);
    // Completion = data landed and signal applied.
    ASSERT_EQ(h.mem[1][8192 + (i % 64) * 64 + 63], (char)i);
    ASSERT_EQ(*reinterpret_cast<uint64_t*>(h.mem[3].data() + 16), (uint64_t)i + 1);
  }
}

// A descriptor that passes encoding but not the window bounds is refused:
// the proxy fails, nothing is copied, and waiting producers are released.
TEST(ProxyRing, OutOfBoundsDescriptorIsFatalNotAWildWrite) {
  Harness h(1, 4, 4096);
  h.makeProxy();
  ASSERT_EQ(h.proxy->start(), epSuccess);
  epNetOpFields f{};
  f.op = EP_NET_OP_PUT;
  f.peer = 1;
  f.srcWin = 0;
  f.dstWin = 0;
  f.dstOff = 4000;
  f.bytes = 200;  // 4000 + 200 > 4096
  ASSERT_EQ(epNetRingPost(h.ring(0), f, kSec, nullptr), 0);
  for (int i = 0; i < 200 && h.proxy->error() == epSuccess; i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::string msg;
  EXPECT_EQ(h.proxy->error(&msg), epInvalidArgument);
  EXPECT_NE(msg.find("out of bounds"), std::string::npos) << msg;
  EXPECT_EQ(h.backend.posted.load(), 0u);
  // Producers stuck on a full ring give up at once instead of timing out.
  for (int i = 0; i < 3; i++) epNetRingPost(h.ring(0), signalOp(1, 0, 1), kSec, nullptr);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(epNetRingPost(h.ring(0), signalOp(1, 0, 1), 30 * kSec, nullptr), EP_NET_POST_ABORTED);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

// The consumer detects a slot written from a future lap (which the claim
// protocol makes impossible) instead of executing it.
TEST(ProxyRing, ConsumerDetectsOverwrite) {
  Harness h(1, 4);
  h.makeProxy();
  h.ring(0).slots[0].seq = 1 + 4;  // ticket 4's sequence while ticket 0 is expected
  bool did = false;
  EXPECT_EQ(h.proxy->step(&did), epInternalError);
  std::string msg;
  h.proxy->error(&msg);
  EXPECT_NE(msg.find("overflow"), std::string::npos) << msg;
}

TEST(ProxyRing, BackendFailureAbortsProducers) {
  Harness h(1, 2);
  h.backend.failPostWith = epRemoteError;
  h.makeProxy();
  ASSERT_EQ(h.proxy->start(), epSuccess);
  epNetRingPost(h.ring(0), signalOp(1, 0, 1), kSec, nullptr);
  epNetRingPost(h.ring(0), signalOp(1, 0, 1), kSec, nullptr);
  EXPECT_EQ(epNetRingPost(h.ring(0), signalOp(1, 0, 1), 30 * kSec, nullptr), EP_NET_POST_ABORTED);
  EXPECT_EQ(h.proxy->error(), epRemoteError);
}

TEST(ProxyRing, CapacityMustBePowerOfTwo) {
  epNetRingMem m;
  EXPECT_EQ(epNetRingAlloc(6, 0, 2, false, &m), epInvalidArgument);
  EXPECT_EQ(epNetRingAlloc(1, 0, 2, false, &m), epInvalidArgument);
  ASSERT_EQ(epNetRingAlloc(2, 0, 2, false, &m), epSuccess);
  epNetRingFree(&m);
}

}  // namespace
