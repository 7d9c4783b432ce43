/*************************************************************************
 * epcomm LL dispatch kernel: send phase (FP8 cast + one-sided puts) and
 * receive phase (fan-out into the per-expert layout).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Two protocols share this kernel (a template flag): the release protocol,
 * described here, for BF16 and per-expert sends and peers on other nodes;
 * and flagged lines (ll_dispatch_lines.cuh) for FP8 dedup calls among NVLink
 * peers.
 *
 * The critical path of a call is a chain of dependent round trips, so the
 * protocol keeps it to the fewest:
 * Send (phase bit 1), every block:
 *  - builds this rank's routing table in shared memory (validated ids, and
 *    j = the token's rank among this rank's tokens of each expert); the ack
 *    poll of flow control overlaps with it;
 *  - the last block stores, per destination, one tagged 64-bit word per local expert
 *    there (token count) plus the source's T and the chunk messages it sends:
 *    (epoch << 32) | value, so the receiver polls each word directly;
 *  - warps take (token, 512-channel chunk) tasks: cast to FP8 (or keep BF16)
 *    and store straight into each destination's slot (once per destination
 *    rank with dedup, once per expert without); the chunk-0 warp also stores
 *    the token's header there (per top-k slot: le * M + j, weight);
 *  - one release store per destination of blkDone[me][block] = epoch (the
 *    block's messages are complete there).
 * Receive (phase bit 2), every block: one thread per tagged word (in
 * parallel, no per-source loop). Base rows per (local expert, source) come
 * from a prefix over sources in shared memory. p.recvSplit warps per
 * (source, token) message: each waits only for the source blocks that wrote
 * the parts it reads (the task -> block map is fixed: the sender's block
 * count comes with its T word), then loads the header and its slice together
 * and writes the slice to each of the message's rows (deterministic order:
 * source rank, then token index), srcInfo, weights and the handle. Messages
 * are copied while the sources' later blocks are still sending; no
 * grid-wide barrier, no last-block atomic.
 *************************************************************************/
#include <cuda_runtime.h>

#include "core/checks.h"
#include "lowlatency/ll_dispatch_common.cuh"
#include "lowlatency/ll_dispatch_lines.cuh"

namespace ep {
namespace ll {

namespace {

constexpr int kCopyU = 16;  // int4 per lane per batch of a receive copy (8 KB per warp in flight)

// Every block of the send phase: the routing table, in shared memory. Each
// block builds it itself (8 KB of ids from L2) rather than waiting for one
// block to publish it: no inter-block dependency on the critical path.
__device__ void build_table(const DispatchParams& p, const DSmem& sm) {
  const int K = p.K, E = p.E, L = p.L, T = p.T, R = p.R;
  const int Wt = (T + 31) / 32, TK = T * K;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < TK; i += nt) {
    long long id = load_topk(p.topk, p.topk64, i);
    bool valid = id >= 0 && id < E;
    if (!valid && id != -1 && blockIdx.x == 0)
      dev::record_error(p.sa.status, kFamilyLL, EP_DEVERR_BAD_EXPERT_ID, i / K, i % K, id);
    sm.ids[i] = valid ? (int)id : -1;
  }
  for (int i = tid; i < E * Wt; i += nt) sm.bits[i] = 0;
  for (int d = tid; d < R; d += nt) sm.nOut[d] = 0;
  __syncthreads();
  for (int i = tid; i < TK; i += nt) {
    int e = sm.ids[i];
    if (e < 0) continue;
    int t = i / K;
    atomicOr(&sm.bits[e * Wt + (t >> 5)], 1u << (t & 31));
    if (blockIdx.x == gridDim.x - 1) {  // messages per destination (only the last block announces them)
      int d = e / L;
      bool dup = false;
      if (p.dedup)
        for (int k2 = t * K; k2 < i; k2++) dup |= sm.ids[k2] >= 0 && sm.ids[k2] / L == d;
      if (!dup) atomicAdd(&sm.nOut[d], 1);
    }
  }
  __syncthreads();
  for (int i = tid; i < TK; i += nt) {
    int e = sm.ids[i];
    int j = -1;
    if (e >= 0) j = bits_rank(sm.bits + e * Wt, i / K);
    sm.jpos[i] = j;
  }
  __syncthreads();
}

// The last block (block 0 publishes acks, see ll_common.cuh): the tagged count
// words and the (T, chunk messages) words, to every rank.
__device__ void send_counts(const DispatchParams& p, const DSmem& sm, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const int R = p.R, me = p.rank, C = (p.H + kChunk - 1) / kChunk;
  const size_t mine = sa.infoOff + (size_t)me * sa.infoStride;
  publish_expert_counts(p, sm.bits, (p.T + 31) / 32, epoch);
  for (int d = threadIdx.x; d < R; d += blockDim.x) {
    st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, mine), tagged(epoch, dispatch_tword(p)));
    st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, mine + sizeof(uint64_t)), tagged(epoch, (uint32_t)(sm.nOut[d] * C)));
  }
}


