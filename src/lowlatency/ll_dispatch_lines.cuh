/*************************************************************************
 * epcomm LL dispatch, flagged-line protocol: FP8 dedup messages as 128-byte
 * lines that carry their own epoch flag, picks ranked by the sender.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Why (measurements in bench/results/ll_notes.md): with the release protocol
 * (ll_dispatch.cu) a message is usable only once its sender released it, and
 * a system-scope release completes when ALL of the GPU's NVLink writes have
 * drained, i.e. at the end of the link phase; the receiver's fan-out copy
 * then follows the link phase, and the sender first builds its routing table
 * (j of every pick) before its first store. Here:
 *  - nothing waits on a release: a line is taken as soon as its flag unit
 *    shows the epoch (ll_lines.cuh; the 128-byte property is checked by the
 *    LlLinesStress GPU test);
 *  - the sources rank their own picks (a pick's row among the source's
 *    tokens of its expert: popcounts of a per-expert token bitmap built while
 *    flow control is pending) and store, first thing, their count of each of
 *    a rank's experts and one routing word per (token, top-k slot) to every
 *    rank (local expert and row there, or "not here"); a receiving block
 *    needs only the counts (its row bases) before it copies, and each unit's
 *    own routing words;
 *  - in a fused call a few blocks send (EP_LL_SEND_SMS), token-major, and the
 *    others receive token-major, so early tokens are copied into their rows
 *    while later ones are still on the link.
 *
 * Source (phase bit 1): the publishing blocks (Publishers) build the
 * token bitmaps (build_source_bits), then, after flow control (every peer has finished
 * receiving the previous use of this set):
 *  - the T word (T, blocks, mode), the per-expert counts (info words) and the
 *    routing and weight words, to every rank; self-validating tagged words,
 *    no flag (publish_routing);
 *  - then their (token, 512-channel chunk) tasks, token-major: the
 *    token's K ids give its destination ranks (dedup: one copy per rank),
 *    the chunk is cast to e4m3 and stored as kLinesPerChunk lines into slot
 *    [me][t] of each destination.
 * Receiver (phase bit 2), the receiving blocks: lines_recv_meta (T words and
 * counts -> row bases), then units (token, source, part), sources fastest,
 * taken from a per-block queue by free warps: the unit's routing words give
 * its rows (a token with no local expert only writes its handle entries),
 * then the part's lines, polled until every flag shows the epoch, are
 * written into each row (scales converted as the output format asks). Same
 * outputs, row order and handle as the release protocol.
 * The receive path is latency-bound code (16 warps per SM, cold instruction
 * cache at every launch): no runtime integer division in it (FastDiv), and
 * loads that do not depend on each other are issued together.
 *************************************************************************/
#ifndef EP_LL_DISPATCH_LINES_CUH_
#define EP_LL_DISPATCH_LINES_CUH_

#include "lowlatency/ll_dispatch_common.cuh"
#include "lowlatency/ll_lines.cuh"

