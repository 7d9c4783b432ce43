/*************************************************************************
 * epcomm: device-side network post functions (include from kernels).
 * SPDX-License-Identifier: Apache-2.0
 *
 *   ep::net::put(dev, ch, peer, dstWin, dstOff, srcWin, srcOff, bytes)
 *   ep::net::put_signal(dev, ch, peer, dstWin, dstOff, srcWin, srcOff, bytes, sigWin, sigSlot, value[, op])
 *   ep::net::signal(dev, ch, peer, sigWin, sigSlot, value[, op])
 *   ep::net::wait_done(dev, ch, ticket)   source buffers of ops <= ticket reusable
 *
 * Called by ONE thread (e.g. lane 0 of a warp); many threads and blocks may
 * post to the same channel concurrently (the ring is multi-producer).
 * Semantics: RDMA ordering per (peer, channel), see net_backend.h. The
 * caller makes the source data visible before posting: data written by
 * this kernel must be fenced (__threadfence_system() or a release) before the
 * post, which the release store publishing the slot provides for the
 * posting thread's own writes; other threads' writes need a block barrier
 * first.
 *
 * Overflow is impossible by construction: a slot is written only after a
 * ticket for a released slot was claimed. A post that cannot get a slot
 * within dev.timeoutNs returns EP_NET_POST_TIMEOUT and records
 * EP_DEVERR_TIMEOUT (a = channel, b = peer, value = -1) in dev.status.
 *************************************************************************/
#ifndef EP_TRANSPORT_NET_POST_CUH_
#define EP_TRANSPORT_NET_POST_CUH_

#include "device/timeout.cuh"
#include "transports/proxy/net_device.h"

namespace ep {
namespace net {

/* Family tag used in epDeviceStatus for errors raised by the network path. */
constexpr int kNetErrorFamily = 3;

__device__ __forceinline__ int post_fields(const epNetDevice& dev, int ch, const epNetOpFields& f,
                                           uint64_t* ticket) {
  if (ch < 0 || ch >= dev.nChannels) {
    dev::record_error(dev.status, kNetErrorFamily, EP_DEVERR_BAD_HANDLE, ch, f.peer, -2);
    return EP_NET_POST_BAD_DESC;
  }
  const epNetRing r = dev.rings[ch];
  int rc = epNetRingPost(r, f, dev.timeoutNs, ticket);
  if (rc == EP_NET_POST_TIMEOUT || rc == EP_NET_POST_ABORTED)
    dev::record_error(dev.status, kNetErrorFamily, EP_DEVERR_TIMEOUT, ch, f.peer, -1);
  else if (rc == EP_NET_POST_BAD_DESC)
    dev::record_error(dev.status, kNetErrorFamily, EP_DEVERR_BAD_HANDLE, ch, f.peer, (long long)f.op);
  return rc;
}

__device__ __forceinline__ int put(const epNetDevice& dev, int ch, int peer, int dstWin, uint64_t dstOff, int srcWin,
                                   uint64_t srcOff, uint32_t bytes, uint64_t* ticket = nullptr) {
  epNetOpFields f{};
  f.op = EP_NET_OP_PUT;
  f.peer = peer;
  f.dstWin = (uint32_t)dstWin;
  f.dstOff = dstOff;
  f.srcWin = (uint32_t)srcWin;
  f.srcOff = srcOff;
  f.bytes = bytes;
  return post_fields(dev, ch, f, ticket);
}

__device__ __forceinline__ int put_signal(const epNetDevice& dev, int ch, int peer, int dstWin, uint64_t dstOff,
                                          int srcWin, uint64_t srcOff, uint32_t bytes, int sigWin, uint32_t sigSlot,
                                          int32_t value, uint32_t sigOp = EP_NET_SIG_ADD,
                                          uint64_t* ticket = nullptr) {
  epNetOpFields f{};
  f.op = EP_NET_OP_PUT_SIGNAL;
  f.peer = peer;
  f.dstWin = (uint32_t)dstWin;
  f.dstOff = dstOff;
  f.srcWin = (uint32_t)srcWin;
  f.srcOff = srcOff;
  f.bytes = bytes;
  f.sigWin = (uint32_t)sigWin;
  f.sigSlot = sigSlot;
  f.sigValue = value;
  f.sigOp = sigOp;
  return post_fields(dev, ch, f, ticket);
}

__device__ __forceinline__ int signal(const epNetDevice& dev, int ch, int peer, int sigWin, uint32_t sigSlot,
                                      int32_t value, uint32_t sigOp = EP_NET_SIG_ADD, uint64_t* ticket = nullptr) {
  epNetOpFields f{};
  f.op = EP_NET_OP_SIGNAL;
  f.peer = peer;
  f.sigWin = (uint32_t)sigWin;
  f.sigSlot = sigSlot;
  f.sigValue = value;
  f.sigOp = sigOp;
  return post_fields(dev, ch, f, ticket);
}

__device__ __forceinline__ int wait_done(const epNetDevice& dev, int ch, uint64_t ticket) {
  const epNetRing r = dev.rings[ch];
  int rc = epNetRingWaitDone(r, ticket, dev.timeoutNs);
  if (rc != EP_NET_POST_OK) dev::record_error(dev.status, kNetErrorFamily, EP_DEVERR_TIMEOUT, ch, -1, (long long)ticket);
  return rc;
}

/* Receiver side: waits until the 64-bit signal word reaches `target`
 * (signals only grow under ADD). Returns false on timeout (recorded). */
__device__ __forceinline__ bool wait_signal_geq(const epNetDevice& dev, const uint64_t* word, uint64_t target,
                                                int ch, int peer) {
  dev::Deadline dl(dev.timeoutNs);
  while (dev::ld_acquire_sys(word) < target) {
    if (dl.expired() || dev::has_error(dev.status)) {
      dev::record_error(dev.status, kNetErrorFamily, EP_DEVERR_TIMEOUT, ch, peer, (long long)target);
      return false;
    }
  }
  return true;
}

}  // namespace net
}  // namespace ep

#endif  // EP_TRANSPORT_NET_POST_CUH_