// pre0/pre1: the first task's channels, loaded before the routing table was
// built (the x load is independent of the routing: one round trip less).
template <bool kFp8>
__device__ void send_tokens(const DispatchParams& p, const DSmem& sm, uint32_t epoch, int4 pre0, int4 pre1) {
  const SetArgs& sa = p.sa;
  const int K = p.K, H = p.H, L = p.L, M = p.M, me = p.rank;
  const int C = (H + kChunk - 1) / kChunk;
  const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int ntask = p.T * C;
  const int task0 = first_task();
  for (int task = task0; task < ntask; task += gridDim.x * nw) {
    int t = task / C, c = task - t * C;
    int e = lane < K ? sm.ids[t * K + lane] : -1;
    bool valid = e >= 0;
    int dest = valid ? e / L : -1;
    unsigned peers = __match_any_sync(0xffffffffu, valid ? dest : (0x40000000 | lane));
    unsigned umask = __ballot_sync(0xffffffffu, valid && (__ffs(peers) - 1 == lane));  // one lane per rank
    unsigned kmask = p.dedup ? umask : __ballot_sync(0xffffffffu, valid);
    if (kmask == 0) continue;
    int ch0 = c * kChunk + lane * 16;
    bool active = ch0 < H;
    int4 v0 = pre0, v1 = pre1;
    if (task != task0) load_chunk(p, task, &v0, &v1);
    if (c == 0) {  // the token's header, once per destination rank
      int j = lane < K ? sm.jpos[t * K + lane] : -1;
      float w = (valid && p.weights) ? __ldg(p.weights + t * K + lane) : 0.f;
      unsigned m = umask;
      while (m) {
        int k = __ffs(m) - 1;
        m &= m - 1;
        int d = __shfl_sync(0xffffffffu, dest, k);
        DispatchHdr* h = sa.ps.ptr<DispatchHdr>(d, sa.hdrOff + ((size_t)me * M + t) * sizeof(DispatchHdr));
        if (lane < K) {
          dev::st_na(&h->pick[lane], (valid && dest == d) ? (e - d * L) * M + j : -1);
          dev::st_na(reinterpret_cast<int*>(&h->w[lane]), __float_as_int(w));
        }
        if (lane == 0) dev::st_na(&h->epoch, (int)epoch);
      }
    }
    int4 q;
    float scale = 0.f;
    if (kFp8) q = cast_fp8(v0, v1, p.roundScale, &scale);
    while (kmask) {
      int k = __ffs(kmask) - 1;
      kmask &= kmask - 1;
      int d = __shfl_sync(0xffffffffu, dest, k);
      size_t slot = p.dedup ? (size_t)me * M + t : ((size_t)me * M + t) * K + k;
      char* msg = sa.ps.ptr<char>(d, sa.dataOff + slot * p.msgStride);
      if (active) {
        if (kFp8) {
          dev::st_na(reinterpret_cast<int4*>(msg + ch0), q);
          if ((lane & 7) == 0) dev::st_na(reinterpret_cast<int*>(msg + H + 4 * (ch0 / 128)), __float_as_int(scale));
        } else {
          int4* dst = reinterpret_cast<int4*>(msg + 2 * (size_t)ch0);
          dev::st_na(dst, v0);
          dev::st_na(dst + 1, v1);
        }
      }
    }
  }
}

