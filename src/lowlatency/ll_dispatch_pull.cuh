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

// Receive bookkeeping, every block, in two dependent steps: the sources' T
// words; then, in one batch per thread, all their routing words (loaded
// first, checked after; sources store them first thing, so they are there
// well before the staged messages); then counts and bases (recv_bases). The routing
// goes into sm.bits[(le * R + s) * Wt + word] (token bitmap of local expert
// le from source s) and sm.hasLocal[s * Wt + word]; sm.nOut[s] holds whether
// source s sent weights. Returns false (block-uniform) on a timeout or a mode
// mismatch (recorded).
__device__ bool pull_recv_meta(const DispatchParams& p, const DSmem& sm, uint32_t epoch, int* sFail, Prof& prof) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, L = p.L, me = p.rank, MK = M * K, RMK = R * MK;
  const int Wt = (M + 31) / 32, tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < L * R * Wt; i += nt) sm.bits[i] = 0;
  for (int i = tid; i < R * Wt; i += nt) sm.hasLocal[i] = 0;
  for (int s = tid; s < R; s += nt) {
    uint32_t v = 0;
    // Relaxed: the T word orders nothing after it (routing words carry their own tags, data has its flags).
    if (!wait_tag<false>(sa.ps.local_ptr<uint64_t>(sa.infoOff + (size_t)s * sa.infoStride), epoch, sa, kWaitMeta, s, &v) ||
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
  const uint64_t* ids = sa.ps.local_ptr<uint64_t>(sa.pullOff);
  for (int i0 = tid; i0 < RMK; i0 += nt * kPollBatch) {
    uint64_t w[kPollBatch];
#pragma unroll
    for (int q = 0; q < kPollBatch; q++) {
      const int i = i0 + q * nt, s = i / MK, t = (i - s * MK) / K;
      w[q] = (i < RMK && t < sm.sT[s]) ? ld_relaxed_sys_u64(ids + 2 * (size_t)s * MK + (i - s * MK)) : 0;
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
// message, as in the push receive). A unit waits for the source blocks that
// staged its slice (one poll round, lane-parallel), then issues its one NVLink
// round trip -- the slice and, for the last part, the scales -- and reads its
// routing words (local) while that is in flight.
template <bool kFp8>
__device__ void pull_recv_units(const DispatchParams& p, const DSmem& sm, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, H = p.H, L = p.L, me = p.rank;
  const int RM = R * M, P = p.recvSplit, MK = M * K, Wt = (M + 31) / 32;
  const int n16 = kFp8 ? H / 16 : H / 8;
  const int per = ((n16 + P - 1) / P + 31) / 32 * 32;  // a slice: whole warp-wide steps
  const int C = (H + kChunk - 1) / kChunk, epc = kChunk / (kFp8 ? 16 : 8);  // int4 elements per chunk
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const uint64_t* words = sa.ps.local_ptr<uint64_t>(sa.pullOff);
  for (int up = vblock() * nw + warp; up < RM * P; up += gridDim.x * nw) {
    const int u = up / P, part = up - u * P;
    const int s = u / M, t = u - s * M;
    if (t >= sm.sT[s]) continue;
    const int lo = min(n16, part * per), hi = min(n16, lo + per);
    const bool last = part == P - 1;
    const bool local = (sm.hasLocal[s * Wt + (t >> 5)] >> (t & 31)) & 1u;
    if (!local) {  // nothing here: only the handle entries (part 0)
      if (part == 0 && lane < K) {
        p.hFlatRow[(size_t)u * K + lane] = -1;
        p.hW[(size_t)u * K + lane] = 0.f;
      }
      continue;
    }
    if (lo >= hi && part != 0 && !last) continue;
    const int cLo = lo / epc, cHi = lo < hi ? (hi - 1) / epc : -1;
    if (!wait_src_blocks(sa, R, s, sm.sG[s], t, C, false, cLo, cHi, kFp8 && last, epoch, lane)) continue;  // timed out
    const char* msg = sa.ps.ptr<const char>(s, sa.stageOff + (size_t)t * p.msgStride);
    int4 v[kPullCopyU];
    load_batch(reinterpret_cast<const int4*>(msg), lo, hi, lane, v);
    const uint32_t sc0 = first_scale<kFp8>(p, msg, last, lane);
    // Slot `lane` of (s, t): its local expert and weight (the meta pass saw
    // the id words; the weight word is a separate store: checked too).
    int flat = -1;
    float w = 0.f;
    bool ok = true;
    if (lane < K) {
      const uint64_t* wid = words + 2 * (size_t)s * MK + t * K + lane;
      uint64_t iw = ld_relaxed_sys_u64(wid), ww = sm.nOut[s] ? ld_relaxed_sys_u64(wid + MK) : 0;
      uint32_t id = (uint32_t)iw, wb = (uint32_t)ww;
      if ((uint32_t)(iw >> 32) != epoch) ok = wait_tag<false>(wid, epoch, sa, kWaitMeta, s, &id);
      const int le = (int)id - me * L;
      if (ok && id != 0xffffffffu && le >= 0 && le < L) {
        const uint32_t* row = sm.bits + (le * R + s) * Wt;
        int j = __popc(row[t >> 5] & ((1u << (t & 31)) - 1u));
        for (int q = 0; q < (t >> 5); q++) j += __popc(row[q]);
        flat = le * RM + sm.base[le * R + s] + j;
        if (sm.nOut[s]) {
          if ((uint32_t)(ww >> 32) != epoch) ok = wait_tag<false>(wid + MK, epoch, sa, kWaitMeta, s, &wb);
          w = __uint_as_float(wb);
        }
      }
    }
    if (!__all_sync(0xffffffffu, ok)) continue;  // timed out (recorded)
    if (part == 0) {
      if (lane < K) {
        const size_t hi2 = (size_t)u * K + lane;
        p.hFlatRow[hi2] = flat;
        p.hW[hi2] = w;
      }
      if (flat >= 0) {
        if (p.srcInfo) p.srcInfo[flat] = t;
        if (p.recvW) p.recvW[flat] = w;
      }
    }
    const unsigned lmask = __ballot_sync(0xffffffffu, flat >= 0);
    copy_message<kFp8>(p, msg, lmask, flat, lane, lo, hi, last, v, sc0);
  }
}

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_DISPATCH_PULL_CUH_
