/*************************************************************************
 * epcomm LL dispatch, pull protocol: the receivers read each message from
 * its source over NVLink, straight into the per-expert rows.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Why: with the push protocol (ll_dispatch.cu) a message crosses NVLink into
 * the receiver's slot, and only once the sender's blocks have released it
 * (a system-scope release completes when ALL of that GPU's NVLink writes have
 * drained, i.e. at the end of the link phase) can the receiver copy it into
 * its ~2.2 local expert rows: the copy (~3 us) and a tail of late flags
 * (~2 us) follow the link phase. Pulling merges the link transfer and the
 * fan-out copy into one pass: a warp loads a slice of the message from the
 * source and stores it into every local row it belongs to. The release that
 * publishes a message now covers only local stores (the cast into the
 * source's own staging), so it completes in about a microsecond.
 *
 * Used for non-hooked dedup dispatches among NVLink peers (EP_LL_PULL): a
 * hooked call keeps pushing, since its point is that the data moves while
 * the caller computes, which a pull cannot do.
 *
 * Source (phase bit 1), every block, after flow control (every peer has
 * finished receiving the previous use of this set, so it no longer reads
 * this rank's staging or its routing words there):
 *  - the top virtual blocks (no cast task at the decode shapes) store this
 *    rank's T word (T, blocks, mode) and its whole routing, one tagged
 *    64-bit word per (token, top-k slot) -- expert id, and the weight -- into
 *    every rank's pull region: self-validating words, no release, no flag;
 *  - the (token, 512-channel chunk) tasks are cast to FP8 (or kept BF16) into
 *    this rank's own staging [t] (local stores);
 *  - one release store per rank of blkDone[me][block] = epoch.
 * Receiver (phase bit 2), every block: the T words, then every source's
 * routing words (one thread per word, in parallel) into a bitmap per (local
 * expert, source) in shared memory: counts, bases and each token's row j
 * without any data from the sources but their ids. Then p.recvSplit warps per
 * (source, token) with a local expert: wait for the source blocks that cast
 * the slice, load it from the source's staging over NVLink, store it into
 * each local row (scales by the last part), srcInfo, weights, the handle.
 * Same outputs, row order and handle as the push protocol.
 *************************************************************************/
#ifndef EP_LL_DISPATCH_PULL_CUH_
#define EP_LL_DISPATCH_PULL_CUH_

#include "lowlatency/ll_dispatch_common.cuh"

namespace ep {
namespace ll {

// The T word and the routing words of this rank, to every rank. Work items
// go to the virtual blocks from the top down (vb = G-2, G-3, ...), which have
// no cast task unless T * chunks fills the grid; block 0 (vb = G-1, busy with
// the ack release first) comes last.
__device__ void pull_publish_routing(const DispatchParams& p, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, E = p.E, me = p.rank, TK = p.T * K;
  const int G = gridDim.x, vb = vblock();
  const int order = G == 1 ? 0 : (vb == G - 1 ? G - 1 : G - 2 - vb);
  const size_t mine = sa.infoOff + (size_t)me * sa.infoStride;
  if (order == 0) {
    const uint32_t tw = tword(p.T, G, call_mode(p) | (p.weights ? kModeWeights : 0u));
    for (int d = threadIdx.x; d < R; d += blockDim.x) st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, mine), tagged(epoch, tw));
  }
  for (int i = order * blockDim.x + threadIdx.x; i < R * TK; i += G * blockDim.x) {
    const int d = i / TK, tk = i - d * TK, t = tk / K, k = tk - t * K;
    const long long id = load_topk(p.topk, p.topk64, tk);
    const bool valid = id >= 0 && id < E;
    if (!valid && id != -1 && d == 0) dev::record_error(sa.status, kFamilyLL, EP_DEVERR_BAD_EXPERT_ID, t, k, id);
    st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, sa.pullOff + pullIdRel(M, K, me, t, k)),
                       tagged(epoch, valid ? (uint32_t)id : 0xffffffffu));
    if (p.weights)
      st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, sa.pullOff + pullWeightRel(M, K, me, t, k)),
                         tagged(epoch, __float_as_uint(__ldg(p.weights + tk))));
  }
}