namespace ep {
namespace ll {

// Blocks of a fused lines call that send (the others receive): the knob, at
// most half the grid (a small numSms keeps receivers); every block does both
// when the knob is 0 or the grid has a single block, and in a call that runs
// one phase only.
__device__ __forceinline__ int lines_send_blocks(const DispatchParams& p, bool fused) {
  const int S = min(p.sendBlocks, (int)gridDim.x / 2);
  return (fused && S > 0) ? S : (int)gridDim.x;
}

// The blocks that publish this source's routing (token bitmaps, T word,
// counts, routing and weight words), block-major (item i on publishing block
// first + i / blockDim): EP_LL_PUBLISH_SMS receiving blocks of a fused call
// (then the bitmaps and the routing stores are off the sending blocks' way to
// their first line, and those blocks receive afterwards), or with 0 or no
// receiving blocks, the sending blocks.
struct Publishers {
  int first, count;
  __device__ __forceinline__ bool has(int vb) const { return vb >= first && vb < first + count; }
  __device__ __forceinline__ int item0() const { return (vblock() - first) * (int)blockDim.x + (int)threadIdx.x; }
};
__device__ __forceinline__ Publishers lines_publishers(const DispatchParams& p, int nsend) {
  const int nrecv = (int)gridDim.x - nsend;
  if (p.publishBlocks > 0 && nrecv > 0) return Publishers{nsend, min(p.publishBlocks, nrecv)};
  return Publishers{0, nsend};
}

// The publishing blocks rank this source's picks themselves: sm.bits[e * Wt
// + word] is the bitmap of this source's tokens that picked expert e (built by
// every publishing block while flow control is pending), so a pick's row among
// this source's tokens of its expert (j) and each expert's count are popcounts.
// Why: a receiver then needs only every source's per-expert counts (its row
// bases) before it copies, not every source's whole routing; deriving rows
// from all routing words kept the receivers from copying until ~9 us into a
// T=128 call, after the link phase (ll_notes.md round 8).
constexpr int kBitsBatch = 4;  // top-k ids a thread loads before it sets any bit
__device__ void build_source_bits(const DispatchParams& p, const DSmem& sm) {
  const int Wt = (p.M + 31) / 32, TK = p.T * p.K, nt = blockDim.x;
#pragma unroll 1
  for (int i = threadIdx.x; i < p.E * Wt; i += nt) sm.bits[i] = 0;
  __syncthreads();
#pragma unroll 1
  for (int i0 = threadIdx.x; i0 < TK; i0 += nt * kBitsBatch) {
    long long id[kBitsBatch];
#pragma unroll
    for (int q = 0; q < kBitsBatch; q++) id[q] = i0 + q * nt < TK ? load_topk(p.topk, p.topk64, i0 + q * nt) : -1;
#pragma unroll
    for (int q = 0; q < kBitsBatch; q++) {
      if (id[q] < 0 || id[q] >= p.E) continue;
      const int t = (int)p.divK.div((uint32_t)(i0 + q * nt));
      atomicOr(&sm.bits[(int)id[q] * Wt + (t >> 5)], 1u << (t & 31));
    }
  }
  __syncthreads();
}

// The routing word of top-k entry (t, id as loaded) for rank d: the pick's
// local expert at d (low 16 bits) and its row j among this source's tokens of
// that expert (high 16 bits), or 0xffffffff when the expert is not at d, the
// entry is masked or out of range.
__device__ __forceinline__ uint32_t route_word(const DSmem& sm, int Wt, long long id, int t, int d, int E, int L) {
  if (id < 0 || id >= E || (int)id / L != d) return 0xffffffffu;
  return ((uint32_t)bits_rank(sm.bits + (int)id * Wt, t) << 16) | (uint32_t)((int)id - d * L);
}
__device__ __forceinline__ uint32_t route_weight(const DispatchParams& p, int tk) {
  return p.weights ? __float_as_uint(__ldg(p.weights + tk)) : 0u;
}

// A publishing thread's first routing item (destination d, slot tk): its id
// and weight, loaded at kernel start together with the first task's channels,
// so the routing stores leave right after flow control.
struct RoutePre {
  long long id = -1;
  uint32_t w = 0;
};
__device__ __forceinline__ RoutePre prefetch_routing(const DispatchParams& p, const Publishers& pub) {
  RoutePre r;
  const int TK = p.T * p.K, i = pub.item0();
  if (i < p.R * TK) {
    const int tk = i % TK;
    r.id = load_topk(p.topk, p.topk64, tk);
    r.w = route_weight(p, tk);
  }
  return r;
}

// From the first publishing block, to every rank d: the T word and this
// source's count of each of d's experts (info words 2 + le); from all
// publishing blocks: the routing words (route_word) and weight words of this
// rank, to every rank. pre: this thread's first item, prefetched.
__device__ void publish_routing(const DispatchParams& p, const DSmem& sm, uint32_t epoch, const Publishers& pub,
                                const RoutePre& pre) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, E = p.E, L = p.L, me = p.rank, TK = p.T * K, Wt = (M + 31) / 32;
  const size_t mine = sa.infoOff + (size_t)me * sa.infoStride;
  if (vblock() == pub.first) {
#pragma unroll 1
    for (int d = threadIdx.x; d < R; d += blockDim.x)
      st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, mine), tagged(epoch, dispatch_tword(p)));
    publish_expert_counts(p, sm.bits, Wt, epoch);
  }
  const int first = pub.item0();
