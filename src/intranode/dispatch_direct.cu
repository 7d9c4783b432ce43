/*************************************************************************
 * epcomm: HT intranode dispatch, direct path (registered outputs).
 *
 * One block per channel (the notify's channels: the row positions depend on
 * them), every warp a pusher. For each of the channel's tokens a warp reads
 * the row once from x (16-byte loads, kU per lane in flight) and stores it
 * to its final row in the output of every destination rank (its own
 * included) over NVLink, then the scales, local top-k ids, weights and
 * source index of that row. The destination row is
 *   receiver's rankPrefix[me] (from its record) + rows of our earlier
 *   channels to it (sendChanCount) + slotPrefix[t][receiver] (notify)
 * so the received rows come out in exactly the ring path's order.
 * Start: records and path flags (ht_direct.cuh). End: a fence, then one done
 * word per (peer, channel) in the peer's buffer; a block ends when every
 * peer's same channel has written its done word to us, so the kernel ends
 * when all our outputs are complete.
 * No shared-memory staging and no receiver warps: all the SMs of the budget
 * push, which is what the NVLink store rate per SM asks for.
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
#include "intranode/ht_state.h"

namespace ep {
namespace ht {
namespace {

constexpr int kDirectThreads = 512;

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

template <int kR, int kU, bool kPre>
__global__ void __launch_bounds__(kDirectThreads, 1) dispatch_direct_kernel(DirectDispatchParams p) {
  pdl_wait();  // launched with PDL after the notify: nothing of the stream's earlier work is read before this
  const CallEpoch epoch(p.epochCtr);  // every return path advances it
  __shared__ char* dst[EP_HT_NUM_REG_BUFS][EP_HT_MAX_NVL_RANKS];
  __shared__ int rowBase[EP_HT_MAX_NVL_RANKS];
  __shared__ int rows[EP_HT_MAX_NVL_RANKS];
  __shared__ int abortFlag;
  const int c = blockIdx.x, tid = threadIdx.x, lane = lane_id();
  const int R = p.b.R(), me = p.b.me();
  if (tid == 0) abortFlag = 0;
  __syncthreads();
  // 1. Tell every rank (ourselves included) where our outputs are.
  if (c == 0 && tid < R) {
    epHtDirectRec rec = p.rec;
    rec.base = p.h.rankPrefix[tid];
    path_publish(p.b, EP_HT_KIND_DISPATCH, epoch.e, 1, tid, &rec);
  }
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
      rowBase[tid] = chan_row_base(p.h.sendChanCount, tid, c, r->base);
    }
  }
  __syncthreads();
  if (*reinterpret_cast<volatile int*>(&abortFlag)) return;

  // 3. Push the channel's tokens. A token's routing and metadata (row per
  //    destination, top-k id and weight, up to 64 scale words) come in one
  //    round trip; with kPre the next token's are loaded before this token's
  //    row is copied, so that round trip overlaps the row's stores instead
  //    of stalling the warp between two rows (FP8 rows are short: there the
  //    stall was a tenth of the call).
  int t0, t1;
  channel_range(p.T, p.C, c, &t0, &t1);
  const int warp = warp_id(), nW = kDirectThreads / 32;
  const int nVec = p.xBytes / 16;
  const bool wantScales = p.scales != nullptr && p.scaleCols > 0;
  TokenMeta cur;
  load_token_meta(p, rowBase, rows, t0 + warp, t1, lane, wantScales, &cur);
  for (int t = t0 + warp; t < t1; t += nW) {
    TokenMeta nxt;
    if (kPre) load_token_meta(p, rowBase, rows, t + nW, t1, lane, wantScales, &nxt);
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
      // Metadata of the row, per destination: read once, written to each.
#pragma unroll
      for (int r = 0; r < kR; r++) {
        if (!((m >> r) & 1)) continue;
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
    if (kPre) cur = nxt;
    else load_token_meta(p, rowBase, rows, t + nW, t1, lane, wantScales, &cur);
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

template <int kR, int kU, bool kPre>
epResult_t launch(const DirectDispatchParams& p, cudaStream_t stream) {
  // Programmatic dependent launch (EP_HT_PDL): the kernel is scheduled while
  // the notify before it still exchanges counts, so its launch latency is
  // hidden; it waits for the notify to complete (pdl_wait) before reading.
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.C);
  cfg.blockDim = dim3(kDirectThreads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = epHtPdlEnabled() ? 1 : 0;
  CUDACHECK(cudaLaunchKernelEx(&cfg, dispatch_direct_kernel<kR, kU, kPre>, p));
  return epSuccess;
}

template <int kR>
epResult_t launchU(const DirectDispatchParams& p, int unroll, bool prefetch, cudaStream_t stream) {
  if (prefetch) return unroll <= 4 ? launch<kR, 4, true>(p, stream) : launch<kR, 8, true>(p, stream);
  return unroll <= 4 ? launch<kR, 4, false>(p, stream) : launch<kR, 8, false>(p, stream);
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

bool epHtDirectEnabled() { return epParamHtDirect() != 0; }

EP_PARAM(HtPdl, "HT_PDL", 1)
bool epHtPdlEnabled() { return epParamHtPdl() != 0; }

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
                                    const epHtDirectRec& rec, cudaStream_t stream) {
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
  p.epochCtr = epHtEpochCounters(st, EP_HT_KIND_DISPATCH);
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  const int R = comm->nranks, U = (int)epParamHtDevDirectUnroll();
  const bool pre = epParamHtDevDirectPrefetch() != 0;
  return R <= 2 ? launchU<2>(p, U, pre, stream) : R <= 4 ? launchU<4>(p, U, pre, stream) : launchU<8>(p, U, pre, stream);
}
