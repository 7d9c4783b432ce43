/*************************************************************************
 * epcomm: HT intranode combine, direct path (pull from registered inputs).
 *
 * The rows of token t that went to rank r sit in r's combine input x at the
 * row dispatch put them:
 *   r's rankPrefix[me] (from r's record) + rows of our earlier channels to r
 *   + slotPrefix[t][r]
 * One block per channel, every warp a reducer: a warp takes a token, loads
 * its rows from every rank it went to (our own x included) over NVLink with
 * 16-byte loads (several per lane and source in flight), sums them in fp32
 * in rank order with the biases, and writes the BF16 row; the top-k weights
 * are summed the same way. Nothing goes through the symmetric buffer's rings
 * and no SM copies rows for another.
 * Start: records and path flags (ht_direct.cuh): a peer's record says its
 * x is complete (its combine kernel started, in stream order). End: every
 * block writes a done word into each peer's buffer once it read all it
 * needs from that peer; a block ends when every peer's same channel is done
 * reading from us, so our x stays untouched until nobody reads it.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <algorithm>
#include <cstring>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "core/checks.h"
#include "core/comm.h"
#include "core/register.h"
#include "intranode/ht_direct.cuh"
#include "intranode/ht_direct.h"
#include "intranode/ht_handle.h"
#include "intranode/ht_state.h"

namespace ep {
namespace ht {
namespace {

constexpr int kCombineThreads = 512;
template <int kR>
constexpr int pullUnroll() { return kR <= 4 ? 4 : 2; }  // 16-byte loads per lane and source in flight

struct DirectCombineParams {
  Buf b;
  int C, T, H, K;
  epHtDirectRec rec;  // ours: slot/off [0] = x, [1] = weights; rows, wRows
  char* const* table;
  const __nv_bfloat16* bias0;
  const __nv_bfloat16* bias1;
  epHtHandleDev h;
  __nv_bfloat16* out;
  float* outW;
  epDeviceStatus* status;
  unsigned long long timeoutNs;
  uint32_t* epochCtr;  // call epochs on the device (CallEpoch in ht_device.cuh)
};

template <int kR>
__global__ void __launch_bounds__(kCombineThreads, 1) combine_direct_kernel(DirectCombineParams p) {
  const CallEpoch epoch(p.epochCtr);  // first: every return path advances it
  __shared__ const char* srcX[EP_HT_MAX_NVL_RANKS];
  __shared__ const float* srcW[EP_HT_MAX_NVL_RANKS];
  __shared__ int rowBase[EP_HT_MAX_NVL_RANKS];
  __shared__ int rows[EP_HT_MAX_NVL_RANKS];
  __shared__ int wRows[EP_HT_MAX_NVL_RANKS];
  __shared__ int slotX[EP_HT_MAX_NVL_RANKS];
  __shared__ int abortFlag;
  const int c = blockIdx.x, tid = threadIdx.x, lane = lane_id();
  const int R = p.b.R(), me = p.b.me();
  if (tid == 0) abortFlag = 0;
  __syncthreads();
  if (c == 0 && tid < R) {
    epHtDirectRec rec = p.rec;
    rec.base = p.h.rankPrefix[tid];
    path_publish(p.b, EP_HT_KIND_COMBINE, epoch.e, 1, tid, &rec);
  }
  if (tid < R) {
    Spin spin(p.timeoutNs);
    if (path_wait(p.b, EP_HT_KIND_COMBINE, epoch.e, 1, tid, spin, &abortFlag, p.status, c)) {
      const epHtDirectRec* r = drec_at(p.b, p.b.local(), EP_HT_KIND_COMBINE, tid);
      const int sx = r->slot[0], sw = r->slot[1];
      const char* bx = sx >= 0 ? p.table[(size_t)sx * R + tid] : nullptr;
      const char* bw = sw >= 0 ? p.table[(size_t)sw * R + tid] : nullptr;
      srcX[tid] = bx ? bx + r->off[0] : nullptr;
      srcW[tid] = bw ? reinterpret_cast<const float*>(bw + r->off[1]) : nullptr;
      rows[tid] = bx ? r->rows : 0;
      wRows[tid] = bw ? r->wRows : 0;
      slotX[tid] = sx;
      rowBase[tid] = chan_row_base(p.h.sendChanCount, tid, c, r->base);
    }
  }
  __syncthreads();
  if (*reinterpret_cast<volatile int*>(&abortFlag)) return;

  int t0, t1;
  channel_range(p.T, p.C, c, &t0, &t1);
  const int warp = warp_id(), nW = kCombineThreads / 32;
  const int nVec = p.H / 8;
  constexpr int kU = pullUnroll<kR>();
  for (int t = t0 + warp; t < t1; t += nW) {
    int row = -1;
    if (lane < R && p.h.isTokenInRank[(size_t)t * R + lane]) {
      row = rowBase[lane] + p.h.slotPrefix[(size_t)t * R + lane];
      if (row >= rows[lane] || (p.outW && row >= wRows[lane])) {
        // The peer's registration does not hold the row: skip it, report.
        record_error(p.status, kFamilyHt, EP_DEVERR_BAD_REGISTRATION, lane, slotX[lane], row);
        row = -1;
      }
    }
    const unsigned m = __ballot_sync(0xffffffffu, row >= 0);
    const int4* src[kR];
    int rowOf[kR];
#pragma unroll
    for (int r = 0; r < kR; r++) {
      rowOf[r] = __shfl_sync(0xffffffffu, row, r < R ? r : 0);
      src[r] = ((m >> r) & 1) ? reinterpret_cast<const int4*>(srcX[r] + (size_t)rowOf[r] * p.H * 2) : nullptr;
    }
    const int4* b0 = p.bias0 ? reinterpret_cast<const int4*>(p.bias0 + (size_t)t * p.H) : nullptr;
    const int4* b1 = p.bias1 ? reinterpret_cast<const int4*>(p.bias1 + (size_t)t * p.H) : nullptr;
    int4* o = reinterpret_cast<int4*>(p.out + (size_t)t * p.H);
    for (int v0 = lane; v0 < nVec; v0 += 32 * kU) {
      int4 vals[kU][kR];
      int4 bv[kU][2];
#pragma unroll
      for (int u = 0; u < kU; u++) {
        const int v = v0 + u * 32;
        if (v < nVec) {
#pragma unroll
          for (int r = 0; r < kR; r++)
            if ((m >> r) & 1) vals[u][r] = ld_nc_na(src[r] + v);
          if (b0) bv[u][0] = ld_nc_na(b0 + v);
          if (b1) bv[u][1] = ld_nc_na(b1 + v);
        }
      }
#pragma unroll
      for (int u = 0; u < kU; u++) {
        const int v = v0 + u * 32;
        if (v < nVec) st_na(o + v, sum_chunk_bf16<kR>(vals[u], m, bv[u], b0 != nullptr, b1 != nullptr));
      }
    }
    if (p.outW && lane < p.K) {
      float w = 0.f;
#pragma unroll
      for (int r = 0; r < kR; r++) {
        if (!((m >> r) & 1)) continue;
        w += srcW[r][(size_t)rowOf[r] * p.K + lane];
      }
      p.outW[(size_t)t * p.K + lane] = w;
    }
  }
  // Everything we read has been consumed (stored above): tell each peer our
  // channel c is done with its x, then wait until all peers are done with ours.
  __syncthreads();
  if (tid < R && tid != me) st_release_sys(ddone_at(p.b, p.b.peers.buf[tid], EP_HT_KIND_COMBINE, me, c), (int)epoch.e);
  if (tid < R && tid != me) {
    Spin spin(p.timeoutNs);
    (void)done_wait(p.b, EP_HT_KIND_COMBINE, epoch.e, tid, c, spin, &abortFlag, p.status);
  }
}

template <int kR>
epResult_t launch(const DirectCombineParams& p, cudaStream_t stream) {
  // Plain launch, no clusters: the pull combine's rate did not depend on the
  // block placement (clusters of 1/2/4/8 within 0.3 %, unlike the dispatch).
  combine_direct_kernel<kR><<<p.C, kCombineThreads, 0, stream>>>(p);
  CUDACHECK_LAUNCH();
  return epSuccess;
}

}  // namespace
}  // namespace ht
}  // namespace ep

using namespace ep::ht;

bool epHtCombineDirectRecord(epComm* comm, const epCombineInput_t* in, int K, int hostNumRecv, epHtDirectRec* rec) {
  memset(rec, 0, sizeof(*rec));
  for (int i = 0; i < EP_HT_NUM_REG_BUFS; i++) rec->slot[i] = -1;
  if (!epHtDirectEnabled() || epRegCount(comm) == 0) return false;
  const size_t rowBytes = (size_t)in->hidden * 2;
  // Rows a peer may read: the host count when known (mode a), else whatever
  // the registration holds after x (checked per row on the device).
  if (in->x != nullptr) {
    const size_t need = hostNumRecv > 0 ? (size_t)hostNumRecv * rowBytes : 1;
    if (!epRegLookup(comm, in->x, need, &rec->slot[0], &rec->off[0])) {
      EP_INFO(EP_LOG_HT, "epCombine: x (%p) is not in a registered region: ring path", in->x);
      return false;
    }
    rec->rows = (int)std::min<size_t>(epRegBytesAfter(comm, in->x) / rowBytes, 0x7fffffff);
  }
  if (K > 0 && in->topkWeights != nullptr) {
    const size_t wb = (size_t)K * 4;
    const size_t need = hostNumRecv > 0 ? (size_t)hostNumRecv * wb : 1;
    if (!epRegLookup(comm, in->topkWeights, need, &rec->slot[1], &rec->off[1])) {
      EP_INFO(EP_LOG_HT, "epCombine: topkWeights (%p) is not in a registered region: ring path", in->topkWeights);
      return false;
    }
    rec->wRows = (int)std::min<size_t>(epRegBytesAfter(comm, in->topkWeights) / wb, 0x7fffffff);
  }
  return true;
}

epResult_t epHtLaunchCombineDirect(epComm* comm, epHtState* st, const epCombineInput_t* in,
                                   const epCombineOutput_t* out, epHtHandle* h, int K, const epHtDirectRec& rec,
                                   cudaStream_t stream) {
  DirectCombineParams p;
  p.b.lay = st->lay;
  p.b.peers = st->peers;
  p.C = h->numChannels;
  p.T = h->numTokens;
  p.H = in->hidden;
  p.K = K;
  p.rec = rec;
  p.table = epRegDevTable(comm);
  p.bias0 = static_cast<const __nv_bfloat16*>(in->bias0);
  p.bias1 = static_cast<const __nv_bfloat16*>(in->bias1);
  p.h = h->dev;
  p.out = static_cast<__nv_bfloat16*>(out->out);
  p.outW = K > 0 ? out->outTopkWeights : nullptr;
  p.status = comm->devStatusDev;
  p.timeoutNs = epCommWaitTimeoutNs(comm);
  p.epochCtr = epHtEpochCounters(st, EP_HT_KIND_COMBINE);
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  const int R = comm->nranks;
  return R <= 2 ? launch<2>(p, stream) : R <= 4 ? launch<4>(p, stream) : launch<8>(p, stream);
}