#pragma unroll 1
  for (int i = first; i < R * TK; i += pub.count * (int)blockDim.x) {
    const int d = i / TK, tk = i - d * TK, t = tk / K, k = tk - t * K;
    const long long id = i == first ? pre.id : load_topk(p.topk, p.topk64, tk);
    if (!(id >= 0 && id < E) && id != -1 && d == 0)
      dev::record_error(sa.status, kFamilyLL, EP_DEVERR_BAD_EXPERT_ID, t, k, id);
    st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, sa.routeOff + routeIdRel(M, K, me, t, k)),
                       tagged(epoch, route_word(sm, Wt, id, t, d, E, L)));
    if (p.weights)
      st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, sa.routeOff + routeWeightRel(M, K, me, t, k)),
                         tagged(epoch, i == first ? pre.w : route_weight(p, tk)));
  }
}

// Lane k < K: the validated expert of top-k slot k of token t (-1: masked,
// out of range -- publish_routing reports that -- or no such lane).
__device__ __forceinline__ int token_expert(const DispatchParams& p, int t) {
  const int lane = threadIdx.x & 31;
  if (t >= p.T || lane >= p.K) return -1;
  const long long id = load_topk(p.topk, p.topk64, t * p.K + lane);
  return (id >= 0 && id < p.E) ? (int)id : -1;
}

// Destinations of a token whose top-k slot `lane` holds expert e (-1: none):
// each lane's rank, and one lane per distinct rank (dedup).
__device__ __forceinline__ unsigned dest_lanes(int e, int L, int* dest) {
  *dest = e >= 0 ? e / L : -1;
  return __ballot_sync(0xffffffffu, first_lane_of_rank(*dest));
}

// Casts chunk c of token t (this lane's 16 channels in v0/v1) and stores its
// kLinesPerChunk lines to every rank in umask (lane k of umask holds that
// rank in dest). The lane groups 8g..8g+7 write line g of an instruction.
__device__ __forceinline__ void send_chunk_lines(const DispatchParams& p, int t, int c, unsigned umask, int dest,
                                                 int4 v0, int4 v1, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const int lane = threadIdx.x & 31, g = lane >> 3, i = lane & 7;
  // Units of the chunk's two line store instructions: lines 0-3 (all lanes), line 4 (lanes 0-7).
  const int src0 = i < kLineUnits ? g * kLineUnits + i : 0;
  const int src1 = 4 * kLineUnits + (i & 3);
  float scale = 0.f;
  const int4 q = cast_fp8(v0, v1, p.roundScale, &scale);
  int4 a = shfl_unit(q, src0);
  int4 b = shfl_unit(q, src1);
  const int s0 = __shfl_sync(0xffffffffu, __float_as_int(scale), 0);
  const int s1 = __shfl_sync(0xffffffffu, __float_as_int(scale), 8);
  const int s2 = __shfl_sync(0xffffffffu, __float_as_int(scale), 16);
  const int s3 = __shfl_sync(0xffffffffu, __float_as_int(scale), 24);
  if (i == 4) b = make_int4(s0, s1, s2, s3);
  if (i == 5 || i == 6) b = make_int4(0, 0, 0, 0);
  if (i == 7) a = b = flag_unit(epoch);
  const size_t off = sa.lineOff + ((size_t)p.rank * p.M + t) * sa.lineStride + (size_t)kLinesPerChunk * c * kLineBytes;
  while (umask) {
    const int k = __ffs(umask) - 1;
    umask &= umask - 1;
    const int d = __shfl_sync(0xffffffffu, dest, k);
    int4* line = sa.ps.ptr<int4>(d, off);
    line_st(line + lane, a);
    if (lane < 8) line_st(line + 32 + lane, b);
  }
}

