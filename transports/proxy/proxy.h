/*************************************************************************
 * epcomm: the CPU proxy that executes GPU-posted network descriptors.
 * SPDX-License-Identifier: Apache-2.0
 *
 * One proxy (one thread) per GPU/rank, pinned to the GPU's NUMA node. Each
 * pass: for every channel ring, read published slots in ticket order,
 * decode, bounds-check against the window table and hand them to the
 * backend; then let the backend reap completions, which release ring slots
 * in ticket order (back-pressure: producers only get a ticket for a
 * released slot). A backend that is at its in-flight limit returns
 * epInProgress; the proxy keeps that op at the head of its ring and retries
 * it on the next pass, so order per ring is never broken.
 *
 * A malformed descriptor, a backend failure or a ring whose sequence shows
 * an overwrite (impossible by construction, checked anyway) is fatal: the
 * proxy records the first error, sets every ring's ctl->error so that
 * producers stop waiting, and stops executing.
 *************************************************************************/
#ifndef EP_TRANSPORT_PROXY_H_
#define EP_TRANSPORT_PROXY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "epcomm.h"
#include "transports/proxy/net_backend.h"
#include "transports/proxy/net_ring.h"
#include "transports/proxy/net_window.h"

struct epProxyOptions {
  int rank = -1;        /* for log lines */
  int cudaDev = -1;     /* proxy thread's CUDA device; -1: none (CPU tests) */
  bool bindNuma = true; /* pin the thread to cudaDev's NUMA node (hwloc) */
  std::string cpuset;   /* CPUs to pin to (from src/topo); empty: ask hwloc about cudaDev */
  int opsPerPass = 64;  /* ops taken from one ring before moving to the next (fairness) */
  /* Called once, from the proxy thread, with the first fatal error (e.g. to
   * make epCommGetAsyncError report it). */
  std::function<void(epResult_t, const char*)> onError;
};

struct epProxyStats {
  uint64_t ops = 0;          /* descriptors handed to the backend */
  uint64_t busy = 0;         /* backend said epInProgress (flow control) */
  uint64_t maxOutstanding = 0; /* largest (consumed - released) seen on any ring */
};

class epProxy : public epNetCompletionSink {
 public:
  /* rings: host views (epNetRingMem::host); they must outlive the proxy. */
  epProxy(epNetBackend* backend, const epNetWindowTable* windows, std::vector<epNetRing> rings, epProxyOptions opt);
  ~epProxy() override;

  epResult_t start(); /* spawns the thread */
  void stop();        /* joins it; safe to call twice */

  /* One pass (the thread's loop body; tests call it directly without a thread). */
  epResult_t step(bool* didWork);

  /* First fatal error (epSuccess when none); `msg` gets its text. Thread-safe. */
  epResult_t error(std::string* msg = nullptr) const;

  /* Waits until every published descriptor has completed. The caller has
   * synchronised the streams that post, so every claimed ticket is published. */
  epResult_t drain(int64_t timeoutMs);

  epProxyStats stats() const;

  void complete(int channel, uint64_t ticket) override;

 private:
  struct RingState {
    epNetRing r;
    uint64_t next = 0;      /* next ticket to consume */
    uint64_t released = 0;  /* mirror of ctl->released */
    std::vector<uint8_t> done;
    bool stalled = false;   /* `held` waits for backend room */
    epNetOpFields held{};
  };
  void fail(epResult_t res, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
  epResult_t stepRing(RingState& s, bool* didWork);
  void threadMain();

  epNetBackend* backend_;
  const epNetWindowTable* windows_;
  std::vector<RingState> rings_;
  epProxyOptions opt_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> error_{epSuccess};
  mutable std::mutex errMu_;
  std::string errMsg_;
  std::atomic<uint64_t> ops_{0}, busy_{0}, maxOutstanding_{0};
  uint64_t completions_ = 0;  /* proxy thread only */
};

#endif  // EP_TRANSPORT_PROXY_H_