// The (token, chunk) tasks of this block, cast into this rank's staging
// (pre0/pre1: the first task's channels, loaded before flow control).
template <bool kFp8>
__device__ void pull_stage(const DispatchParams& p, int4 pre0, int4 pre1) {
  const int H = p.H, C = (H + kChunk - 1) / kChunk;
  const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int ntask = p.T * C, task0 = first_task();
  char* stage = p.sa.ps.local + p.sa.stageOff;
  for (int task = task0; task < ntask; task += gridDim.x * nw) {
    const int t = task / C, c = task - t * C, ch0 = c * kChunk + lane * 16;
    int4 v0 = pre0, v1 = pre1;
    if (task != task0) load_chunk(p, task, &v0, &v1);
    char* msg = stage + (size_t)t * p.msgStride;
    if constexpr (kFp8) {
      float scale = 0.f;
      const int4 q = cast_fp8(v0, v1, p.roundScale, &scale);  // the whole warp (shuffles)
      if (ch0 < H) {
        *reinterpret_cast<int4*>(msg + ch0) = q;
        if ((lane & 7) == 0) *reinterpret_cast<float*>(msg + H + 4 * (ch0 / 128)) = scale;
      }
    } else if (ch0 < H) {
      int4* dst = reinterpret_cast<int4*>(msg + 2 * (size_t)ch0);
      dst[0] = v0;
      dst[1] = v1;
    }
  }
}

constexpr int kPollBatch = 8;  // routing words one thread loads before it looks at any

// The first unit of a warp, started before the block's meta pass: its source's
// T word and its K routing words in one round trip, then its source blocks'
// flags, then its slice and scales loads, left in flight. The meta pass and
// this NVLink round trip overlap; the rows are known (and stored) after it.
template <bool kFp8>
struct PullPre {
  int up = -1;       // the unit (-1: this warp has none)
  bool loaded = false;
  uint32_t id = 0xffffffffu, wbits = 0;  // lane k < K: routing word values of slot k
  uint32_t sc0 = 0;
  int4 v[kPullCopyU];
};

// Unit `up` = (source s, token t, part): the slice [lo, hi) of the message in int4.
struct PullUnit {
  int u, part, s, t, lo, hi;
  bool last;
  __device__ __forceinline__ PullUnit(const DispatchParams& p, int up, int n16, int per) {
    const int P = p.recvSplit;
    u = up / P;
    part = up - u * P;
    s = u / p.M;
    t = u - s * p.M;
    lo = min(n16, part * per);
    hi = min(n16, lo + per);
    last = part == P - 1;
  }
};

__device__ __forceinline__ int pull_slice(const DispatchParams& p, bool fp8) {
  const int n16 = fp8 ? p.H / 16 : p.H / 8, P = p.recvSplit;
  return ((n16 + P - 1) / P + 31) / 32 * 32;  // whole warp-wide steps
}

template <bool kFp8>
__device__ void pull_prefetch(const DispatchParams& p, uint32_t epoch, PullPre<kFp8>& pre) {
  const SetArgs& sa = p.sa;
  const int R = p.R, K = p.K, L = p.L, me = p.rank, MK = p.M * K;
  const int n16 = kFp8 ? p.H / 16 : p.H / 8, per = pull_slice(p, kFp8);
  const int C = (p.H + kChunk - 1) / kChunk, epc = kChunk / (kFp8 ? 16 : 8);
  const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int up = vblock() * nw + (threadIdx.x >> 5);
  if (up >= R * p.M * p.recvSplit) return;
  const PullUnit w(p, up, n16, per);
  pre.up = up;
  const uint64_t* tw = sa.ps.local_ptr<uint64_t>(sa.infoOff + (size_t)w.s * sa.infoStride);
  const uint64_t* ids = sa.ps.local_ptr<uint64_t>(sa.pullOff) + 2 * (size_t)w.s * MK + w.t * K;
  uint64_t tv = lane == 31 ? ld_relaxed_sys_u64(tw) : 0, iv = lane < K ? ld_relaxed_sys_u64(ids + lane) : 0;
  uint32_t tword = (uint32_t)tv;
  bool ok = true;
  if (lane == 31 && (uint32_t)(tv >> 32) != epoch) ok = wait_tag<false>(tw, epoch, sa, kWaitMeta, w.s, &tword);
  tword = __shfl_sync(0xffffffffu, tword, 31);
  if (!__all_sync(0xffffffffu, ok) || tword_mode(tword) != (call_mode(p) | (tword_mode(tword) & kModeWeights)) ||
      w.t >= tword_tokens(tword))
    return;  // nothing to fetch (or an error the meta pass reports)
  uint32_t id = (uint32_t)iv;
  if (lane < K && (uint32_t)(iv >> 32) != epoch) ok = wait_tag<false>(ids + lane, epoch, sa, kWaitMeta, w.s, &id);
  const int le = (int)id - me * L;
  const bool mine = lane < K && ok && id != 0xffffffffu && le >= 0 && le < L;
  if ((tword_mode(tword) & kModeWeights) && mine) {
    const uint64_t wv = ld_relaxed_sys_u64(ids + MK + lane);
    pre.wbits = (uint32_t)wv;
    if ((uint32_t)(wv >> 32) != epoch) ok = wait_tag<false>(ids + MK + lane, epoch, sa, kWaitMeta, w.s, &pre.wbits);
  }
  pre.id = id;
  if (!__all_sync(0xffffffffu, ok) || !__any_sync(0xffffffffu, mine)) return;
  if (w.lo >= w.hi && w.part != 0 && !w.last) return;
  const int cLo = w.lo / epc, cHi = w.lo < w.hi ? (w.hi - 1) / epc : -1;
  if (!wait_src_blocks(sa, R, w.s, tword_blocks(tword), w.t, C, false, cLo, cHi, kFp8 && w.last, epoch, lane)) return;
  const char* msg = sa.ps.ptr<const char>(w.s, sa.stageOff + (size_t)w.t * p.msgStride);
  load_batch(reinterpret_cast<const int4*>(msg), w.lo, w.hi, lane, pre.v);
  pre.sc0 = first_scale<kFp8>(p, msg, w.last, lane);
  pre.loaded = true;
}