// Receive bookkeeping, every block: the tagged words (tokens and sending
// blocks, per-expert counts) polled in parallel, one thread each; they are
// written right after the sender's table, well before its data is done. The
// data itself is waited for per message (recv_tokens). Returns false
// (block-uniform) on timeout.
__device__ bool recv_meta(const DispatchParams& p, const DSmem& sm, uint32_t epoch, int* sFail) {
  const SetArgs& sa = p.sa;
  const int R = p.R, L = p.L, nwd = 2 + L;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < R * nwd; i += nt) {
    int s = i / nwd, w = i - s * nwd;
    const uint64_t* pw = sa.ps.local_ptr<uint64_t>(sa.infoOff + (size_t)s * sa.infoStride + sizeof(uint64_t) * w);
    uint32_t v = 0;
    if (w == 1) continue;  // chunk messages: informational (the data is waited for per message)
    // Another node: info, headers and messages landed once its DATA word reaches the epoch (ll_remote.cuh);
    // its blkDone flags are not shipped, so recv_tokens skips them for that source.
    if (rm_remote(sa, s) && !rm_wait(sa, kRemoteData, s, epoch, kWaitData)) {
      *sFail = 1;
      continue;
    }
    if (!wait_tag(pw, epoch, sa, kWaitMeta, s, &v)) {
      *sFail = 1;
      continue;
    }
    if (w == 0) {
      if (!mode_matches(p, s, tword_mode(v))) {
        *sFail = 1;
        continue;
      }
      sm.sT[s] = tword_tokens(v);
      sm.sG[s] = tword_blocks(v);
    } else {
      sm.sCnt[(w - 2) * R + s] = (int)v;
    }
  }
  __syncthreads();
  if (*sFail) return false;
  recv_bases(p, sm);
  return true;
}

// Loads int4 elements [base, min(base + 32 * kCopyU, end)) of src, lane-strided.
__device__ __forceinline__ void load_batch(const int4* src, int base, int end, int lane, int4 (&v)[kCopyU]) {
#pragma unroll
  for (int u = 0; u < kCopyU; u++) {
    int i = base + u * 32 + lane;
    if (i < end) v[u] = dev::ld_nc_na(src + i);
  }
}

// Scale entry `i` of a received FP8 message as stored in the output: float
// bits of group i, or with ue8m0 the packed exponent word i (groups 4i..4i+3).
__device__ __forceinline__ uint32_t scale_entry(const DispatchParams& p, const float* sc, int G, int i) {
  if (!p.ue8m0) return __float_as_uint(__ldcg(sc + i));
  uint32_t word = 0;
  for (int j = 0; j < 4 && 4 * i + j < G; j++) word |= ((__float_as_uint(__ldcg(sc + 4 * i + j)) >> 23) & 0xffu) << (8 * j);
  return word;
}

// The scale entries of int4 elements [lo, hi) of an FP8 message: its groups
// of 128 channels (8 elements each), or with ue8m0 their packed words of 4
// groups. A slice starts on a whole warp-wide step (32 elements = 4 words),
// so the slices of a message split its entries without overlap.
__device__ __forceinline__ void slice_scales(const DispatchParams& p, int lo, int hi, int* sLo, int* sHi) {
  const int S = p.ue8m0 ? (p.H / 128 + 3) / 4 : p.H / 128;
  *sLo = p.ue8m0 ? lo / 32 : lo / 8;
  *sHi = lo >= hi ? *sLo : min(S, p.ue8m0 ? (hi + 31) / 32 : hi / 8);
}

