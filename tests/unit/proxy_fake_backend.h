/*************************************************************************
 * epcomm tests: a host-memory backend for exercising the proxy without a GPU
 * or NIC. Puts are memcpy between host buffers of simulated ranks; signals
 * are 64-bit adds/sets. Completion can be delayed, reordered across
 * channels and throttled (in-flight limit), to stress the proxy's slot
 * release and flow control.
 *************************************************************************/
#ifndef EP_TESTS_PROXY_FAKE_BACKEND_H_
#define EP_TESTS_PROXY_FAKE_BACKEND_H_

#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <vector>

#include "transports/proxy/net_backend.h"

class FakeBackend : public epNetBackend {
 public:
  struct Op {
    int channel;
    uint64_t ticket;
    epNetOpFields f;
  };
  /* base[win][rank]: where window `win` of each simulated rank lives. */
  std::vector<std::vector<char*>> base;
  int myRank = 0;
  int maxInflight = 1 << 30;     /* per channel; beyond it post() says epInProgress */
  std::atomic<bool> holdCompletions{false};/* true: progress() completes nothing */
  bool shuffle = true;           /* complete a random number of each channel's ops per pass */
  bool reorder = false;          /* complete a random op of the channel, not the oldest */
  std::atomic<epResult_t> failPostWith{epSuccess};
  std::atomic<uint64_t> posted{0}, completed{0};
  std::vector<Op> log;           /* every op, in the order post() accepted it (proxy thread only) */

  explicit FakeBackend(int nChannels) : q_(nChannels), rng_(1234) {}
  const char* name() const override { return "fake"; }
  epResult_t registerWindow(int, void*, size_t, bool) override { return epSuccess; }
  epResult_t deregisterWindow(int) override { return epSuccess; }
  epResult_t post(int ch, const epNetOpFields& f, uint64_t ticket) override {
    if (failPostWith != epSuccess) return failPostWith;
    if ((int)q_[ch].size() >= maxInflight) return epInProgress;
    // Data lands at post time, the signal at completion: RDMA order per channel.
    if (epNetOpHasData(f.op) && f.bytes)
      memcpy(base[f.dstWin][f.peer] + f.dstOff, base[f.srcWin][myRank] + f.srcOff, f.bytes);
    q_[ch].push_back(Op{ch, ticket, f});
    log.push_back(Op{ch, ticket, f});
    posted++;
    return epSuccess;
  }
  epResult_t progress(epNetCompletionSink* sink) override {
    if (holdCompletions) return epSuccess;
    for (size_t c = 0; c < q_.size(); c++) {
      // Per channel, complete in order (as a QP does); channels interleave randomly.
      if (q_[c].empty()) continue;
      size_t n = shuffle ? (rng_() % (q_[c].size() + 1)) : q_[c].size();
      for (size_t i = 0; i < n; i++) {
        size_t k = reorder ? rng_() % q_[c].size() : 0;
        Op op = q_[c][k];
        q_[c].erase(q_[c].begin() + k);
        if (epNetOpHasSignal(op.f.op)) {
          uint64_t* w = reinterpret_cast<uint64_t*>(base[op.f.sigWin][op.f.peer] + 8ull * op.f.sigSlot);
          if (op.f.sigOp == EP_NET_SIG_SET)
            __atomic_store_n(w, (uint64_t)(uint32_t)op.f.sigValue, __ATOMIC_RELEASE);
          else
            __atomic_fetch_add(w, (uint64_t)(int64_t)op.f.sigValue, __ATOMIC_RELEASE);
        }
        completed++;
        sink->complete(op.channel, op.ticket);
      }
    }
    return epSuccess;
  }
  bool idle() const override {
    for (auto& q : q_)
      if (!q.empty()) return false;
    return true;
  }

 private:
  std::vector<std::deque<Op>> q_;
  std::mt19937_64 rng_;
};

#endif  // EP_TESTS_PROXY_FAKE_BACKEND_H_
