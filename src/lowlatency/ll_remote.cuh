/*************************************************************************
 * epcomm LL over RDMA: the device side (see ll_remote.h for the design).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Included by ll_common.cuh. Every function is a no-op branch when
 * sa.rm.on == 0 (single-node communicators), so the NVLink path keeps its
 * instructions; the hooks in the LL kernels are:
 *   publish_acks   rm_remote(d) ? rm_ack(...)           : signal_set(...)
 *   wait_acks      rm_remote(d) ? rm_wait(ACK, epoch-1) : the 32-bit ack word
 *   dispatch recv  rm_remote(s): rm_wait(DATA, epoch) before the info words,
 *                  and no 32-bit data counter
 *   combine recv   rm_remote(d) ? rm_wait(DATA, epoch)  : the 32-bit counter
 *   end of send    rm_ship_dispatch / rm_ship_combine (last block posts)
 *************************************************************************/
#ifndef EP_LL_REMOTE_CUH_
#define EP_LL_REMOTE_CUH_

#include "device/timeout.cuh"
#include "lowlatency/ll_kernels.h"
#include "lowlatency/ll_layout.h"
#include "lowlatency/ll_remote.h"
#include "transports/proxy/net_post.cuh"

namespace ep {
namespace ll {

constexpr int kRemoteFamily = 2;  // LL, as ll_common.cuh's kFamilyLL

__device__ __forceinline__ bool rm_remote(const SetArgs& sa, int r) { return sa.rm.on && sa.rm.mirrorOf[r] >= 0; }
__device__ __forceinline__ int rm_channel(const SetArgs& sa, int r) { return sa.rm.chBase + r % sa.rm.nCh; }

// Out-of-line code takes plain values only: a reference into the kernel's
// parameters would make the compiler copy them all to the stack, and the LL
// kernels run at their register limit.

// Polls *w until it reaches `target` (wrap-safe 32-bit compare: the words
// carry epochs or receive counts). False on timeout (recorded: what = the LL
// wait kind, peer r) or once another wait timed out.
static __device__ __noinline__ bool rm_poll(const uint64_t* w, uint32_t target, uint64_t timeoutNs,
                                            epDeviceStatus* st, int what, int r) {
  if ((int)((uint32_t)dev::ld_acquire_sys(w) - target) >= 0) return true;
  dev::Deadline dl(timeoutNs);
  int spins = 0;
  while (true) {
    if ((int)((uint32_t)dev::ld_acquire_sys(w) - target) >= 0) return true;
    if (++spins == 1024) {
      spins = 0;
      if (st != nullptr && dev::ld_volatile(&st->kind) == EP_DEVERR_TIMEOUT) return false;
      if (dl.expired()) {
        dev::record_error(st, kRemoteFamily, EP_DEVERR_TIMEOUT, what, r, (long long)target);
        return false;
      }
    }
  }
}
// Word (this set, kind, r) of the remote-signal block reaches `target`.
__device__ __forceinline__ bool rm_wait(const SetArgs& sa, int kind, int r, uint32_t target, int what) {
  return rm_poll(sa.rm.sig + remoteSigSlot(sa.rm.R, sa.set, kind, r), target, sa.timeoutNs, sa.status, what, r);
}

// Acknowledges to remote peer d that this rank finished `done` receives of set x.
__device__ __forceinline__ void rm_ack(const SetArgs& sa, int x, int d, uint32_t done) {
  (void)net::signal(sa.rm.net, rm_channel(sa, d), d, sa.rm.sigWin,
                    (uint32_t)remoteSigSlot(sa.rm.R, x, kRemoteAck, sa.ps.rank), (int32_t)done, EP_NET_SIG_SET);
}

// Every block calls it at the end of its send phase; true in the one block
// that finished last (all blocks' mirror stores are then visible system-wide).
__device__ __forceinline__ bool rm_last_block(const SetArgs& sa) {
  __shared__ int isLast;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence_system();  // this block's stores (ordered by the barrier) before the count
    const unsigned prev = atomicAdd(&sa.rm.shipCtr[sa.set], 1u);
    isLast = prev == gridDim.x - 1;
    if (isLast) {
      sa.rm.shipCtr[sa.set] = 0;  // every block has counted: ready for the next send on this set
      __threadfence_system();     // the other blocks' stores, seen through the count, before the posts
    }
  }
  __syncthreads();
  return isLast != 0;
}

__device__ __forceinline__ bool rm_failed(const SetArgs& sa) {
  return sa.status != nullptr && dev::ld_volatile(&sa.status->kind) == EP_DEVERR_TIMEOUT;
}

// What the posting block needs, by value.
struct RmShip {
  RemoteArgs rm;
  int set, me, M, K, T;
  uint32_t epoch;
  size_t infoOff, infoStride, hdrOff, dataOff, msgStride;  // dispatch: this rank's ranges in a peer's buffer
  int per;                                                 // dispatch: messages per token (1 with dedup, else K)
  int reduce;                                              // combine
  const int* srcT;                                         // combine: tokens of each source (shared memory)
  const int* flatRow;                                      // combine: the handle's rows [R x M x K]
  size_t row;                                              // combine: bytes of a row (2H)
};

__device__ __forceinline__ void rm_set_data(const RmShip& a, int d) {
  (void)net::signal(a.rm.net, a.rm.chBase + d % a.rm.nCh, d, a.rm.sigWin,
                    (uint32_t)remoteSigSlot(a.rm.R, a.set, kRemoteData, a.me), (int32_t)a.epoch, EP_NET_SIG_SET);
}

// Dispatch: ships [info | headers of my T tokens | their messages] to every
// remote peer, then DATA[set][me] = epoch there. The posting block only.
static __device__ __noinline__ void rm_ship_dispatch_posts(const RmShip a) {
  const RmRange info = rmDispatchInfo(a.infoOff, a.infoStride, a.me);
  const RmRange hdr = rmDispatchHdr(a.hdrOff, sizeof(DispatchHdr), a.me, a.M, a.T);
  const RmRange data = rmDispatchData(a.dataOff, a.me, a.M, a.T, a.per, a.msgStride);
  for (int d = threadIdx.x; d < a.rm.R; d += blockDim.x) {
    const int k = a.rm.mirrorOf[d];
    if (k < 0) continue;
    const int ch = a.rm.chBase + d % a.rm.nCh;
    const uint64_t mb = (uint64_t)k * a.rm.mirrorStride;
    bool ok = true;
    for (const RmRange& r : {info, hdr, data}) {
      if (!ok || r.bytes == 0) continue;
      ok = net::put(a.rm.net, ch, d, a.rm.llWin, r.off, a.rm.mirrorWin, mb + r.off, (uint32_t)r.bytes) ==
           EP_NET_POST_OK;
    }
    if (ok) rm_set_data(a, d);  // else the failure is recorded; the peer's wait times out naming this rank
  }
}

// Combine: ships the rows this rank produced for each remote source s (its
// reduced rows [me][0, T_s), or each expert row [t][k] it holds), then
// DATA[set][me] = epoch there. The posting block only.
static __device__ __noinline__ void rm_ship_combine_posts(const RmShip a) {
  const int R = a.rm.R, M = a.M, K = a.K;
  if (a.reduce) {
    for (int s = threadIdx.x; s < R; s += blockDim.x) {
      const int k = a.rm.mirrorOf[s];
      if (k < 0 || a.srcT[s] <= 0) continue;
      const RmRange r = rmCombineReduced(a.dataOff, a.me, M, a.srcT[s], a.row);
      (void)net::put(a.rm.net, a.rm.chBase + s % a.rm.nCh, s, a.rm.llWin, r.off, a.rm.mirrorWin,
                     (uint64_t)k * a.rm.mirrorStride + r.off, (uint32_t)r.bytes);
    }
  } else {
    // One put per expert row: the slots between them belong to other ranks.
    const int units = R * M * K;
    for (int u = threadIdx.x; u < units; u += blockDim.x) {
      const int s = u / (M * K), tk = u - s * (M * K), t = tk / K;
      const int k = a.rm.mirrorOf[s];
      if (k < 0 || t >= a.srcT[s] || a.flatRow[u] < 0) continue;
      const RmRange r = rmCombineRow(a.dataOff, t, K, tk - t * K, a.row);
      (void)net::put(a.rm.net, a.rm.chBase + s % a.rm.nCh, s, a.rm.llWin, r.off, a.rm.mirrorWin,
                     (uint64_t)k * a.rm.mirrorStride + r.off, (uint32_t)r.bytes);
    }
  }
  __syncthreads();  // every put to a peer is posted (ticket order) before its signal
  for (int s = threadIdx.x; s < R; s += blockDim.x)
    if (a.rm.mirrorOf[s] >= 0) rm_set_data(a, s);
}

// The hooks at the end of a send phase: every block calls them. The block
// that finished last fills the fields both ships share (the rest zero) and
// the kind-specific ones, then posts.
template <class Params>
__device__ __forceinline__ bool rm_ship_begin(const Params& p, uint32_t epoch, RmShip* a) {
  const SetArgs& sa = p.sa;
  if (!sa.rm.on || !rm_last_block(sa) || rm_failed(sa)) return false;
  *a = RmShip{};
  a->rm = sa.rm;
  a->set = sa.set;
  a->me = p.rank;
  a->M = p.M;
  a->K = p.K;
  a->epoch = epoch;
  a->dataOff = sa.dataOff;
  return true;
}
__device__ __forceinline__ void rm_ship_dispatch(const DispatchParams& p, uint32_t epoch) {
  RmShip a;
  if (!rm_ship_begin(p, epoch, &a)) return;
  a.T = p.T;
  a.infoOff = p.sa.infoOff;
  a.infoStride = p.sa.infoStride;
  a.hdrOff = p.sa.hdrOff;
  a.msgStride = p.msgStride;
  a.per = p.dedup ? 1 : p.K;
  rm_ship_dispatch_posts(a);
}
__device__ __forceinline__ void rm_ship_combine(const CombineParams& p, const int* srcT, uint32_t epoch) {
  RmShip a;
  if (!rm_ship_begin(p, epoch, &a)) return;
  a.per = 1;
  a.reduce = p.reduce;
  a.srcT = srcT;
  a.flatRow = p.hFlatRow;
  a.row = 2 * (size_t)p.H;
  rm_ship_combine_posts(a);
}

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_REMOTE_CUH_
