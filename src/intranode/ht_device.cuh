/*************************************************************************
 * epcomm: HT intranode device helpers shared by the notify, dispatch and
 * combine kernels: buffer addressing, bounded waits, and the sender
 * pipeline (producer warps stage rows in shared memory with bulk loads; one
 * issuer warp bulk-stores each staged slot into the receivers' rings and
 * publishes ring tails).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_INTRANODE_HT_DEVICE_CUH_
#define EP_INTRANODE_HT_DEVICE_CUH_

#include <cstdint>

#include <cuda_bf16.h>

#include "device/ptx.cuh"
#include "device/timeout.cuh"
#include "intranode/ht_types.h"

namespace ep {
namespace ht {

using namespace ep::dev;

constexpr int kFamilyHt = 1;
// What a timed-out wait was waiting for (the `value` of the recorded error).
enum WaitWhat : int {
  kWaitStage = 1,      // a shared-memory stage (internal pipeline)
  kWaitRingSpace = 2,  // the receiver to free ring slots
  kWaitRingData = 3,   // the sender to publish ring slots
  kWaitNotify = 4      // a peer's counts in the notify exchange
};

// Addressing of the symmetric buffers (see ht_types.h for the layout).
struct Buf {
  epHtBufLayout lay;
  epHtPeers peers;
  __device__ __forceinline__ int R() const { return lay.nranks; }
  __device__ __forceinline__ int me() const { return lay.rank; }
  __device__ __forceinline__ char* local() const { return peers.buf[lay.rank]; }
  __device__ __forceinline__ int* ctr(char* base, long long off, int c, int r) const {
    return reinterpret_cast<int*>(base + off) + ((size_t)c * lay.nranks + r) * EP_HT_COUNTER_STRIDE;
  }
  // Tail of ring (c, src -> me), in my buffer (written by src).
  __device__ __forceinline__ int* tailIn(int c, int src) const { return ctr(local(), lay.tailOff, c, src); }
  // Tail of ring (c, me -> dst), in dst's buffer.
  __device__ __forceinline__ int* tailAt(int dst, int c) const { return ctr(peers.buf[dst], lay.tailOff, c, lay.rank); }
  // Head of ring (c, me -> dst), in my buffer (written by dst).
  __device__ __forceinline__ int* headIn(int c, int dst) const { return ctr(local(), lay.headOff, c, dst); }
  // Head of ring (c, src -> me), in src's buffer.
  __device__ __forceinline__ int* headAt(int src, int c) const { return ctr(peers.buf[src], lay.headOff, c, lay.rank); }
  __device__ __forceinline__ int* sendPos(int c, int dst) const { return ctr(local(), lay.sendPosOff, c, dst); }
  __device__ __forceinline__ int* recvPos(int c, int src) const { return ctr(local(), lay.recvPosOff, c, src); }
  // Ring (c, src -> me) in my buffer; ring (c, me -> dst) in dst's buffer.
  __device__ __forceinline__ char* ringIn(int c, int src) const {
    return local() + lay.ringOff + ((size_t)c * lay.nranks + src) * lay.ringBytes;
  }
  __device__ __forceinline__ char* ringAt(int dst, int c) const {
    return peers.buf[dst] + lay.ringOff + ((size_t)c * lay.nranks + lay.rank) * lay.ringBytes;
  }
};

// Bounded spinning of one thread. Checks the clock every 256 polls; gives up
// when the deadline passed (recording EP_DEVERR_TIMEOUT with channel and peer)
// or when another warp of the block gave up (abortFlag in shared memory).
struct Spin {
  Deadline dl;
  uint32_t n;
  __device__ __forceinline__ explicit Spin(uint64_t timeoutNs) : dl(timeoutNs), n(0) {}
  __device__ __forceinline__ bool tick(int* abortFlag, epDeviceStatus* st, int c, int peer, long long what) {
    if ((++n & 255u) != 0) return false;
    if (*reinterpret_cast<volatile int*>(abortFlag)) return true;
    if (dl.expired()) {
      record_error(st, kFamilyHt, EP_DEVERR_TIMEOUT, c, peer, what);
      *reinterpret_cast<volatile int*>(abortFlag) = 1;
      return true;
    }
    return false;
  }
};

// Warp-uniform tick (lane 0 decides for the warp). Every lane must call it.
__device__ __forceinline__ bool warp_tick(Spin& s, int* abortFlag, epDeviceStatus* st, int c, int peer, long long what) {
  bool give = false;
  if (lane_id() == 0) give = s.tick(abortFlag, st, c, peer, what);
  return __shfl_sync(0xffffffffu, give, 0);
}

// Lane 0 waits for a phase of an mbarrier; the warp learns the outcome.
// Returns false when the wait gave up. __syncwarp orders the other lanes'
// later shared-memory reads after lane 0's acquire.
__device__ __forceinline__ bool warp_wait_mbar(uint64_t* bar, uint32_t parity, Spin& s, int* abortFlag,
                                               epDeviceStatus* st, int c) {
  bool ok = true;
  if (lane_id() == 0) {
    while (!mbar_try_wait(bar, parity)) {
      if (s.tick(abortFlag, st, c, -1, kWaitStage)) {
        ok = false;
        break;
      }
    }
  }
  ok = __shfl_sync(0xffffffffu, ok, 0);
  __syncwarp();
  return ok;
}

// ---------------------------------------------------------------- dev profiling
// Cycles spent per category, summed per block (EP_HT_DEV_PROF=1 only).
enum ProfSlot : int {
  P_I_FULL = 0, P_I_SPACE, P_I_READ, P_I_LAG, P_I_TOTAL, P_I_STORE,
  P_P_EMPTY, P_P_TOTAL, P_P_META,
  P_R_IDLE, P_R_FULL, P_R_READ, P_R_TOTAL, P_R_DELIVER,
  P_CS_LOAD, P_CS_SPACE, P_CS_READ, P_CS_LAG, P_CS_TOTAL,
  P_CR_WAIT, P_CR_TOTAL, P_CR_SUM,
  P_N_ITEMS = 24, P_N_SLOTS, P_N_IDLE, P_N_FULLRING
};
struct Prof {
  unsigned long long* p;
  __device__ __forceinline__ long long now() const { return p ? clock64() : 0; }
  __device__ __forceinline__ void add(int idx, long long t0) const {
    if (p && lane_id() == 0) atomicAdd(&p[blockIdx.x * 32 + idx], (unsigned long long)(clock64() - t0));
  }
  __device__ __forceinline__ void cnt(int idx) const {
    if (p && lane_id() == 0) atomicAdd(&p[blockIdx.x * 32 + idx], 1ull);
  }
};

// ---------------------------------------------------------------- sender pipeline
// Publishes the tails of several rings from one lane (lane 0, which has no
// generic global stores in flight): one release fence, then relaxed stores —
// the release pattern — instead of one release per ring. Lane d < R holds
// the value for ring (c, me -> d) in v and its last published value in pub.
template <int kR>
__device__ __forceinline__ void publish_tails(const Buf& b, const epHtTune& t, int c, uint32_t v, uint32_t& pub) {
  const int lane = lane_id(), R = b.R();
  const bool ch = lane < R && v != pub;
  const unsigned chm = __ballot_sync(0xffffffffu, ch);
  if (!chm) return;
  if (lane == 0) fence_acq_rel_sys();
#pragma unroll
  for (int d = 0; d < kR; d++) {
    const uint32_t vd = __shfl_sync(0xffffffffu, v, d);
    if (lane == 0 && ((chm >> d) & 1)) st_relaxed_sys(b.tailAt(d, c), (int)vd);
  }
  if (ch) pub = v;
}

// Shared memory of the sender: S stages of one slot each; full[s] completes
// when a producer's bulk load and its metadata are in (2 arrivals + tx bytes);
// empty[s] when the issuer's stores no longer read the stage.
constexpr int kSendHist = 16;   // per-item tail history (power of two)
// Items whose stores may still be in flight when a tail is published (4 or 8).
__device__ __forceinline__ int send_lag(const epHtTune& t) { return t.lag8 ? 8 : 4; }
// Waits until at most send_lag() of this thread's latest bulk-store groups are pending.
__device__ __forceinline__ void bulk_wait_lag(const epHtTune& t) {
  if (t.lag8) bulk_wait<8>();
  else bulk_wait<4>();
}
// Publishes a ring tail. The bulk stores it covers are complete (bulk_wait)
// and ordered for the generic proxy (fence.proxy.async) before this runs; the
// release is still needed: measured on H200, a relaxed store after a completed
// bulk store to a peer let the receiver read stale slot bytes.
__device__ __forceinline__ void publish_tail(const epHtTune& t, int* p, int v) { st_release_sys(p, v); }
// Publishes a ring head: the slots below it have been read completely (bulk
// loads observed complete, or loaded values already consumed), so a relaxed
// store suffices: nothing the sender writes afterwards can reach those reads.
__device__ __forceinline__ void publish_head(int* p, int v) { st_relaxed_sys(p, v); }

struct SendSmem {
  char* stages;
  uint64_t* full;
  uint64_t* empty;
  int* mask;   // [S] destinations of the staged slot (bit per rank)
  int* hist;   // [kSendHist][EP_HT_MAX_NVL_RANKS]
  int S;
  int slotBytes;
};

// Producer side, step 1: wait until stage i % S is free. Warp-uniform.
__device__ __forceinline__ bool producer_wait_empty(const SendSmem& sm, int i, Spin& s, int* abortFlag,
                                                    epDeviceStatus* st, int c) {
  return warp_wait_mbar(&sm.empty[i % sm.S], ((i / sm.S) & 1) ^ 1, s, abortFlag, st, c);
}
// Producer side, step 2 (after writing the metadata into the stage): publish.
__device__ __forceinline__ void producer_commit(const SendSmem& sm, int i, int mask) {
  fence_proxy_async();  // our generic smem writes are read next by the bulk store (async proxy)
  __syncwarp();
  if (lane_id() == 0) {
    sm.mask[i % sm.S] = mask;
    mbar_arrive(&sm.full[i % sm.S]);
  }
}

// The issuer warp: for each staged item, in order, bulk-stores the slot into
// the ring of every destination in its mask. Lane d keeps the tail of ring
// (c, me -> d). Tails are published kSendLag items late so that the bulk
// stores they cover are known complete without draining the pipeline; when a
// ring is full everything is drained and published first (else the receiver
// could wait for slots we hold back while we wait for it: deadlock).
// Items whose mask includes this rank are not sent through a ring: `self`
// (called by the whole warp with the staged slot) delivers them in place.
template <int kR, class Self>
__device__ __forceinline__ void send_issue(const Buf& b, const epHtTune& tune, int c, int nItems, const SendSmem& sm,
                                           int cap, Self& self, Spin& spin, int* abortFlag, epDeviceStatus* st) {
  const int lane = lane_id();
  const int R = b.R(), me = b.me();
  uint32_t tail = 0, headC = 0, pub = 0;
  const int* headPtr = nullptr;
  if (lane < R) {
    tail = (uint32_t)*b.sendPos(c, lane);
    pub = tail;
    headPtr = b.headIn(c, lane);
    headC = (uint32_t)ld_acquire_sys(headPtr);
  }
  bool aborted = false;
  const Prof prof{tune.prof};
  const long long tTotal = prof.now();
  for (int i = 0; i < nItems; i++) {
    const int s = i % sm.S;
    long long t0 = prof.now();
    if (!warp_wait_mbar(&sm.full[s], (i / sm.S) & 1, spin, abortFlag, st, c)) {
      aborted = true;
      break;
    }
    prof.add(P_I_FULL, t0);
    prof.cnt(P_N_ITEMS);
    t0 = prof.now();
    const int mAll = sm.mask[s];
    const int m = mAll & ~(1 << me);
    const bool mine = lane < R && ((m >> lane) & 1);
    unsigned need = __ballot_sync(0xffffffffu, mine && (int)(tail - headC) >= cap);
    if (need) {
      if ((need >> lane) & 1) headC = (uint32_t)ld_acquire_sys(headPtr);
      need = __ballot_sync(0xffffffffu, mine && (int)(tail - headC) >= cap);
      if (need) {
        if (lane == 0) {
          bulk_wait<0>();
          fence_proxy_async_global();
        }
        __syncwarp();
        publish_tails<kR>(b, tune, c, tail, pub);
        while (need) {
          if (warp_tick(spin, abortFlag, st, c, __ffs(need) - 1, kWaitRingSpace)) {
            aborted = true;
            break;
          }
          if ((need >> lane) & 1) headC = (uint32_t)ld_acquire_sys(headPtr);
          need = __ballot_sync(0xffffffffu, mine && (int)(tail - headC) >= cap);
        }
        if (aborted) break;
        prof.cnt(P_N_FULLRING);
      }
    }
    prof.add(P_I_SPACE, t0);
    t0 = prof.now();
    char* myDst = lane < R ? b.ringAt(lane, c) + (size_t)(tail % (uint32_t)cap) * sm.slotBytes : nullptr;
    const char* src = sm.stages + (size_t)s * sm.slotBytes;
#pragma unroll
    for (int j = 0; j < kR; j++) {
      int d = j + c + me;
      d %= R;
      char* p = reinterpret_cast<char*>(__shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(myDst), d));
      if (lane == 0 && j < R && ((m >> d) & 1)) bulk_store(p, src, sm.slotBytes);
    }
    if ((mAll >> me) & 1) self(src);
    if (lane == 0) bulk_commit();
    prof.add(P_I_STORE, t0);
    t0 = prof.now();
    if (mine) tail++;
    if (lane < R) sm.hist[(i % kSendHist) * EP_HT_MAX_NVL_RANKS + lane] = (int)tail;
    // Every lane's reads of earlier stages (self delivery) must be ordered
    // before lane 0 hands a stage back to the producers (a WAR race otherwise:
    // shuffles and ballots synchronise execution, not memory).
    __syncwarp();
    if (lane == 0) {
      if (tune.readLag2) {
        bulk_wait_read<2>();
        if (i >= 2) mbar_arrive(&sm.empty[(i - 2) % sm.S]);
      } else {
        bulk_wait_read<1>();
        if (i >= 1) mbar_arrive(&sm.empty[(i - 1) % sm.S]);
      }
    }
    prof.add(P_I_READ, t0);
    t0 = prof.now();
    const int lag = send_lag(tune);
    if ((i % tune.pubEvery) == tune.pubEvery - 1 && i >= lag) {
      if (lane == 0) {
        bulk_wait_lag(tune);
        fence_proxy_async_global();
      }
      __syncwarp();
      const uint32_t v = lane < R ? (uint32_t)sm.hist[((i - lag) % kSendHist) * EP_HT_MAX_NVL_RANKS + lane] : 0;
      publish_tails<kR>(b, tune, c, v, pub);
    }
    prof.add(P_I_LAG, t0);
  }
  prof.add(P_I_TOTAL, tTotal);
  if (lane == 0) {
    bulk_wait<0>();
    fence_proxy_async_global();
  }
  __syncwarp();
  if (!aborted) {
    publish_tails<kR>(b, tune, c, tail, pub);
    if (lane < R) *b.sendPos(c, lane) = (int)tail;
  }
}

// Initialises the sender's barriers (one thread).
__device__ __forceinline__ void send_init(const SendSmem& sm) {
  for (int s = 0; s < sm.S; s++) {
    mbar_init(&sm.full[s], 2);
    mbar_init(&sm.empty[s], 1);
  }
}

// Channel c's token range [t0, t1) of T tokens split over C channels.
__device__ __forceinline__ void channel_range(int T, int C, int c, int* t0, int* t1) {
  *t0 = (int)((long long)T * c / C);
  *t1 = (int)((long long)T * (c + 1) / C);
}

// This call's epoch of one kind, kept on the device so that a CUDA-graph
// replay gets a fresh epoch exactly like an eager call (a host-chosen epoch
// would be frozen into the graph: a replay could pass a wait on the previous
// replay's flag). ctr[0, EP_HT_MAX_CHANNELS) all hold the kind's last epoch.
// Block b reads slot b when it starts; when its thread 0 leaves the kernel
// (every return path: the destructor) it stores the new epoch into slots b,
// b + grid, b + 2 grid, ...: each slot is read in a call only by the block of
// its own index, which wrote it last, and the next call, whatever its grid,
// finds every slot advanced by one. 31 bits, never 0 (0 = "never written").
struct CallEpoch {
  uint32_t* ctr;
  uint32_t e;
  __device__ __forceinline__ explicit CallEpoch(uint32_t* c) : ctr(c) {
    const uint32_t v = (__ldcg(ctr + blockIdx.x) + 1u) & 0x7fffffffu;
    e = v == 0 ? 1u : v;
  }
  __device__ __forceinline__ ~CallEpoch() {
    if (threadIdx.x == 0)
      for (unsigned j = blockIdx.x; j < EP_HT_MAX_CHANNELS; j += gridDim.x) ctr[j] = e;
  }
  CallEpoch(const CallEpoch&) = delete;
  CallEpoch& operator=(const CallEpoch&) = delete;
};

// Combine's reduction of one 16-byte chunk (8 BF16 channels): the rows the
// token's ranks returned (rank order; bit r of `m` says rank r holds one),
// then the biases, summed in fp32 and rounded to BF16 once. The ring and the
// direct combine both use it, so their outputs are bitwise the same.
template <int kR>
__device__ __forceinline__ int4 sum_chunk_bf16(const int4 (&rows)[kR], unsigned m, const int4 (&bias)[2], bool b0,
                                               bool b1) {
  float acc[8];
#pragma unroll
  for (int i = 0; i < 8; i++) acc[i] = 0.f;
  auto add = [&acc](const int4& v) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const float2 f = __bfloat1622float2(h[i]);
      acc[2 * i] += f.x;
      acc[2 * i + 1] += f.y;
    }
  };
#pragma unroll
  for (int r = 0; r < kR; r++)
    if ((m >> r) & 1) add(rows[r]);
  if (b0) add(bias[0]);
  if (b1) add(bias[1]);
  int4 res;
  __nv_bfloat162* rh = reinterpret_cast<__nv_bfloat162*>(&res);
#pragma unroll
  for (int i = 0; i < 4; i++) rh[i] = __floats2bfloat162_rn(acc[2 * i], acc[2 * i + 1]);
  return res;
}

}  // namespace ht
}  // namespace ep

#endif  // EP_INTRANODE_HT_DEVICE_CUH_