// The sending blocks' tasks (token t, chunk c), token-major; pre0/pre1 the
// first task's channels (loaded before flow control). A warp loads its next
// task's channels and ids before it stores the current task's lines.
// e0: token_expert of the first task's token (prefetched with its channels).
// (Tasks from a shared ticket counter instead of this static stride balanced
// the sending SMs' end times but not the call: the link is the bound,
// EP_LL_SEND_QUEUE in ll_notes.md round 8.)
__device__ void send_lines(const DispatchParams& p, uint32_t epoch, int nsend, int4 pre0, int4 pre1, int e0) {
  const int C = (p.H + kChunk - 1) / kChunk, nw = blockDim.x >> 5;
  const int ntask = p.T * C, task0 = first_task(), stride = nsend * nw;
  int4 v0 = pre0, v1 = pre1;
  int e = e0;
  for (int task = task0; task < ntask; task += stride) {
    int4 n0, n1;
    load_chunk(p, task + stride, &n0, &n1);
    const int ne = token_expert(p, (task + stride) / C);
    const int t = task / C, c = task - t * C;
    int dest;
    const unsigned umask = dest_lanes(e, p.L, &dest);
    if (umask != 0) send_chunk_lines(p, t, c, umask, dest, v0, v1, epoch);
    v0 = n0;
    v1 = n1;
    e = ne;
  }
}

// Receive bookkeeping of a receiving block: every source's T word and its
// counts of this rank's experts (info words, publish_routing), polled
// together, one item per thread; then the row bases (recv_bases). sm.sW[s]
// holds whether source s sent weights. Returns false (block-uniform) on a
// timeout or a mode mismatch (recorded).
__device__ bool lines_recv_meta(const DispatchParams& p, const DSmem& sm, uint32_t epoch, int* sFail, Prof& prof) {
  const SetArgs& sa = p.sa;
  const int R = p.R, L = p.L, nt = blockDim.x;
#pragma unroll 1
  for (int c = threadIdx.x; c < R * (L + 1); c += nt) {
    const bool tw = c < R;  // items 0..R-1: T words; then (source, local expert) counts
    const int s = tw ? c : (int)p.divL.div((uint32_t)(c - R)), le = tw ? -1 : c - R - s * L;
    const uint64_t* w = sa.ps.local_ptr<uint64_t>(sa.infoOff + (size_t)s * sa.infoStride) + (tw ? 0 : 2 + le);
    uint32_t v = 0;
    // Relaxed: the words order nothing after them (routing words and lines carry their own tags).
    if (!wait_tag<false>(w, epoch, sa, kWaitMeta, s, &v) || (tw && !mode_matches(p, s, tword_mode(v)))) {
      *sFail = 1;
      continue;
    }
    if (tw) {
      sm.sT[s] = tword_tokens(v);
      sm.sG[s] = tword_blocks(v);
      sm.sW[s] = (tword_mode(v) & kModeWeights) != 0;
    } else {
      sm.sCnt[le * R + s] = (int)v;
    }
  }
  __syncthreads();
  prof.mark(7);
  if (*sFail) return false;
  recv_bases(p, sm);  // its barrier publishes the bases
  return true;
}