// Writes int4 elements [lo, hi) of one received message, and (FP8) the scale
// entries of that slice, to the rows of the local experts in `tmask` (lane k
// holds flat row `flat` of pick k). v holds the elements [lo, lo + 32 * kCopyU)
// already. Each slice's warp stores its own scales: the entries of a row are
// scattered writes in the MN-major layout, and one warp storing all of them
// after its rows cost ~1.7 us at T=128 (nvidia-h200-x2, ll_notes round 9).
template <bool kFp8>
__device__ __forceinline__ void copy_message(const DispatchParams& p, const char* msg, unsigned tmask, int flat,
                                             int lane, int lo, int hi, int4 (&v)[kCopyU],
                                             unsigned long long* stamp = nullptr) {
  const int H = p.H;
  const int RM = p.R * p.M;
  const int n16 = kFp8 ? H / 16 : H / 8;
  const int4* src = reinterpret_cast<const int4*>(msg);
  // The slice's first 32 scale entries are read before the row stores, so
  // that their round trip overlaps the stores instead of following them.
  const int G = H / 128, S = p.ue8m0 ? (G + 3) / 4 : G;
  const float* sc = reinterpret_cast<const float*>(msg + H);
  int sLo = 0, sHi = 0;
  if (kFp8) slice_scales(p, lo, hi, &sLo, &sHi);
  uint32_t sc0 = (kFp8 && sLo + lane < sHi) ? scale_entry(p, sc, G, sLo + lane) : 0u;
  for (int base = lo; base < hi; base += 32 * kCopyU) {
    if (base != lo) load_batch(src, base, hi, lane, v);
    unsigned m = tmask;
    while (m) {
      int k = __ffs(m) - 1;
      m &= m - 1;
      int f = __shfl_sync(0xffffffffu, flat, k);
      int4* dst = reinterpret_cast<int4*>(static_cast<char*>(p.recvX) + (size_t)f * n16 * 16);
#pragma unroll
      for (int u = 0; u < kCopyU; u++) {
        int i = base + u * 32 + lane;
        if (i < hi) dst[i] = v[u];
      }
    }
  }
  if (kProfBuilt && stamp != nullptr) *stamp = dev::globaltimer_ns();  // EP_LL_PROFILE=2: row stores issued
  if constexpr (kFp8) {
    for (int wb = sLo; wb < sHi; wb += 32) {
      const int w = wb + lane;
      const uint32_t val = wb == sLo ? sc0 : (w < sHi ? scale_entry(p, sc, G, w) : 0u);
      unsigned m = tmask;
      while (m) {
        int k = __ffs(m) - 1;
        m &= m - 1;
        int f = __shfl_sync(0xffffffffu, flat, k);
        if (w < sHi) {
          size_t idx = p.scaleMn ? ((size_t)(f / RM) * S + w) * RM + (f % RM) : (size_t)f * S + w;
          static_cast<uint32_t*>(p.recvScales)[idx] = val;
        }
      }
    }
  }
}

