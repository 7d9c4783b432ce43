/*************************************************************************
 * epcomm: HT intranode dispatch, direct path (registered outputs).
 *
 * One block per channel (the notify's channels: the row positions depend on
 * them), every warp a pusher. For each of the channel's tokens a warp reads
 * the row once from x (16-byte loads, kU per lane in flight) and stores it
 * to its final row in the output of every destination rank (its own
 * included) over NVLink, then the scales, local top-k ids, weights and
 * source index of that row. The destination row is
 *   receiver's rankPrefix[me] (sendBase, all-gathered by the notify) + rows of our earlier
 *   channels to it (sendChanCount) + slotPrefix[t][receiver] (notify)
 * so the received rows come out in exactly the ring path's order.
 * Start: records and path flags (ht_direct.cuh). End: a fence, then one done
 * word per (peer, channel) in the peer's buffer; a block ends when every
 * peer's same channel has written its done word to us, so the kernel ends
 * when all our outputs are complete.
 * No receiver warps: all the SMs of the budget push, which is what the
 * NVLink store rate per SM asks for.
 * Metadata (EP_HT_DEV_DIRECT_META, default 1). Written per row (0), the four
 * small arrays are 4 scattered NVLink writes of 4-224 bytes per (row,
 * destination): ~16 us of a 280 us FP8 call (measured, EP4, H=7168, top-8).
 * With 1 each warp takes a contiguous sub-range of the channel's tokens, so
 * the rows it sends to one destination are consecutive output rows; it
 * stages the metadata of up to 32 tokens in shared memory while their rows
 * stream, then writes each array's slice per destination as one contiguous
 * run with consecutive lanes on consecutive words (no block barrier: the
 * other warps keep streaming rows).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <algorithm>
#include <cstring>

#include <cuda_runtime.h>

#include "core/checks.h"
#include "core/comm.h"
#include "core/param.h"
#include "core/register.h"
#include "intranode/ht_direct.cuh"
#include "intranode/ht_direct.h"
#include "intranode/ht_handle.h"
#include "intranode/ht_launch.h"
#include "intranode/ht_state.h"

// Launch knobs (docs/env.md). EP_HT_PDL: programmatic dependent launch after the notify.
// EP_HT_DEV_CLUSTER: channel blocks per thread-block cluster (one GPC); 4 measured best on
// nvidia-h200-x4 (bench/results/ht_notes.md, "Block placement").
EP_PARAM(HtPdl, "HT_PDL", 1)
EP_PARAM(HtDevCluster, "HT_DEV_CLUSTER", 4)

namespace ep {
namespace ht {
namespace {

constexpr int kDirectThreads = 512;
constexpr int kDirectWarps = kDirectThreads / 32;
constexpr int kMetaMaxChunk = 32;  // tokens staged per warp before a flush: one lane per token

// Per-warp shared-memory staging of the coalesced metadata writes (kMeta), in
// 4-byte words; every part starts on a 16-byte boundary (the scales are
// copied out with 16-byte loads). Parts not written by this call are empty.
//   row  [kR][N]        output row of chunk token i at destination r (-1: none)
//   list [N]            chunk tokens that go to the destination being flushed
//   sc   [N][scStride]  scale words (scStride = scaleCols rounded up to 4)
//   gid  [N][K]         top-k expert ids (global, -1 when masked/out of range)
//   w    [N][K]         top-k weights
struct MetaLayout {
  int N, scStride, offList, offSc, offGid, offW, warpWords;
};

__host__ __device__ inline int round4(int v) { return (v + 3) & ~3; }

__host__ __device__ inline MetaLayout meta_layout(int N, int kR, int scaleCols, int kGid, int kW) {
  MetaLayout m;
  m.N = N;
  m.scStride = round4(scaleCols);
  m.offList = round4(kR * N);
  m.offSc = m.offList + round4(N);
  m.offGid = m.offSc + N * m.scStride;
  m.offW = m.offGid + round4(N * kGid);
  m.warpWords = m.offW + round4(N * kW);
  return m;
}

struct DirectDispatchParams {
  Buf b;
  int C, T, L, K;
  int xBytes, scaleCols;
  const char* x;
  const int* scales;
  long long sTok, sCol;
  const void* topk;
  int idx64;
  const float* weights;
  epHtHandleDev h;
  epHtDirectRec rec;       // ours (base is filled per peer)
  char* const* table;      // registrations [EP_REG_MAX_SLOTS][R]
  int* outCountPerExpert;
  int* outNumRecv;
  int capacity;
  epDeviceStatus* status;
  unsigned long long timeoutNs;
  uint32_t* epochCtr;  // call epochs on the device (CallEpoch in ht_device.cuh)
  MetaLayout ml;       // kMeta only
  int smidLog;         // EP_HT_DEV_SMID_LOG: print each channel's SM (first call of the process)
  int earlyStart;      // a notify ran after the previous dispatch: epoch + handshake before pdl_wait
};

// What a warp needs of one token besides its row: lane r < R the token's row
// at rank r (-1: not sent there), lane k < K its top-k id and weight, lane j
// its scale words j and j + 32 (columns past 64 are read when written).
struct TokenMeta {
  int row, gid, sc0, sc1;
  float wv;
};

// All loads independent (one round trip); t >= t1 gives an empty token.
__device__ __forceinline__ void load_token_meta(const DirectDispatchParams& p, const int* rowBase, const int* rows,
                                                int t, int t1, int lane, bool wantScales, TokenMeta* mt) {
  mt->row = -1;
  mt->gid = -1;
  mt->wv = 0.f;
  mt->sc0 = mt->sc1 = 0;
  if (t >= t1) return;
  const int R = p.b.R();
  if (lane < R) {
    const bool in = p.h.isTokenInRank[(size_t)t * R + lane] != 0;
    const int slot = p.h.slotPrefix[(size_t)t * R + lane];
    if (in) {
      const int row = rowBase[lane] + slot;
      mt->row = row < rows[lane] ? row : -1;  // past the receiver's capacity: it reports the overflow
    }
  }
  if (lane < p.K) {
    if (p.topk) {
      const long long id = p.idx64 ? reinterpret_cast<const long long*>(p.topk)[(size_t)t * p.K + lane]
                                   : (long long)reinterpret_cast<const int*>(p.topk)[(size_t)t * p.K + lane];
      mt->gid = (id >= 0 && id < (long long)p.L * R) ? (int)id : -1;
    }
    if (p.weights) mt->wv = p.weights[(size_t)t * p.K + lane];
  }
  if (wantScales) {
    if (lane < p.scaleCols) mt->sc0 = p.scales[(size_t)t * p.sTok + (size_t)lane * p.sCol];
    if (lane + 32 < p.scaleCols) mt->sc1 = p.scales[(size_t)t * p.sTok + (size_t)(lane + 32) * p.sCol];
  }
}

// This warp's part of the staging area (MetaLayout).
struct MetaSmem {
  int* row;
  int* list;
  int* sc;
  int* gid;
  float* w;
  int N, scStride;
  __device__ __forceinline__ MetaSmem(int* warpBase, const MetaLayout& m)
      : row(warpBase), list(warpBase + m.offList), sc(warpBase + m.offSc), gid(warpBase + m.offGid),
        w(reinterpret_cast<float*>(warpBase + m.offW)), N(m.N), scStride(m.scStride) {}
};

// Stages token t (chunk position i) after its row was pushed: its row per
// destination always (an empty or clipped token stages -1 everywhere, so it is
// in no destination's run), its scales, ids and weights only when some row of
// it is written (nothing else reads them).
template <int kR>
__device__ __forceinline__ void stage_meta(const DirectDispatchParams& p, const MetaSmem& ms, int i, int t,
                                           const TokenMeta& mt, bool sent, int lane, bool wantScales) {
  if (lane < kR) ms.row[lane * ms.N + i] = mt.row;  // -1 for lanes >= R (load_token_meta)
  if (!sent) return;
  if (wantScales) {
    int* sc = ms.sc + i * ms.scStride;
    if (lane < p.scaleCols) sc[lane] = mt.sc0;
    if (lane + 32 < p.scaleCols) sc[lane + 32] = mt.sc1;
    for (int j = 64 + lane; j < p.scaleCols; j += 32) sc[j] = p.scales[(size_t)t * p.sTok + (size_t)j * p.sCol];
  }
  if (lane < p.K) {
    if (p.topk) ms.gid[i * p.K + lane] = mt.gid;
    if (p.weights) ms.w[i * p.K + lane] = mt.wv;
  }
}

// Writes the metadata of the n staged tokens tb .. tb + n - 1, destination by
// destination. Each word still goes to exactly the place the per-row code
// writes it (the row staged for its token, clipped rows excluded), only the
// lane that writes it changes: word v of a destination's run belongs to its
// (v / width)-th sent token, so consecutive lanes store consecutive words of
// consecutive rows (the sent tokens of a contiguous token range have
// consecutive rows) and each array's slice leaves as one contiguous run
// instead of one small NVLink write per row.
__device__ __forceinline__ void flush_meta(const DirectDispatchParams& p, char* (*dst)[EP_HT_MAX_NVL_RANKS],
                                           const MetaSmem& ms, int n, int tb, int lane, bool wantScales) {
  __syncwarp();  // the staging stores of every lane are visible
  const int R = p.b.R(), K = p.K, S = p.scaleCols;
#pragma unroll 1
  for (int r = 0; r < R; r++) {
    const int* rowR = ms.row + r * ms.N;
    const int myRow = lane < n ? rowR[lane] : -1;
    const unsigned vm = __ballot_sync(0xffffffffu, myRow >= 0);
    if (vm == 0) continue;
    const int cnt = __popc(vm);
    if (myRow >= 0) {
      ms.list[__popc(vm & ((1u << lane) - 1u))] = lane;
      if (dst[4][r]) st_na(reinterpret_cast<int*>(dst[4][r]) + myRow, tb + lane);
    }
    __syncwarp();
    if (wantScales && dst[1][r]) {
      int* sd = reinterpret_cast<int*>(dst[1][r]);
      if ((S & 3) == 0 && (reinterpret_cast<uintptr_t>(sd) & 15) == 0) {
        // 16-byte words: a row is S / 4 of them, each inside one row.
        const int S4 = S >> 2;
        for (int v = lane; v < cnt * S4; v += 32) {
          const int q = v / S4, j = (v - q * S4) * 4, i = ms.list[q];
          st_na(reinterpret_cast<int4*>(sd + (size_t)rowR[i] * S + j),
                *reinterpret_cast<const int4*>(ms.sc + i * ms.scStride + j));
        }
      } else {
        for (int v = lane; v < cnt * S; v += 32) {
          const int q = v / S, j = v - q * S, i = ms.list[q];
          st_na(sd + (size_t)rowR[i] * S + j, ms.sc[i * ms.scStride + j]);
        }
      }
    }
    int* ids = p.topk ? reinterpret_cast<int*>(dst[2][r]) : nullptr;
    int* wts = p.weights ? reinterpret_cast<int*>(dst[3][r]) : nullptr;
    if (ids || wts) {
      for (int v = lane; v < cnt * K; v += 32) {
        const int q = v / K, k = v - q * K, i = ms.list[q];
        const size_t o = (size_t)rowR[i] * K + k;
        const int gid = p.topk ? ms.gid[i * K + k] : -1;
        const int local = (gid >= r * p.L && gid < (r + 1) * p.L) ? gid - r * p.L : -1;
        if (ids) st_na(ids + o, local);
        if (wts) st_na(wts + o, __float_as_int((p.topk && local < 0) ? 0.f : ms.w[i * K + k]));
      }
    }
    __syncwarp();  // list is rewritten for the next destination
  }
  __syncwarp();  // the next chunk's staging overwrites what other lanes read here
}

template <int kR, int kU, bool kPre, bool kMeta>
__global__ void __launch_bounds__(kDirectThreads, 1) dispatch_direct_kernel(DirectDispatchParams p) {
  // Launched with PDL: until pdl_wait() nothing the previous kernel of the
  // stream wrote may be read. After a notify (earlyStart) the call epoch and
  // the handshake go first, overlapping the notify's count exchange: the
  // previous dispatch (the epoch's writer) and the caller's readers of our
  // outputs completed before that notify started. Otherwise (cached
  // dispatches back to back) the previous kernel may be the epoch's writer.
  if (!p.earlyStart) pdl_wait();
  const CallEpoch epoch(p.epochCtr);  // every return path advances it
  __shared__ char* dst[EP_HT_NUM_REG_BUFS][EP_HT_MAX_NVL_RANKS];
  __shared__ int rowBase[EP_HT_MAX_NVL_RANKS];
  __shared__ int rows[EP_HT_MAX_NVL_RANKS];
  __shared__ int abortFlag;
  const int c = blockIdx.x, tid = threadIdx.x, lane = lane_id();
  const int R = p.b.R(), me = p.b.me();
  if (p.smidLog && tid == 0) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
    printf("[ht-smid] rank %d dispatch channel %d sm %u\n", me, c, smid);
  }
  if (tid == 0) abortFlag = 0;
  __syncthreads();
  // 1. Tell every rank (ourselves included) where our outputs are. The
  //    sender finds where its rows start in our outputs itself (the notify's
  //    sendBase), so this handshake does not wait for the notify and, with
  //    PDL, overlaps its count exchange.
  if (c == 0 && tid < R) {
    epHtDirectRec rec = p.rec;
    rec.base = -1;  // unused by the dispatch (sendBase)
    path_publish(p.b, EP_HT_KIND_DISPATCH, epoch.e, 1, tid, &rec);
  }
  // 2. Every block: where each destination's outputs are.
  if (tid < R) {
    Spin spin(p.timeoutNs);
    if (path_wait(p.b, EP_HT_KIND_DISPATCH, epoch.e, 1, tid, spin, &abortFlag, p.status, c)) {
      const epHtDirectRec* r = drec_at(p.b, p.b.local(), EP_HT_KIND_DISPATCH, tid);
      for (int i = 0; i < EP_HT_NUM_REG_BUFS; i++) {
        const int slot = r->slot[i];
        char* base = slot >= 0 ? p.table[(size_t)slot * R + tid] : nullptr;
        if (slot >= 0 && base == nullptr) {
          record_error(p.status, kFamilyHt, EP_DEVERR_BAD_REGISTRATION, tid, slot, -1);
          abortFlag = 1;
        }
        dst[i][tid] = base ? base + r->off[i] : nullptr;
      }
      rows[tid] = r->rows;
    }
  }
  if (p.earlyStart) pdl_wait();  // the notify's results (the handle) from here on
  if (tid < R) rowBase[tid] = chan_row_base(p.h.sendChanCount, tid, c, p.h.sendBase[tid]);
  if (c == 0 && tid >= 32 && tid < 64) {
    // Device copies of the counts (mode b has no host copy) and the capacity check.
    const int n = *p.h.numRecv;
    if (tid == 32) {
      if (p.outNumRecv) *p.outNumRecv = n;
      if (n > p.capacity) record_error(p.status, kFamilyHt, EP_DEVERR_CAPACITY_OVERFLOW, p.capacity, 0, n);
    }
    if (p.outCountPerExpert)
      for (int l = tid - 32; l < p.L; l += 32) p.outCountPerExpert[l] = p.h.expertAligned[l];
  }
  __syncthreads();
  if (*reinterpret_cast<volatile int*>(&abortFlag)) return;

  // 3. Push the channel's tokens. A token's routing and metadata (row per
  //    destination, top-k id and weight, up to 64 scale words) come in one
  //    round trip; with kPre the next token's are loaded before this token's
  //    row is copied, so that round trip overlaps the row's stores instead
  //    of stalling the warp between two rows (FP8 rows are short: there the
  //    stall was a tenth of the call).
  //    kMeta: warp w takes the contiguous sub-range w of the channel's tokens
  //    and stages their metadata (flush_meta writes it in runs); otherwise the
  //    tokens are dealt round robin and each row's metadata follows the row.
  int t0, t1;
  channel_range(p.T, p.C, c, &t0, &t1);
  const int warp = warp_id();
  int tBeg = t0 + warp, tEnd = t1, tStep = kDirectWarps;
  if (kMeta) {
    tBeg = t0 + (int)((long long)(t1 - t0) * warp / kDirectWarps);
    tEnd = t0 + (int)((long long)(t1 - t0) * (warp + 1) / kDirectWarps);
    tStep = 1;
  }
  extern __shared__ int4 metaSmem[];
  const MetaSmem ms(reinterpret_cast<int*>(metaSmem) + (kMeta ? (size_t)warp * p.ml.warpWords : 0), p.ml);
  int ci = 0;  // kMeta: tokens staged since the last flush
  const int nVec = p.xBytes / 16;
  const bool wantScales = p.scales != nullptr && p.scaleCols > 0;
  TokenMeta cur;
  load_token_meta(p, rowBase, rows, tBeg, tEnd, lane, wantScales, &cur);
  for (int t = tBeg; t < tEnd; t += tStep) {
    TokenMeta nxt;
    if (kPre) load_token_meta(p, rowBase, rows, t + tStep, tEnd, lane, wantScales, &nxt);
    const int row = cur.row;
    const unsigned m = __ballot_sync(0xffffffffu, row >= 0);
    if (m) {
      int4* dx[kR];
#pragma unroll
      for (int r = 0; r < kR; r++) {
        const int rr = __shfl_sync(0xffffffffu, row, r < R ? r : 0);
        dx[r] = ((m >> r) & 1) ? reinterpret_cast<int4*>(dst[0][r] + (size_t)rr * p.xBytes) : nullptr;
      }
      const int4* src = reinterpret_cast<const int4*>(p.x + (size_t)t * p.xBytes);
      for (int v0 = lane; v0 < nVec; v0 += 32 * kU) {
        int4 val[kU];
#pragma unroll
        for (int u = 0; u < kU; u++)
          if (v0 + u * 32 < nVec) val[u] = ld_nc_na(src + v0 + u * 32);
#pragma unroll
        for (int r = 0; r < kR; r++) {
          if (!((m >> r) & 1)) continue;
#pragma unroll
          for (int u = 0; u < kU; u++)
            if (v0 + u * 32 < nVec) st_na(dx[r] + v0 + u * 32, val[u]);
        }
      }
      // Metadata of the row, per destination: read once, written to each
      // (kMeta: staged below and written in runs by flush_meta instead).
#pragma unroll
      for (int r = 0; r < kR; r++) {
        if (kMeta || !((m >> r) & 1)) continue;
        const int rr = __shfl_sync(0xffffffffu, row, r);
        if (dst[1][r] && wantScales) {
          int* sd = reinterpret_cast<int*>(dst[1][r]) + (size_t)rr * p.scaleCols;
          if (lane < p.scaleCols) st_na(sd + lane, cur.sc0);
          if (lane + 32 < p.scaleCols) st_na(sd + lane + 32, cur.sc1);
          for (int j = 64 + lane; j < p.scaleCols; j += 32) st_na(sd + j, p.scales[(size_t)t * p.sTok + (size_t)j * p.sCol]);
        }
        if (lane < p.K) {
          const int gid = cur.gid;
          const int local = (gid >= r * p.L && gid < (r + 1) * p.L) ? gid - r * p.L : -1;
          if (dst[2][r] && p.topk) st_na(reinterpret_cast<int*>(dst[2][r]) + (size_t)rr * p.K + lane, local);
          if (dst[3][r] && p.weights) {
            const float w = (p.topk && local < 0) ? 0.f : cur.wv;
            st_na(reinterpret_cast<int*>(dst[3][r]) + (size_t)rr * p.K + lane, __float_as_int(w));
          }
        }
        if (lane == 31 && dst[4][r]) st_na(reinterpret_cast<int*>(dst[4][r]) + rr, t);
      }
    }
    if (kMeta) {
      stage_meta<kR>(p, ms, ci, t, cur, m != 0, lane, wantScales);
      if (++ci == ms.N || t + 1 == tEnd) {
        flush_meta(p, dst, ms, ci, t + 1 - ci, lane, wantScales);
        ci = 0;
      }
    }
    if (kPre) cur = nxt;
    else load_token_meta(p, rowBase, rows, t + tStep, tEnd, lane, wantScales, &cur);
  }
  // 4. Our stores to each peer are visible before our done word there; then
  //    wait until every peer's channel c is done with us.
  __threadfence_system();
  __syncthreads();
  if (tid < R && tid != me) st_release_sys(ddone_at(p.b, p.b.peers.buf[tid], EP_HT_KIND_DISPATCH, me, c), (int)epoch.e);
  if (tid < R && tid != me) {
    Spin spin(p.timeoutNs);
    (void)done_wait(p.b, EP_HT_KIND_DISPATCH, epoch.e, tid, c, spin, &abortFlag, p.status);
  }
}

// epHtState::attrDone bits of the kMeta instantiations (their staging needs
// more than the 48 KB default): 16 + 4 * log2(kR / 2) + 2 * (kU == 8) + kPre.
// Bits 0-6 are ht_state.h's (EP_HT_ATTR_*).
constexpr unsigned kAttrMetaBit0 = 1u << 16;

template <int kR, int kU, bool kPre, bool kMeta>
epResult_t launch(epHtState* st, const DirectDispatchParams& p, cudaStream_t stream) {
  size_t smem = 0;
  if (kMeta) {
    smem = (size_t)p.ml.warpWords * 4 * kDirectWarps;
    const int idx = (kR == 2 ? 0 : kR == 4 ? 1 : 2) * 4 + (kU == 8 ? 2 : 0) + (kPre ? 1 : 0);
    EPCHECK(epHtAllowLargeSmem(st, kAttrMetaBit0 << idx, dispatch_direct_kernel<kR, kU, kPre, kMeta>));
  }
  // Programmatic dependent launch (EP_HT_PDL): the kernel is scheduled while
  // the notify before it still exchanges counts (see the kernel's first
  // lines for what it does before pdl_wait); clusters set its placement.
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.C);
  cfg.blockDim = dim3(kDirectThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attrs[2];
  epHtSetLaunchAttrs(&cfg, attrs, epParamHtPdl() != 0, (int)epParamHtDevCluster());
  CUDACHECK(cudaLaunchKernelEx(&cfg, dispatch_direct_kernel<kR, kU, kPre, kMeta>, p));
  return epSuccess;
}

template <int kR, bool kMeta>
epResult_t launchU(epHtState* st, const DirectDispatchParams& p, int unroll, bool prefetch, cudaStream_t stream) {
  if (prefetch)
    return unroll <= 4 ? launch<kR, 4, true, kMeta>(st, p, stream) : launch<kR, 8, true, kMeta>(st, p, stream);
  return unroll <= 4 ? launch<kR, 4, false, kMeta>(st, p, stream) : launch<kR, 8, false, kMeta>(st, p, stream);
}

template <int kR>
epResult_t launchR(epHtState* st, const DirectDispatchParams& p, int unroll, bool prefetch, bool meta,
                   cudaStream_t stream) {
  return meta ? launchU<kR, true>(st, p, unroll, prefetch, stream) : launchU<kR, false>(st, p, unroll, prefetch, stream);
}

// The coalesced-metadata staging for this call: the largest chunk (at most
// `chunk` tokens, 32 at most, and no more than a warp's range holds: the rest
// would be shared memory taken from L1 for nothing) whose per-warp staging
// fits the block's shared memory. False: not even one token fits (huge
// scaleCols): per-row writes.
bool metaLayoutFor(const epHtState* st, int R, int chunk, DirectDispatchParams* p) {
  const int kR = R <= 2 ? 2 : R <= 4 ? 4 : 8;
  const int sc = (p->scales != nullptr && p->scaleCols > 0) ? p->scaleCols : 0;
  const int kg = p->topk ? p->K : 0, kw = p->weights ? p->K : 0;
  const size_t budget = st->smemOptin > 2048 ? (size_t)st->smemOptin - 2048 : 0;  // static smem (< 0.5 KB) + margin
  // channel_range: a channel holds at most ceil(T / C) tokens, a warp at most ceil(that / 16).
  const int C = std::max(p->C, 1), chanMax = (p->T + C - 1) / C;
  const int warpMax = std::max((chanMax + kDirectWarps - 1) / kDirectWarps, 1);
  for (int N = std::min({std::max(chunk, 1), kMetaMaxChunk, warpMax}); N >= 1; N--) {
    const MetaLayout m = meta_layout(N, kR, sc, kg, kw);
    if ((size_t)m.warpWords * 4 * kDirectWarps <= budget) {
      p->ml = m;
      return true;
    }
  }
  return false;
}

}  // namespace
}  // namespace ht
}  // namespace ep

using namespace ep::ht;

// EP_HT_DIRECT (docs/env.md): 0 disables the direct path; EP_HT_DEV_DIRECT_UNROLL: 16-byte loads per lane in flight.
EP_PARAM(HtDirect, "HT_DIRECT", 1)
EP_PARAM(HtDevDirectUnroll, "HT_DEV_DIRECT_UNROLL", 8)
// EP_HT_DEV_DIRECT_PREFETCH: 1 loads the next token's routing and metadata while this token's row is copied.
EP_PARAM(HtDevDirectPrefetch, "HT_DEV_DIRECT_PREFETCH", 1)
// EP_HT_DEV_DIRECT_NO_SCALES: diagnostic, 1 leaves the FP8 scales unwritten (prices their small remote stores).
EP_PARAM(HtDevDirectNoScales, "HT_DEV_DIRECT_NO_SCALES", 0)
// EP_HT_DEV_DIRECT_META: 1 writes the metadata in contiguous runs per (warp, destination), 0 per row (A/B knob).
// EP_HT_DEV_DIRECT_META_CHUNK: tokens a warp stages before writing their metadata (1..32).
EP_PARAM(HtDevDirectMeta, "HT_DEV_DIRECT_META", 1)
EP_PARAM(HtDevDirectMetaChunk, "HT_DEV_DIRECT_META_CHUNK", 32)

bool epHtDirectEnabled() { return epParamHtDirect() != 0; }

// Diagnostics of the block placement (docs/env.md): a one-time print of the channels' SMs.
EP_PARAM(HtDevSmidLog, "HT_DEV_SMID_LOG", 0)

int epHtLastCallDirect(epComm* comm, int kind) { return comm->ht ? comm->ht->lastDirect[kind] : -1; }

bool epHtDispatchDirectRecord(epComm* comm, const epDispatchOutput_t* out, const epHtRowShape& shape, int K,
                              epHtDirectRec* rec) {
  memset(rec, 0, sizeof(*rec));
  for (int i = 0; i < EP_HT_NUM_REG_BUFS; i++) rec->slot[i] = -1;
  if (!epHtDirectEnabled() || epRegCount(comm) == 0) return false;
  const size_t cap = out->capacity > 0 ? (size_t)out->capacity : 0;
  const void* bufs[EP_HT_NUM_REG_BUFS] = {out->recvX, out->recvXScales, out->recvTopkIdx, out->recvTopkWeights,
                                          out->recvSrcIdx};
  const size_t rowBytes[EP_HT_NUM_REG_BUFS] = {(size_t)shape.xBytes, (size_t)shape.scaleCols * 4, (size_t)K * 4,
                                               (size_t)K * 4, 4};
  for (int i = 0; i < EP_HT_NUM_REG_BUFS; i++) {
    if (bufs[i] == nullptr || cap == 0) continue;  // not requested, or nothing to receive
    if (!epRegLookup(comm, bufs[i], cap * rowBytes[i], &rec->slot[i], &rec->off[i])) {
      EP_INFO(EP_LOG_HT, "epDispatch: output %d (%p, %zu bytes) is not in a registered region: ring path", i, bufs[i],
              cap * rowBytes[i]);
      return false;
    }
  }
  rec->rows = (int)cap;
  return true;
}

epResult_t epHtLaunchDispatchDirect(epComm* comm, epHtState* st, const epDispatchInput_t* in,
                                    const epDispatchOutput_t* out, epHtHandle* h, const epHtRowShape& shape,
                                    const epHtDirectRec& rec, bool afterNotify, cudaStream_t stream) {
  DirectDispatchParams p;
  p.b.lay = st->lay;
  p.b.peers = st->peers;
  p.C = h->numChannels;
  p.T = in->numTokens;
  p.L = h->numExperts / comm->nranks;
  p.K = (in->topkIdx != nullptr || in->topkWeights != nullptr) ? in->numTopk : 0;
  p.xBytes = shape.xBytes;
  p.scaleCols = shape.scaleCols;
  p.x = static_cast<const char*>(in->x);
  p.scales = epParamHtDevDirectNoScales() ? nullptr : static_cast<const int*>(in->xScales);
  p.sTok = shape.sTok;
  p.sCol = shape.sCol;
  p.topk = in->topkIdx;
  p.idx64 = in->topkIdxType == epInt64;
  p.weights = in->topkWeights;
  p.h = h->dev;
  p.rec = rec;
  p.table = epRegDevTable(comm);
  p.outCountPerExpert = out->recvCountPerExpert;
  p.outNumRecv = out->numRecvTokens;
  p.capacity = out->capacity;
  p.status = comm->devStatusDev;
  p.timeoutNs = epCommWaitTimeoutNs(comm);
  p.earlyStart = afterNotify ? 1 : 0;
  p.epochCtr = epHtEpochCounters(st, EP_HT_KIND_DISPATCH);
  memset(&p.ml, 0, sizeof(p.ml));
  {
    static int logged = 0;  // diagnostics: the first call of the process only
    p.smidLog = epParamHtDevSmidLog() != 0 && !logged;
    if (p.smidLog) logged = 1;
  }
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  const int R = comm->nranks, U = (int)epParamHtDevDirectUnroll();
  const bool pre = epParamHtDevDirectPrefetch() != 0;
  bool meta = epParamHtDevDirectMeta() != 0;
  if (meta && !metaLayoutFor(st, R, (int)epParamHtDevDirectMetaChunk(), &p)) {
    EP_INFO(EP_LOG_HT, "epDispatch: %d scale words per row do not fit the metadata staging: per-row metadata writes",
            p.scaleCols);
    meta = false;
  }
  return R <= 2   ? launchR<2>(st, p, U, pre, meta, stream)
         : R <= 4 ? launchR<4>(st, p, U, pre, meta, stream)
                  : launchR<8>(st, p, U, pre, meta, stream);
}