// The 4 scales of chunk c (one unit) into row f's scale entries.
__device__ __forceinline__ void store_chunk_scales(const DispatchParams& p, int f, int c, int4 sv) {
  const int RM = p.R * p.M, G = p.H / 128, S = p.ue8m0 ? (G + 3) / 4 : G;
  const int fe = (int)p.divRM.div((uint32_t)f), fr = f - fe * RM;  // local expert, row in it
  if (p.ue8m0) {
    uint32_t word = 0;
    for (int q = 0; q < 4; q++)
      if (4 * c + q < G) word |= (((uint32_t)comp(sv, q) >> 23) & 0xffu) << (8 * q);
    const size_t idx = p.scaleMn ? ((size_t)fe * S + c) * RM + fr : (size_t)f * S + c;
    static_cast<uint32_t*>(p.recvScales)[idx] = word;
    return;
  }
  for (int q = 0; q < 4 && 4 * c + q < G; q++) {
    const int gi = 4 * c + q;
    const size_t idx = p.scaleMn ? ((size_t)fe * S + gi) * RM + fr : (size_t)f * S + gi;
    static_cast<uint32_t*>(p.recvScales)[idx] = (uint32_t)comp(sv, q);
  }
}

// Line loads per lane in flight (4 lines each). With 5, a lane's group holds
// lines lb + g, lb + 4 + g, ..., 5 consecutive residues mod kLinesPerChunk:
// at most ONE of them is a chunk's scale line.
constexpr int kLineLoads = 5;
static_assert(kLineLoads <= kLinesPerChunk, "one scale unit per lane per batch");

// The receiving blocks' units (token t, source s, part), sources fastest (the
// senders go token-major); consecutive units on different blocks, so the few
// units of a small T spread over many SMs. nsend: sending blocks of this
// kernel (its receivers are the virtual blocks from nsend up), 0 in a
// receive-only kernel.
// The next unit index of this block's queue (lane 0 takes it, the warp shares it).
__device__ __forceinline__ int grab_unit(int* next) {
  int m = 0;
  if ((threadIdx.x & 31) == 0) m = atomicAdd(next, 1);
  return __shfl_sync(0xffffffffu, m, 0);
}

