/*************************************************************************
 * epcomm: the CPU proxy (see proxy.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/proxy/proxy.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>

#include <cuda_runtime.h>

#include "core/debug.h"
#include "transports/proxy/proxy_affinity.h"

epProxy::epProxy(epNetBackend* backend, const epNetWindowTable* windows, std::vector<epNetRing> rings,
                 epProxyOptions opt)
    : backend_(backend), windows_(windows), opt_(opt) {
  rings_.resize(rings.size());
  for (size_t i = 0; i < rings.size(); i++) {
    rings_[i].r = rings[i];
    rings_[i].done.assign(rings[i].capacity, 0);
  }
}

epProxy::~epProxy() { stop(); }

epResult_t epProxy::start() {
  stop_.store(false);
  try {
    thread_ = std::thread(&epProxy::threadMain, this);
  } catch (const std::exception& e) {
    EP_WARN("proxy: cannot start thread: %s", e.what());
    return epSystemError;
  }
  return epSuccess;
}

void epProxy::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void epProxy::fail(epResult_t res, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  int expected = epSuccess;
  if (error_.compare_exchange_strong(expected, res)) {
    {
      std::lock_guard<std::mutex> lk(errMu_);
      errMsg_ = buf;
    }
    EP_WARN("proxy: %s", buf);
    if (opt_.onError) opt_.onError(res, buf);
    // Producers waiting for credit see this and give up instead of timing out.
    for (auto& s : rings_) epNetStoreRelease(&s.r.ctl->error, (uint64_t)res);
  }
}

epResult_t epProxy::error(std::string* msg) const {
  epResult_t e = (epResult_t)error_.load();
  if (msg) {
    std::lock_guard<std::mutex> lk(errMu_);
    *msg = errMsg_;
  }
  return e;
}

epProxyStats epProxy::stats() const {
  epProxyStats s;
  s.ops = ops_.load();
  s.busy = busy_.load();
  s.maxOutstanding = maxOutstanding_.load();
  return s;
}

void epProxy::complete(int channel, uint64_t ticket) {
  if (channel < 0 || channel >= (int)rings_.size()) {
    fail(epInternalError, "backend completed an op on unknown channel %d", channel);
    return;
  }
  RingState& s = rings_[channel];
  const uint64_t mask = s.r.capacity - 1;
  if (ticket < s.released || ticket >= s.next || s.done[ticket & mask]) {
    fail(epInternalError, "channel %d: completion of ticket %" PRIu64 " outside the in-flight range [%" PRIu64
         ", %" PRIu64 ") or twice", channel, ticket, s.released, s.next);
    return;
  }
  s.done[ticket & mask] = 1;
  completions_++;
  uint64_t rel = s.released;
  while (rel < s.next && s.done[rel & mask]) {
    s.done[rel & mask] = 0;
    rel++;
  }
  if (rel != s.released) {
    s.released = rel;
    epNetStoreRelease(&s.r.ctl->released, rel);
  }
}

epResult_t epProxy::stepRing(RingState& s, bool* didWork) {
  const uint64_t cap = s.r.capacity;
  for (int n = 0; n < opt_.opsPerPass; n++) {
    if (!s.stalled) {
      epNetSlot* slot = &s.r.slots[s.next & (cap - 1)];
      uint64_t seq = epNetLoadAcquire(&slot->seq);
      if (seq != s.next + 1) {
        // Not yet published. The slot may only hold the previous lap's value
        // (or 0 before its first use); anything newer means a producer wrote
        // past the consumer, which the claim protocol makes impossible.
        if (seq != 0 && seq + cap != s.next + 1) {
          fail(epInternalError, "channel %d: ring overflow or corruption at ticket %" PRIu64 " (slot seq %" PRIu64 ")",
               s.r.channel, s.next, seq);
          return epInternalError;
        }
        return epSuccess;
      }
      epNetDesc d = slot->desc;
      s.held = epNetDecode(d);
      std::string why;
      if (windows_->check(s.held, &why) != EP_NET_DESC_OK) {
        fail(epInvalidArgument, "channel %d ticket %" PRIu64 ": %s", s.r.channel, s.next, why.c_str());
        return epInvalidArgument;
      }
    }
    epResult_t rc = backend_->post(s.r.channel, s.held, s.next);
    if (rc == epInProgress) {
      if (!s.stalled) busy_.fetch_add(1, std::memory_order_relaxed);
      s.stalled = true;
      return epSuccess;
    }
    if (rc != epSuccess) {
      fail(rc, "channel %d ticket %" PRIu64 ": backend %s failed to post (op %u to rank %d, %u bytes)", s.r.channel,
           s.next, backend_->name(), s.held.op, s.held.peer, s.held.bytes);
      return rc;
    }
    s.stalled = false;
    s.next++;
    *didWork = true;
    ops_.fetch_add(1, std::memory_order_relaxed);
    uint64_t out = s.next - s.released;
    if (out > maxOutstanding_.load(std::memory_order_relaxed)) maxOutstanding_.store(out, std::memory_order_relaxed);
  }
  return epSuccess;
}

epResult_t epProxy::step(bool* didWork) {
  *didWork = false;
  if (error_.load() != epSuccess) return (epResult_t)error_.load();
  for (auto& s : rings_) {
    epResult_t rc = stepRing(s, didWork);
    if (rc != epSuccess) return rc;
  }
  const uint64_t before = completions_;
  epResult_t rc = backend_->progress(this);
  if (rc != epSuccess && rc != epInProgress) {
    fail(rc, "backend %s failed while polling completions", backend_->name());
    return rc;
  }
  if (completions_ != before) *didWork = true;
  return (epResult_t)error_.load();
}

void epProxy::threadMain() {
  epLogScope scope(opt_.rank, opt_.cudaDev, nullptr);
  if (opt_.cudaDev >= 0) {
    cudaError_t e = cudaSetDevice(opt_.cudaDev);
    if (e != cudaSuccess) {
      fail(epCudaError, "cudaSetDevice(%d) in the proxy thread: %s", opt_.cudaDev, cudaGetErrorString(e));
      return;
    }
    if (opt_.bindNuma) epProxyBindToGpu(opt_.cudaDev, opt_.cpuset);
  }
  EP_INFO(EP_LOG_PROXY, "proxy thread started: %zu rings, backend %s", rings_.size(), backend_->name());
  uint64_t idle = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    bool did = false;
    if (step(&did) != epSuccess) break;
    if (did) {
      idle = 0;
    } else if (++idle > 1024) {
      // Nothing to do for a while: let other threads (e.g. the user's) run.
      std::this_thread::yield();
    }
  }
  EP_INFO(EP_LOG_PROXY, "proxy thread stopped: %" PRIu64 " ops, %" PRIu64 " flow-control stalls", ops_.load(),
          busy_.load());
}

epResult_t epProxy::drain(int64_t timeoutMs) {
  const uint64_t deadline = epNetNowNs() + (uint64_t)timeoutMs * 1000000ull;
  for (;;) {
    epResult_t e = error();
    if (e != epSuccess) return e;
    bool quiet = true;
    for (auto& s : rings_) {
      uint64_t rel = epNetLoadAcquire(&s.r.ctl->released);
      const epNetSlot* slot = &s.r.slots[rel & (s.r.capacity - 1)];
      if (epNetLoadAcquire(&slot->seq) == rel + 1) quiet = false;  // published, not yet completed
    }
    if (quiet) return epSuccess;
    if (epNetNowNs() > deadline) {
      EP_WARN("proxy: ops still in flight after %" PRId64 " ms (EP_TIMEOUT_MS)", timeoutMs);
      return epTimeout;
    }
    std::this_thread::yield();
  }
}