// One (source, token) message is copied by p.recvSplit warps, each owning a
// contiguous slice of it (more warps in flight: with one warp per message only
// ~4 warps per SM would copy). Part 0 also writes the handle, srcInfo and
// weights; each part the scales of its slice.
// unitT (EP_LL_PROFILE=2 timeline, else nullptr): stamps of the first unit of
// the block's warp P - 1 (the message's last part): flags seen, header there,
// row stores issued (the rows' data arrived), scales stored.
template <bool kFp8>
__device__ void recv_tokens(const DispatchParams& p, const DSmem& sm, uint32_t epoch, unsigned long long* unitT) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, H = p.H;
  const int RM = R * M, P = p.recvSplit;
  const int n16 = kFp8 ? H / 16 : H / 8;
  const int per = ((n16 + P - 1) / P + 31) / 32 * 32;  // a slice: whole warp-wide steps
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const char* data = sa.ps.local + sa.dataOff;
  const int vb = vblock();
  for (int up = vb * nw + warp; up < RM * P; up += gridDim.x * nw) {
    int u = up / P, part = up - u * P;
    int s = u / M, t = u - s * M;
    if (t >= sm.sT[s]) continue;
    const int lo = min(n16, part * per), hi = min(n16, lo + per);
    if (lo >= hi && part != 0) continue;
    // The block's warp P - 1 (its units are messages' last parts): its lane 0 stamps.
    const bool stampUnit = kProfBuilt && unitT != nullptr && (int)threadIdx.x == 32 * (P - 1) && unitT[0] == 0;
    // Wait for the source blocks that wrote what this unit reads: chunk 0's
    // (the header) and the chunks of its slice (their scales too). Messages whose blocks are done are copied while later blocks of
    // the sources are still sending (no wait for the whole source). A source
    // on another node was waited for whole in recv_meta (ll_remote.cuh).
    if (!rm_remote(sa, s)) {
      const int C = (H + kChunk - 1) / kChunk, epc = kChunk / (kFp8 ? 16 : 8);  // int4 elements per chunk
      const int G = sm.sG[s], cLo = lo / epc, cHi = lo < hi ? (hi - 1) / epc : -1;
      bool ok = true;
      for (int c = lane; c < C; c += 32) {
        if (c != 0 && !(c >= cLo && c <= cHi)) continue;
        const int task = t * C + c, bvb = (task % (G * kWarpsPerBlock)) / kWarpsPerBlock;
        ok &= wait_eq(sa.ps.local_ptr<int>(sa.sigOff + blkDoneRel(R, s, bvb)), epoch, sa, kWaitData, s);
      }
      if (!__all_sync(0xffffffffu, ok)) continue;  // timed out (recorded)
    }
    if (stampUnit) unitT[0] = dev::globaltimer_ns();
    const DispatchHdr* h = sa.ps.local_ptr<DispatchHdr>(sa.hdrOff + (size_t)u * sizeof(DispatchHdr));
    int pk = -1, ep = 0;
    float wv = 0.f;
    if (lane < K) {
      pk = __ldcg(&h->pick[lane]);
      wv = __ldcg(&h->w[lane]);
    }
    if (lane == 31) ep = __ldcg(&h->epoch);
    // The slice's first batch in the same round trip as the header (a slot
    // without a message this epoch is read for nothing: ~10% of them).
    int4 v[kCopyU];
    const char* msg0 = data + (p.dedup ? (size_t)u * p.msgStride : (size_t)u * K * p.msgStride);
    if (p.dedup) load_batch(reinterpret_cast<const int4*>(msg0), lo, hi, lane, v);
    ep = __shfl_sync(0xffffffffu, ep, 31);
    if (stampUnit) unitT[1] = dev::globaltimer_ns();
    int flat = -1;
    float w = 0.f;
    if (ep == (int)epoch && pk >= 0) {
      int le = pk / M, j = pk - le * M;
      flat = le * RM + sm.base[le * R + s] + j;
      w = wv;
    }
    if (part == 0) {
      if (lane < K) {
        size_t hi2 = (size_t)u * K + lane;
        p.hFlatRow[hi2] = flat;
        p.hW[hi2] = w;
      }
      if (flat >= 0) {
        if (p.srcInfo) p.srcInfo[flat] = t;
        if (p.recvW) p.recvW[flat] = w;
      }
    }
    unsigned lmask = __ballot_sync(0xffffffffu, flat >= 0);
    if (lmask == 0) continue;
    if (p.dedup) {
      copy_message<kFp8>(p, msg0, lmask, flat, lane, lo, hi, v, stampUnit ? unitT + 2 : nullptr);
    } else {
      unsigned m = lmask;
      while (m) {
        int k = __ffs(m) - 1;
        m &= m - 1;
        const char* msg = msg0 + (size_t)k * p.msgStride;
        load_batch(reinterpret_cast<const int4*>(msg), lo, hi, lane, v);
        copy_message<kFp8>(p, msg, 1u << k, flat, lane, lo, hi, v);
      }
    }
    if (stampUnit) unitT[3] = dev::globaltimer_ns();
  }
}

