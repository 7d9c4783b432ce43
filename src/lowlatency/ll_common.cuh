/*************************************************************************
 * epcomm LL: device helpers shared by the dispatch and combine kernels.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_LL_COMMON_CUH_
#define EP_LL_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "device/put_signal.cuh"
#include "device/timeout.cuh"
#include "lowlatency/ll_kernels.h"
#include "lowlatency/ll_layout.h"
#include "lowlatency/ll_profile.h"
#include "lowlatency/ll_remote.cuh"

namespace ep {
namespace ll {

constexpr int kFamilyLL = 2;
// What a timeout waited for (epDeviceStatus.a).
enum WaitWhat : int { kWaitAck = 1, kWaitMeta = 2, kWaitData = 3 };

// Top-k id i of an int32 or int64 array, as int64. One code path (the high
// word's load predicated) rather than two: this is inlined at many sites of
// the LL kernels, whose code runs with a cold instruction cache.
__device__ __forceinline__ long long load_topk(const void* topk, int topk64, int i) {
  const int* w = reinterpret_cast<const int*>(topk) + ((size_t)i << (topk64 ? 1 : 0));
  const int lo = w[0];
  const int hi = topk64 ? w[1] : (lo >> 31);
  return (long long)(((unsigned long long)(unsigned)hi << 32) | (unsigned)lo);
}

// True once some wait of this communicator has timed out (another block's,
// or an earlier call's that was not cleaned) or a peer made a call with
// another mode: waiting on is pointless then. Other recorded errors (a bad
// expert id) do not stop the protocol: that slot is treated as masked on both
// sides. Reads host-mapped memory: only on the slow path of a wait.
__device__ __forceinline__ bool timed_out(const epDeviceStatus* st) {
  if (st == nullptr) return false;
  const int k = dev::ld_volatile(&st->kind);
  return k == EP_DEVERR_TIMEOUT || k == EP_DEVERR_LL_MODE_MISMATCH;
}

// The give-up rule every LL wait loop shares: every kPeriod-th call (spin
// rounds in between are cheap), stop when some wait of this communicator
// already gave up (timed_out) or when this wait's own deadline has passed (then
// it records the timeout: a = what was awaited, b = peer, value).
template <int kPeriod = 1024>
struct SpinBudget {
  dev::Deadline dl;
  int spins = 0;
  __device__ __forceinline__ explicit SpinBudget(uint64_t timeoutNs) : dl(timeoutNs) {}
  __device__ __forceinline__ bool exhausted(const SetArgs& sa, int what, int peer, long long value) {
    if (++spins != kPeriod) return false;
    spins = 0;
    if (timed_out(sa.status)) return true;
    if (!dl.expired()) return false;
    dev::record_error(sa.status, kFamilyLL, EP_DEVERR_TIMEOUT, what, peer, value);
    return true;
  }
};

__device__ __forceinline__ uint64_t ld_relaxed_sys_u64(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

// Polls the int at `p` (local memory, written by peers) until (int)(v - target) >= 0
// (wrap-safe "v >= target"). Returns false on timeout (recorded) or when
// another wait already timed out.
__device__ __forceinline__ bool wait_reach(const int* p, uint32_t target, const SetArgs& sa, int what, int peer) {
  SpinBudget<> budget(sa.timeoutNs);
  while (true) {
    uint32_t v = (uint32_t)dev::ld_acquire_sys(p);
    if ((int)(v - target) >= 0) return true;
    if (budget.exhausted(sa, what, peer, (long long)target)) return false;
  }
}
// Polls the 64-bit tagged word at `p` until its high half equals `epoch`;
// returns its low half in *val. False on timeout (recorded) or when another
// wait already timed out. kAcquire = false: relaxed loads, for a word that
// is its own payload (it orders no other data after it).
template <bool kAcquire = true>
__device__ __forceinline__ bool wait_tag(const uint64_t* p, uint32_t epoch, const SetArgs& sa, int what, int peer,
                                         uint32_t* val) {
  auto load = [p] { return kAcquire ? dev::ld_acquire_sys(p) : ld_relaxed_sys_u64(p); };
  uint64_t v = load();
  if ((uint32_t)(v >> 32) == epoch) {  // the common case: it is already there
    *val = (uint32_t)v;
    return true;
  }
  SpinBudget<> budget(sa.timeoutNs);
  while (true) {
    v = load();
    if ((uint32_t)(v >> 32) == epoch) {
      *val = (uint32_t)v;
      return true;
    }
    if (budget.exhausted(sa, what, peer, (long long)epoch)) return false;
  }
}

// Polls the 32-bit word at `p` until it equals `epoch` (a blkDone flag).
// False on timeout (recorded) or when another wait already timed out. While
// it spins, relaxed loads (no L1 invalidation each time) with an optional
// pause (sa.pollNs: thousands of warps may poll at once in a fused call),
// then one acquire load that orders the caller's data reads after it.
__device__ __forceinline__ bool wait_eq(const int* p, uint32_t epoch, const SetArgs& sa, int what, int peer) {
  if ((uint32_t)dev::ld_acquire_sys(p) == epoch) return true;  // the common case
  SpinBudget<> budget(sa.timeoutNs);
  while (true) {
    if (sa.pollNs) __nanosleep(sa.pollNs);
    if ((uint32_t)dev::ld_relaxed_sys(p) == epoch && (uint32_t)dev::ld_acquire_sys(p) == epoch) return true;
    if (budget.exhausted(sa, what, peer, (long long)epoch)) return false;
  }
}

__device__ __forceinline__ void st_relaxed_sys_u64(uint64_t* p, uint64_t v) {
  asm volatile("st.relaxed.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t tagged(uint32_t epoch, uint32_t v) { return ((uint64_t)epoch << 32) | v; }

// ---------------------------------------------------------------- epochs
// Counter c: 0/1 = sends on set 0/1, 2/3 = receives on set 0/1.
__device__ __forceinline__ uint32_t epoch_read(const SetArgs& sa, int c) {
  return *(volatile uint32_t*)&sa.ctl->ep[(size_t)c * sa.nb + blockIdx.x];
}
// This block's copies (see Ctl); called once per kernel per counter, after the block's last read.
__device__ __forceinline__ void epoch_write(const SetArgs& sa, int c, uint32_t v) {
  for (int i = blockIdx.x + threadIdx.x * gridDim.x; i < sa.nb; i += blockDim.x * gridDim.x)
    sa.ctl->ep[(size_t)c * sa.nb + i] = v;
}

// ---------------------------------------------------------------- flow control
// A sender may write use u of set b into peer d once d has finished receiving
// use u-1 of set b (ack word >= u-1): two buffer sets, so the receive of a call
// only has to finish before the call after next sends.
//
// Acknowledgements are published lazily and off the critical path: at the
// start of every LL kernel, block 0 tells every peer how many receives of
// each set this rank has completed -- all of them finished in earlier kernels
// of the stream, so no grid-wide "all blocks done" detection is needed. A
// fused (non-hooked) call never waits on it: the peer's next call cannot even
// finish before this rank's next kernel started. Data completion is signalled
// by tagged per-block flags (blkDone = epoch of the use, ll_layout.h), which
// need no reset; the legacy per-source counter word is still zeroed here
// (unused, kept at zero).
// Block 0 only (scheduled first: other blocks of a send-only kernel may wait
// for its acknowledgement to this rank itself, so it must never wait behind
// them), before its first barrier; publish_acks_record after its last. It
// reads its own copy of the receive epochs, which no other block writes.
// kMayRemote = false (kernels only used among NVLink peers): the proxy path is
// not compiled in.
template <bool kMayRemote = true>
__device__ __forceinline__ void publish_acks(const SetArgs& sa, int R) {
  for (int d = threadIdx.x; d < R; d += blockDim.x) {
#pragma unroll
    for (int x = 0; x < 2; x++) {
      uint32_t done = *(volatile uint32_t*)&sa.ctl->ep[(size_t)(2 + x) * sa.nb + blockIdx.x];
      uint32_t pub = *(volatile uint32_t*)&sa.ctl->published[x];
      if (done == pub) continue;
      size_t sig = (size_t)x * sa.setBytes;
      if (kMayRemote && rm_remote(sa, d)) rm_ack(sa, x, d, done);  // another node: through the proxy (ll_remote.cuh)
      else sa.ps.signal_set(d, sig + sizeof(int) * ((size_t)R + sa.ps.rank), (int)done);
    }
  }
}
// The publishing block, after a barrier that follows publish_acks, and before
// epoch_write (its copy of the receive epochs still holds what publish_acks read).
__device__ __forceinline__ void publish_acks_record(const SetArgs& sa) {
  if (threadIdx.x < 2)
    sa.ctl->published[threadIdx.x] = *(volatile uint32_t*)&sa.ctl->ep[(size_t)(2 + threadIdx.x) * sa.nb + blockIdx.x];
}

// Every lane of the warp: true on the lowest lane holding each distinct rank
// among the lanes' `dest` (-1: none). The per-rank dedup of a token's top-k
// slots (dispatch sends, combine reductions).
__device__ __forceinline__ bool first_lane_of_rank(int dest) {
  const int lane = threadIdx.x & 31;
  const bool valid = dest >= 0;
  const unsigned peers = __match_any_sync(0xffffffffu, valid ? dest : (0x40000000 | lane));
  return valid && (__ffs(peers) - 1 == lane);
}

// This block's virtual index for work maps: block 0 is the last one, since it
// starts with the ack release (publish_acks) and so takes the last tasks and units.
__device__ __forceinline__ int vblock() { return blockIdx.x == 0 ? gridDim.x - 1 : blockIdx.x - 1; }

// Thread d < R: a first (relaxed) read of peer d's ack word, issued early so
// its latency overlaps the block's local work (the routing table).
__device__ __forceinline__ int ack_prefetch(const SetArgs& sa, int R) {
  if ((int)threadIdx.x >= R) return 0;
  return dev::ld_relaxed_sys(sa.ps.local_ptr<int>(sa.sigOff + sizeof(int) * ((size_t)R + threadIdx.x)));
}

// Waits until every peer acknowledged use `epoch - 1` of this set. Threads
// 0..R-1 each wait for one peer (pre: that thread's ack_prefetch); the caller
// puts a barrier after it.
template <bool kMayRemote = true>
__device__ __forceinline__ bool wait_acks(const SetArgs& sa, int R, uint32_t epoch, int pre) {
  bool ok = true;
  for (int d = threadIdx.x; d < R; d += blockDim.x) {
    if (kMayRemote && rm_remote(sa, d)) {  // another node: its 64-bit ack word (ll_remote.cuh)
      if (!rm_wait(sa, kRemoteAck, d, epoch - 1, kWaitAck)) ok = false;
      continue;
    }
    if (d == (int)threadIdx.x && (int)((uint32_t)pre - (epoch - 1)) >= 0) continue;
    const int* p = sa.ps.local_ptr<int>(sa.sigOff + sizeof(int) * ((size_t)R + d));
    if (!wait_reach(p, epoch - 1, sa, kWaitAck, d)) ok = false;
  }
  return ok;
}

// EP_LL_PROFILE=2: the call's last block adds every block's stamps relative
// to the call's first start.
static __device__ __noinline__ void fold_timeline(unsigned long long* tl, unsigned long long first, int nsend) {
  volatile unsigned long long* v = tl;
  for (int blk = 0; blk < (int)gridDim.x && blk < kTlBlocks; blk++)
    for (int i = 0; i < kTlStamps; i++) {
      const unsigned long long x = v[kTlScratch + blk * kTlStamps + i];
      tl[kTlSums + blk * kTlStamps + i] += i == 8 ? x : (x > first ? x - first : 0);
    }
  tl[0] += 1;
  tl[1] = first;
  tl[2] = (unsigned long long)nsend;
  tl[3] = gridDim.x;
}

// EP_LL_PROFILE: %globaltimer stamps of block 0, thread 0 (the block that
// also publishes acks and announces counts), summed per bucket on the device:
// slot 0 = calls, slot i = sum of (stamp i - kernel start) in ns. Stamps:
// 1 send setup done (table, acks), 2 send stores issued, 3 block-done releases
// done, 4 receive metadata ready (count words; data is waited for per
// message), 5 block end; slot 6 = sum over ALL blocks of their
// duration, slot 7 = blocks (the mean block, to compare with block 0). Every
// block also folds its start and end into per-call scratch; the last block of
// the call turns it into the call's span (first start -> last end), launch skew
// and tail (ll_profile.h), so the event time can be split into "inside the
// kernel" and "launch + teardown". Profiling only: it adds a grid-wide atomic.
// EP_LL_NO_PROFILE (build flag): the stamping code is compiled out (its
// instructions sit in the kernels' hot paths even when EP_LL_PROFILE is off).
#ifdef EP_LL_NO_PROFILE
constexpr bool kProfBuilt = false;
#else
constexpr bool kProfBuilt = true;
#endif
// The timeline bucket (EP_LL_PROFILE=2), nullptr when off or compiled out.
__device__ __forceinline__ unsigned long long* prof_tl(const SetArgs& sa) { return kProfBuilt ? sa.tl : nullptr; }
struct Prof {
  // t[7]: lines counts (row bases) known; t[8]: poll-wait ns (a duration, EP_LL_PROFILE=2 only);
  // t[9]: routing words published (lines publishers); t[12..15]: timeline only (warp 0's first unit;
  // ll_profile.h kTlStamps). t[6], t[10], t[11] are no longer stamped.
  unsigned long long t0, t[kTlStamps], entry;
  bool on, any, all;  // all: EP_LL_PROFILE=2, every block's thread 0 stamps (timeline)
  int nsend = 0;      // timeline: sending blocks of the call (set by the kernel)
  // tEntry: %globaltimer read as the kernel's first instruction, before any
  // parameter is used (slot 18 sums block 0's t0 - tEntry: the prologue).
  // stampBlock: the block whose stamps are summed (block 0 unless a kernel
  // names a more typical one; the line printed still says "block0").
  __device__ __forceinline__ Prof(const SetArgs& sa, unsigned long long tEntry, unsigned stampBlock = 0)
      : entry(tEntry),
        on(kProfBuilt && sa.prof && blockIdx.x == stampBlock && threadIdx.x == 0),
        any(kProfBuilt && sa.prof && threadIdx.x == 0),
        all(kProfBuilt && sa.tl && threadIdx.x == 0) {
    t0 = any ? dev::globaltimer_ns() : 0;
#pragma unroll
    for (int i = 0; i < kTlStamps; i++) t[i] = t0;
    t[8] = 0;
  }
  __device__ __forceinline__ void mark(int i) {
    if (on || all) t[i] = dev::globaltimer_ns();
  }
  __device__ __forceinline__ void flush(const SetArgs& sa) {
    if (!any) return;
    unsigned long long* p = sa.prof;
    t[5] = dev::globaltimer_ns();
    atomicAdd(p + 6, t[5] - t0);
    atomicAdd(p + 7, 1ull);
    if (on) {
      atomicAdd(p, 1ull);
#pragma unroll
      for (int i = 1; i < 6; i++) atomicAdd(p + i, t[i] - t0);
      atomicAdd(p + 20, t[7] - t0);
      atomicExch(p + 17, t0);
      atomicAdd(p + 18, t0 - entry);
    }
    if (all) {  // timeline: this block's absolute stamps, folded by the call's last block
      unsigned long long* sc = sa.tl + kTlScratch + (size_t)blockIdx.x * kTlStamps;
      sc[0] = t0;
      for (int i = 1; i < kTlStamps; i++) sc[i] = t[i];
    }
    atomicMax(p + 12, ~t0);
    atomicMax(p + 13, t[5]);
    // Sums of the low 40 bits (an 18-minute window): 132 full stamps would overflow.
    constexpr unsigned long long kLow = (1ull << 40) - 1;
    atomicAdd(p + 14, t0 & kLow);
    atomicAdd(p + 15, t[5] & kLow);
    __threadfence();
    if (atomicAdd(p + 16, 1ull) != (unsigned long long)gridDim.x - 1) return;
    __threadfence();
    const unsigned long long first = ~atomicAdd(p + 12, 0ull), last = atomicAdd(p + 13, 0ull);
    const unsigned long long n = gridDim.x;
    const unsigned long long meanStart = atomicAdd(p + 14, 0ull) / n, meanEnd = atomicAdd(p + 15, 0ull) / n;
    atomicAdd(p + 8, last - first);
    atomicAdd(p + 9, (meanStart - (first & kLow)) & kLow);
    atomicAdd(p + 10, ((last & kLow) - meanEnd) & kLow);
    atomicAdd(p + 11, atomicAdd(p + 17, 0ull) - first);
    if (all) fold_timeline(sa.tl, first, nsend);
#pragma unroll
    for (int i = 12; i < 18; i++) atomicExch(p + i, 0ull);
  }
};

__device__ __forceinline__ float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

// 8 BF16 (one int4) -> 8 floats.
__device__ __forceinline__ void unpack8(const int4& v, float* f) {
  f[0] = bf16_lo((uint32_t)v.x); f[1] = bf16_hi((uint32_t)v.x);
  f[2] = bf16_lo((uint32_t)v.y); f[3] = bf16_hi((uint32_t)v.y);
  f[4] = bf16_lo((uint32_t)v.z); f[5] = bf16_hi((uint32_t)v.z);
  f[6] = bf16_lo((uint32_t)v.w); f[7] = bf16_hi((uint32_t)v.w);
}
__device__ __forceinline__ int4 pack8(const float* f) {
  int4 v;
  v.x = (int)pack_bf16x2(f[0], f[1]);
  v.y = (int)pack_bf16x2(f[2], f[3]);
  v.z = (int)pack_bf16x2(f[4], f[5]);
  v.w = (int)pack_bf16x2(f[6], f[7]);
  return v;
}

// Smallest power of two >= f (f a positive normal float), exactly.
__device__ __forceinline__ float pow2_ceil(float f) {
  uint32_t b = __float_as_uint(f);
  if (b & 0x7fffffu) b = (b & 0xff800000u) + 0x800000u;
  return __uint_as_float(b);
}

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_COMMON_CUH_