// Receive bookkeeping, every block, in one round trip: warp 1 polls the
// sources' T words (warp 0 may still be in its flag releases) while every
// thread has its first batch of routing words in flight; then the routing goes
// into sm.bits[(le * R + s) * Wt + word] (token bitmap of local expert le from
// source s) and sm.hasLocal[s * Wt + word], then counts and bases
// (recv_bases). sm.nOut[s] holds whether source s sent weights. Returns false
// (block-uniform) on a timeout or a mode mismatch (recorded).
__device__ bool pull_recv_meta(const DispatchParams& p, const DSmem& sm, uint32_t epoch, int* sFail, Prof& prof) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, L = p.L, me = p.rank, MK = M * K, RMK = R * MK;
  const int Wt = (M + 31) / 32, tid = threadIdx.x, nt = blockDim.x;
  const int tpoll = nt > 32 ? 32 : 0;  // first T-word poller
  const uint64_t* ids = sa.ps.local_ptr<uint64_t>(sa.pullOff);
  uint64_t w[kPollBatch];
#pragma unroll
  for (int q = 0; q < kPollBatch; q++) {
    const int i = tid + q * nt;
    w[q] = i < RMK ? ld_relaxed_sys_u64(ids + 2 * (size_t)(i / MK) * MK + i % MK) : 0;
  }
  for (int i = tid; i < L * R * Wt; i += nt) sm.bits[i] = 0;
  for (int i = tid; i < R * Wt; i += nt) sm.hasLocal[i] = 0;
  for (int s = tid - tpoll; s >= 0 && s < R; s += nt) {
    uint32_t v = 0;
    // Relaxed: the T word orders nothing after it (routing words carry their own tags, data has its flags).
    if (!wait_tag<false>(sa.ps.local_ptr<uint64_t>(sa.infoOff + (size_t)s * sa.infoStride), epoch, sa, kWaitMeta, s,
                         &v) ||
        !mode_matches(p, s, tword_mode(v))) {
      *sFail = 1;
      continue;
    }
    sm.sT[s] = tword_tokens(v);
    sm.sG[s] = tword_blocks(v);
    sm.nOut[s] = (tword_mode(v) & kModeWeights) != 0;
  }
  __syncthreads();
  prof.mark(6);
  if (*sFail) return false;
  for (int i0 = tid; i0 < RMK; i0 += nt * kPollBatch) {
    if (i0 != tid) {  // later batches (large R x M x K): loaded now
#pragma unroll
      for (int q = 0; q < kPollBatch; q++) {
        const int i = i0 + q * nt;
        w[q] = i < RMK ? ld_relaxed_sys_u64(ids + 2 * (size_t)(i / MK) * MK + i % MK) : 0;
      }
    }
#pragma unroll
    for (int q = 0; q < kPollBatch; q++) {
      const int i = i0 + q * nt, s = i / MK, tk = i - s * MK, t = tk / K;
      if (i >= RMK || t >= sm.sT[s]) continue;
      uint32_t id = (uint32_t)w[q];
      if ((uint32_t)(w[q] >> 32) != epoch && !wait_tag<false>(ids + 2 * (size_t)s * MK + tk, epoch, sa, kWaitMeta, s, &id)) {
        *sFail = 1;
        continue;
      }
      const int le = (int)id - me * L;  // an invalid (-1) id is 0xffffffff: never local
      if (id != 0xffffffffu && le >= 0 && le < L) {
        atomicOr(&sm.bits[(le * R + s) * Wt + (t >> 5)], 1u << (t & 31));
        atomicOr(&sm.hasLocal[s * Wt + (t >> 5)], 1u << (t & 31));
      }
    }
  }
  __syncthreads();
  prof.mark(7);
  if (*sFail) return false;
  for (int i = tid; i < L * R; i += nt) {
    int c = 0;
    for (int q = 0; q < Wt; q++) c += __popc(sm.bits[i * Wt + q]);
    sm.sCnt[i] = c;
  }
  __syncthreads();
  recv_bases(p, sm);
  return true;
}