// unitT (EP_LL_PROFILE=2, else nullptr): warp 0's first unit stamps (rows
// worked out, lines there, stores issued) and its end, for the timeline.
__device__ void recv_lines(const DispatchParams& p, const DSmem& sm, uint32_t epoch, int nsend, int* next,
                           unsigned long long* waitNs, unsigned long long* unitT) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, H = p.H;
  const int RM = R * M, P = p.recvSplit, MK = M * K;
  const int C = (H + kChunk - 1) / kChunk, cpp = (C + P - 1) / P;  // chunks per part
  const int lane = threadIdx.x & 31, g = lane >> 3, i = lane & 7;
  const int nrb = (int)gridDim.x - nsend, vb = vblock() - nsend;
  const uint64_t* words = sa.ps.local_ptr<uint64_t>(sa.routeOff);
  char* const outX = static_cast<char*>(p.recvX);
  // The block's units up = vb + nrb * m are taken in m order (tokens
  // ascending, as the senders go) by whichever warp is free (*next, zeroed
  // at kernel start): a warp whose unit has no local expert or whose
  // lines were there early takes the next one at once, so the last tokens'
  // units are not queued behind a busy warp's first unit (the static map gave
  // 3 warps per block two whole units, ending ~2.5 us after the others:
  // ll_notes.md round 7).
  const int nm = (RM * P - vb + nrb - 1) / nrb;
  for (int m = grab_unit(next); m < nm; m = grab_unit(next)) {
    const int up = vb + nrb * m;
    const int uu = (int)p.divP.div((uint32_t)up), part = up - uu * P;
    const int t = (int)p.divR.div((uint32_t)uu), s = uu - t * R;
    if (t >= sm.sT[s]) continue;
    const int u = s * M + t;
    const int c0 = min(C, part * cpp), c1 = min(C, c0 + cpp);
    if (c0 >= c1 && part != 0) continue;
    // The part's first line batch in flight while the slots' rows are worked
    // out (the loads do not depend on them): one round trip, not two. (A
    // token with no expert here, ~10 % of them at EP4 top-8, has no lines:
    // those loads are dropped, never waited for.)
    const int4* slot = sa.ps.local_ptr<int4>(sa.lineOff + (size_t)u * sa.lineStride);
    const int dHi = kLinesPerChunk * c1, lb0 = kLinesPerChunk * c0;
    int4 v[kLineLoads];
    unsigned need = issue_lines(slot, lb0, min(dHi, lb0 + 4 * kLineLoads), v);
    // Slot `lane` of (s, t): its row (the routing word: local expert and row
    // among the source's tokens of it) and weight.
    int flat = -1;
    float wv = 0.f;
    bool ok = true;
    if (lane < K) {
      // The id and weight words in flight together (one round trip, not two).
      const uint64_t* wid = words + 2 * (size_t)s * MK + t * K + lane;
      const bool hasW = sm.sW[s] != 0;
      const uint64_t iw = ld_relaxed_sys_u64(wid);
      const uint64_t ww = hasW ? ld_relaxed_sys_u64(wid + MK) : 0;
      uint32_t id = (uint32_t)iw;
      if ((uint32_t)(iw >> 32) != epoch) ok = wait_tag<false>(wid, epoch, sa, kWaitMeta, s, &id);
      if (ok && id != 0xffffffffu) {
        const int le = (int)(id & 0xffffu), j = (int)(id >> 16);
        flat = le * RM + sm.base[le * R + s] + j;
        if (hasW) {
          uint32_t wb = (uint32_t)ww;
          if ((uint32_t)(ww >> 32) != epoch) ok = wait_tag<false>(wid + MK, epoch, sa, kWaitMeta, s, &wb);
          wv = __uint_as_float(wb);
        }
      }
    }
    if (!__all_sync(0xffffffffu, ok)) continue;  // timed out (recorded)
    if (part == 0) {
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
    const unsigned tmask = __ballot_sync(0xffffffffu, flat >= 0);
    if (tmask == 0) continue;  // no expert of this token here: no lines
    const bool stampUnit = unitT != nullptr && threadIdx.x == 0 && unitT[0] == 0;
    if (stampUnit) unitT[0] = dev::globaltimer_ns();
    for (int lb = lb0; lb < dHi; lb += 4 * kLineLoads) {
      const int le = min(dHi, lb + 4 * kLineLoads);
      if (lb != lb0) need = issue_lines(slot, lb, le, v);
      if (!(p.devSkip & 2) && !wait_lines(sa, slot, lb, epoch, s, v, need, waitNs)) return;
      if (stampUnit && lb == lb0) unitT[1] = dev::globaltimer_ns();
      // Where each loaded unit goes: a byte offset in the row (>= 0) or
      // nowhere (-1); the one scale unit this lane may hold (chunk sc, unit sv).
      int dst[kLineLoads];
      int sc = -1;
      int4 sv = make_int4(0, 0, 0, 0);
#pragma unroll
      for (int r = 0; r < kLineLoads; r++) {
        const int ln = lb + 4 * r + g;
        const int c = ln / kLinesPerChunk, pu = (ln - c * kLinesPerChunk) * kLineUnits + i;
        dst[r] = -1;
        if (ln < le && i != 7) {
          if (pu < 32 && c * kChunk + pu * 16 < H) dst[r] = c * kChunk + pu * 16;
          else if (pu == 32) {
            sc = c;
            sv = v[r];
          }
        }
      }
      unsigned m = (p.devSkip & 5) == 5 ? 0u : tmask;
      while (m) {
        const int k = __ffs(m) - 1;
        m &= m - 1;
        const int f = __shfl_sync(0xffffffffu, flat, k);
        char* row = outX + (size_t)f * H;
        if (!(p.devSkip & 1)) {
#pragma unroll
          for (int r = 0; r < kLineLoads; r++)
            if (dst[r] >= 0) *reinterpret_cast<int4*>(row + dst[r]) = v[r];
        }
        if (sc >= 0 && !(p.devSkip & 4)) store_chunk_scales(p, f, sc, sv);
      }
    }
    if (stampUnit) unitT[2] = dev::globaltimer_ns();
  }
  if (unitT != nullptr && threadIdx.x == 0) unitT[3] = dev::globaltimer_ns();
}

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_DISPATCH_LINES_CUH_