// kLines: the flagged-line protocol (ll_dispatch_lines.cuh, FP8 only);
// otherwise the release protocol (above).
template <bool kFp8, bool kLines>
__global__ void __launch_bounds__(kThreads, 1) dispatchKernel(DispatchParams p) {
  const unsigned long long tEntry = dev::globaltimer_ns();  // EP_LL_PROFILE: before any parameter
  extern __shared__ __align__(16) char smem[];
  __shared__ int sFail;
  __shared__ int sNextUnit;                 // lines receive: the block's unit queue (recv_lines)
  __shared__ unsigned long long sPollWait;  // EP_LL_PROFILE=2: receiving warps' line-wait time
  __shared__ unsigned long long sUnitT[4];  // EP_LL_PROFILE=2: a warp's first unit (recv_lines, recv_tokens)
  const SetArgs& sa = p.sa;
  const int R = p.R, me = p.rank;
  const int tid = threadIdx.x, nt = blockDim.x, vb = vblock();
  const bool doSend = (p.phases & kPhaseSend) != 0, doRecv = (p.phases & kPhaseRecv) != 0;
  // Lines, fused call: the virtual blocks below nsend send, the others receive
  // (nsend == grid: every block does both phases).
  const int nsend = kLines ? lines_send_blocks(p, doSend && doRecv) : (int)gridDim.x;
  const bool sender = vb < nsend, receiver = nsend == (int)gridDim.x || vb >= nsend;
  DSmem sm = carve(smem, R, p.M, p.K, p.E, p.L);
  const uint32_t sendEpoch = doSend ? epoch_read(sa, sa.set) + 1 : 0;
  const uint32_t recvEpoch = doRecv ? epoch_read(sa, 2 + sa.set) + 1 : 0;
  // Lines: stamps from the last block (a receiving block), not block 0 (the ack release first).
  Prof prof(sa, tEntry, kLines ? gridDim.x - 1 : 0);
  prof.nsend = nsend;
  if (tid == 0) {
    sFail = 0;
    sNextUnit = 0;
    sPollWait = 0;
    for (int i = 0; i < 4; i++) sUnitT[i] = 0;
  }
  if (blockIdx.x == 0) publish_acks<!kLines>(sa, R);  // lines: NVLink peers only

  if (doSend) {
    // Independent first reads in flight together: ack words, the first
    // task's x channels, (release protocol) the top-k ids inside build_table.
    const int ackPre = ack_prefetch(sa, R);
    int4 pre0 = make_int4(0, 0, 0, 0), pre1 = pre0;
    if (sender) load_chunk(p, first_task(), &pre0, &pre1);
    // Lines: the publishing blocks' first routing item and the sending
    // blocks' first task ids are loaded with the x channels.
    const Publishers pub = kLines ? lines_publishers(p, nsend) : Publishers{0, 0};
    const bool publisher = kLines && pub.has(vb);
    RoutePre rpre;
    int e0 = -1;
    if (kLines && publisher) rpre = prefetch_routing(p, pub);
    if (kLines && sender) e0 = token_expert(p, first_task() / ((p.H + kChunk - 1) / kChunk));
    if constexpr (!kLines) build_table(p, sm);
    else if (publisher) build_source_bits(p, sm);  // while the acks below are in flight
    // Flow control guards the stores into peers' buffers: a lines block that
    // only receives skips it and reaches its receive path (cold code,
    // ll_dispatch_lines.cuh) sooner.
    if ((!kLines || sender || publisher) && !wait_acks<!kLines>(sa, R, sendEpoch, ackPre)) sFail = 1;
    __syncthreads();
    prof.mark(1);
    if (!sFail) {
      if constexpr (kLines) {
        if (publisher) publish_routing(p, sm, sendEpoch, pub, rpre);
        prof.mark(9);
        if (sender) send_lines(p, sendEpoch, nsend, pre0, pre1, e0);
      } else {
        if (blockIdx.x == gridDim.x - 1) send_counts(p, sm, sendEpoch);
        send_tokens<kFp8>(p, sm, sendEpoch, pre0, pre1);
      }
    }
    prof.mark(2);
    if constexpr (!kLines) {
      // One release per destination, after the barrier: the barrier orders every
      // warp's stores before it, and release is cumulative (per-warp system
      // fences instead cost ~1 us each, serialised per SM).
      __syncthreads();
      // blkDone[me][vb] = epoch at every destination (also where this block sent
      // nothing: a receiver may ask about any block that covers a message's chunks).
      if (!sFail)
        for (int d = tid; d < R; d += nt) sa.ps.signal_set(d, sa.sigOff + blkDoneRel(R, me, vb), (int)sendEpoch);
      rm_ship_dispatch(p, sendEpoch);  // peers on other nodes: their mirrors go out (ll_remote.cuh)
    }
    prof.mark(3);
  } else {
    __syncthreads();
  }

  if (doRecv && !sFail && receiver) {
    if constexpr (kLines) {
      if (lines_recv_meta(p, sm, recvEpoch, &sFail, prof)) {
        prof.mark(4);
        recv_lines(p, sm, recvEpoch, nsend == (int)gridDim.x ? 0 : nsend, &sNextUnit, prof_tl(sa) ? &sPollWait : nullptr,
                   prof_tl(sa) ? sUnitT : nullptr);
      }
    } else if (recv_meta(p, sm, recvEpoch, &sFail)) {
      prof.mark(4);
      recv_tokens<kFp8>(p, sm, recvEpoch, prof_tl(sa) ? sUnitT : nullptr);
    }
  }
  if (prof_tl(sa)) {
    __syncthreads();
    if (tid == 0) {
      prof.t[8] = sPollWait / (unsigned)(nt >> 5);
      for (int i = 0; i < 4; i++) prof.t[12 + i] = sUnitT[i] ? sUnitT[i] : prof.t0;
    }
  }
  prof.flush(sa);

  if (blockIdx.x == 0) {
    __syncthreads();
    publish_acks_record(sa);
    __syncthreads();
  }
  if (doSend) epoch_write(sa, sa.set, sendEpoch);
  if (doRecv) epoch_write(sa, 2 + sa.set, recvEpoch);
}

}  // namespace

size_t dispatchSmemBytes(int R, int M, int K, int E) {
  int L = E / R, W = (M + 31) / 32;
  return sizeof(int) * (2 * (size_t)M * K + (size_t)E * W + 3 * (size_t)R + 2 * (size_t)L * R + L);
}

epResult_t launchDispatch(const DispatchParams& p, int blocks, cudaStream_t stream) {
  size_t smem = dispatchSmemBytes(p.R, p.M, p.K, p.E);
  void* fn = p.lines ? (void*)dispatchKernel<true, true>  // lines: FP8 only (ll_api.cc)
                     : (p.fp8 ? (void*)dispatchKernel<true, false> : (void*)dispatchKernel<false, false>);
  if (smem > 48 * 1024) CUDACHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  // Send and receive in one launch: receivers spin on data other blocks of
  // the same grid produce, so every block must be resident (cooperative).
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = (p.phases == (kPhaseSend | kPhaseRecv) && p.coop) ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  void* args[] = {const_cast<DispatchParams*>(&p)};
  CUDACHECK(cudaLaunchKernelExC(&cfg, fn, args));
  return epSuccess;
}

}  // namespace ll
}  // namespace ep