// The (source, token, part) units of this block (p.recvSplit parts per
// message, as in the push receive); the first one of each warp was started by
// pull_prefetch. For the others: the source blocks' flags (one poll round,
// lane-parallel), then the one NVLink round trip -- the slice and, for the
// last part, the scales -- with the routing words (local) read while it is in
// flight.
template <bool kFp8>
__device__ void pull_recv_units(const DispatchParams& p, const DSmem& sm, uint32_t epoch, PullPre<kFp8>& pre) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, H = p.H, L = p.L, me = p.rank;
  const int RM = R * M, P = p.recvSplit, MK = M * K, Wt = (M + 31) / 32;
  const int n16 = kFp8 ? H / 16 : H / 8, per = pull_slice(p, kFp8);
  const int C = (H + kChunk - 1) / kChunk, epc = kChunk / (kFp8 ? 16 : 8);  // int4 elements per chunk
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const uint64_t* words = sa.ps.local_ptr<uint64_t>(sa.pullOff);
  for (int up = vblock() * nw + warp; up < RM * P; up += gridDim.x * nw) {
    const PullUnit w(p, up, n16, per);
    const int u = w.u, s = w.s, t = w.t;
    if (t >= sm.sT[s]) continue;
    const bool local = (sm.hasLocal[s * Wt + (t >> 5)] >> (t & 31)) & 1u;
    if (!local) {  // nothing here: only the handle entries (part 0)
      if (w.part == 0 && lane < K) {
        p.hFlatRow[(size_t)u * K + lane] = -1;
        p.hW[(size_t)u * K + lane] = 0.f;
      }
      continue;
    }
    if (w.lo >= w.hi && w.part != 0 && !w.last) continue;
    const char* msg = sa.ps.ptr<const char>(s, sa.stageOff + (size_t)t * p.msgStride);
    const bool prefetched = up == pre.up && pre.loaded;
    uint32_t id = pre.id, wb = pre.wbits;
    bool ok = true;
    if (!prefetched) {
      const int cLo = w.lo / epc, cHi = w.lo < w.hi ? (w.hi - 1) / epc : -1;
      if (!wait_src_blocks(sa, R, s, sm.sG[s], t, C, false, cLo, cHi, kFp8 && w.last, epoch, lane)) continue;
      load_batch(reinterpret_cast<const int4*>(msg), w.lo, w.hi, lane, pre.v);
      pre.sc0 = first_scale<kFp8>(p, msg, w.last, lane);
      // Slot `lane` of (s, t): the meta pass saw the id words; the weight word is a separate store: checked too.
      if (lane < K) {
        const uint64_t* wid = words + 2 * (size_t)s * MK + t * K + lane;
        const uint64_t iw = ld_relaxed_sys_u64(wid), ww = sm.nOut[s] ? ld_relaxed_sys_u64(wid + MK) : 0;
        id = (uint32_t)iw;
        wb = (uint32_t)ww;
        if ((uint32_t)(iw >> 32) != epoch) ok = wait_tag<false>(wid, epoch, sa, kWaitMeta, s, &id);
        if (ok && sm.nOut[s] && (uint32_t)(ww >> 32) != epoch) ok = wait_tag<false>(wid + MK, epoch, sa, kWaitMeta, s, &wb);
      }
    }
    int flat = -1;
    float wv = 0.f;
    const int le = (int)id - me * L;
    if (lane < K && ok && id != 0xffffffffu && le >= 0 && le < L) {
      const uint32_t* row = sm.bits + (le * R + s) * Wt;
      int j = __popc(row[t >> 5] & ((1u << (t & 31)) - 1u));
      for (int q = 0; q < (t >> 5); q++) j += __popc(row[q]);
      flat = le * RM + sm.base[le * R + s] + j;
      wv = sm.nOut[s] ? __uint_as_float(wb) : 0.f;
    }
    if (!__all_sync(0xffffffffu, ok)) continue;  // timed out (recorded)
    if (w.part == 0) {
      if (lane < K) {
        const size_t hi2 = (size_t)u * K + lane;
        p.hFlatRow[hi2] = flat;
        p.hW[hi2] = wv;
      }
      if (flat >= 0) {
        if (p.srcInfo) p.srcInfo[flat] = t;
        if (p.recvW) p.recvW[flat] = wv;
      }
    }
    const unsigned lmask = __ballot_sync(0xffffffffu, flat >= 0);
    copy_message<kFp8>(p, msg, lmask, flat, lane, w.lo, w.hi, w.last, pre.v, pre.sc0);
  }
}

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_DISPATCH_PULL_CUH_
