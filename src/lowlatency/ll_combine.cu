/*************************************************************************
 * epcomm LL combine kernel.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Send (phase bit 1), on each expert rank: for every (source s, token t) that
 * the dispatch brought here (the handle's flat rows), per 512-channel chunk:
 *  - reduce on sender: sum_k w[t][k] * x[row(k)] over the token's local
 *    experts in fp32, round to BF16, store one row into slot [me][t] of s;
 *  - plain: store each expert's row as is into slot [t][k] of s.
 * Then one release add per destination of the chunks sent. The flow-control
 * ack and the epochs are those of the dispatch (ll_common.cuh): published at
 * kernel start, no last-block atomic, no ack on the critical path.
 * Receive (phase bit 2), on the token's own rank: expected chunks per expert
 * rank come from the top-k ids (staged in shared memory once, also used by
 * the reduction); once every rank's count is reached,
 * out[t] = sum of the partial rows (reduced) or sum_k w[t][k] * row[t][k]
 * (plain), in fp32, in a fixed order (deterministic), stored as BF16.
 *************************************************************************/
#include <cuda_runtime.h>

#include "core/checks.h"
#include "lowlatency/ll_common.cuh"

namespace ep {
namespace ll {

namespace {

constexpr int kBatch = 4;  // rows loaded before they are summed (latency hiding)

// Channels of a 512-channel chunk that a lane owns: 8 at chA = c*512 + 8*lane
// and 8 at chA + 256. Each 16-byte access instruction of the warp then covers
// 512 contiguous bytes: whole 32-byte sectors, which matters for the stores
// that cross NVLink (16 contiguous channels per lane would write every sector
// in two halves, from two instructions).
struct Lane2 {
  int chA, chB;
  bool a, b;
  __device__ __forceinline__ Lane2(int c, int lane, int H) {
    chA = c * kChunk + lane * 8;
    chB = chA + kChunk / 2;
    a = chA < H;
    b = chB < H;
  }
};

// Loads up to kBatch rows (this lane's 16 channels) of the picks in *m
// (taking them off the mask), with their weights; missing ones are zero.
__device__ __forceinline__ void load_batch(const uint16_t* x, int H, const Lane2& ln, int flat, float w,
                                           unsigned* m, int4 (&v)[kBatch][2], float (&wk)[kBatch], int (&kk)[kBatch]) {
#pragma unroll
  for (int b = 0; b < kBatch; b++) {
    int k = *m ? __ffs(*m) - 1 : -1;
    if (*m) *m &= *m - 1;
    int src = k < 0 ? 0 : k;
    int f = __shfl_sync(0xffffffffu, flat, src);
    wk[b] = __shfl_sync(0xffffffffu, w, src);
    kk[b] = k;
    v[b][0] = make_int4(0, 0, 0, 0);
    v[b][1] = v[b][0];
    if (k >= 0) {
      const uint16_t* row = x + (size_t)f * H;
      if (ln.a) v[b][0] = dev::ld_nc_na(reinterpret_cast<const int4*>(row + ln.chA));
      if (ln.b) v[b][1] = dev::ld_nc_na(reinterpret_cast<const int4*>(row + ln.chB));
    } else {
      wk[b] = 0.f;
    }
  }
}

// A warp's first send unit: block 0 takes the last units, since it starts
// with the ack release (ll_common.cuh).
__device__ __forceinline__ int first_unit() {
  const int vb = blockIdx.x == 0 ? gridDim.x - 1 : blockIdx.x - 1;
  return vb * (blockDim.x >> 5) + (threadIdx.x >> 5);
}

// Lane k < K: the handle's flat row and weight of top-k slot k of unit u's
// (source, token) (read whether or not that token exists: the caller checks).
__device__ __forceinline__ void load_unit(const CombineParams& p, int u, int* flat, float* w) {
  const int C = (p.H + kChunk - 1) / kChunk, lane = threadIdx.x & 31;
  *flat = -1;
  *w = 0.f;
  if (u >= p.R * p.M * C || lane >= p.K) return;
  size_t h = (size_t)(u / C) * p.K + lane;  // (s * M + t) * K + lane
  *flat = __ldg(p.hFlatRow + h);
  *w = __ldg(p.hW + h);
}

// preFlat/preW: the first unit's handle entries, read at kernel start (before
// the ack wait: they do not depend on it).
__device__ void send_rows(const CombineParams& p, int* sCnt, const int* sSrcT, int preFlat, float preW) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, H = p.H, me = p.rank;
  const int C = (H + kChunk - 1) / kChunk;
  const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int nunits = R * M * C;
  const int stride = gridDim.x * nw;
  int nextFlat = preFlat;
  float nextW = preW;
  for (int u = first_unit(); u < nunits; u += stride) {
    // This unit's handle entries were read one unit ahead (at kernel start for
    // the first): the next unit's read overlaps this unit's row loads and stores.
    const int flat = nextFlat;
    const float w = nextW;
    load_unit(p, u + stride, &nextFlat, &nextW);
    int st = u / C, c = u - st * C;
    int s = st / M, t = st - s * M;
    if (t >= sSrcT[s]) continue;
    unsigned lmask = __ballot_sync(0xffffffffu, flat >= 0);
    if (lmask == 0) continue;
    const Lane2 ln(c, lane, H);
    unsigned m = lmask;
    int4 v[kBatch][2];
    float wk[kBatch];
    int kk[kBatch];
    if (p.reduce) {
      float acc[16];
#pragma unroll
      for (int i = 0; i < 16; i++) acc[i] = 0.f;
      while (m) {
        load_batch(p.x, H, ln, flat, w, &m, v, wk, kk);
#pragma unroll
        for (int b = 0; b < kBatch; b++) {
          float f[16];
          unpack8(v[b][0], f);
          unpack8(v[b][1], f + 8);
#pragma unroll
          for (int i = 0; i < 16; i++) acc[i] = fmaf(wk[b], f[i], acc[i]);
        }
      }
      uint16_t* dst = sa.ps.ptr<uint16_t>(s, sa.dataOff + ((size_t)me * M + t) * H * 2);
      if (ln.a) dev::st_na(reinterpret_cast<int4*>(dst + ln.chA), pack8(acc));
      if (ln.b) dev::st_na(reinterpret_cast<int4*>(dst + ln.chB), pack8(acc + 8));
      if (lane == 0) atomicAdd(&sCnt[s], 1);
    } else {
      int n = 0;
      while (m) {
        load_batch(p.x, H, ln, flat, w, &m, v, wk, kk);
#pragma unroll
        for (int b = 0; b < kBatch; b++) {
          if (kk[b] < 0) continue;
          n++;
          uint16_t* dst = sa.ps.ptr<uint16_t>(s, sa.dataOff + ((size_t)t * K + kk[b]) * H * 2);
          if (ln.a) dev::st_na(reinterpret_cast<int4*>(dst + ln.chA), v[b][0]);
          if (ln.b) dev::st_na(reinterpret_cast<int4*>(dst + ln.chB), v[b][1]);
        }
      }
      if (lane == 0) atomicAdd(&sCnt[s], n);
    }
  }
}

// Chunks each expert rank sends to this rank, from this rank's own routing.
// ids: the routing staged in shared memory (one coalesced pass).
__device__ void expected_counts(const CombineParams& p, int* sIds, int* sExp) {
  const int K = p.K, E = p.E, L = p.L, TK = p.T * p.K;
  for (int i = threadIdx.x; i < TK; i += blockDim.x) {
    long long id = load_topk(p.topk, p.topk64, i);
    sIds[i] = (id >= 0 && id < E) ? (int)(id / L) : -1;  // destination rank, -1 masked
  }
  __syncthreads();
  for (int t = threadIdx.x; t < p.T; t += blockDim.x) {
    for (int k = 0; k < K; k++) {
      int d = sIds[t * K + k];
      if (d < 0) continue;
      if (p.reduce) {
        bool dup = false;
        for (int k2 = 0; k2 < k; k2++) dup |= sIds[t * K + k2] == d;
        if (dup) continue;
      }
      atomicAdd(&sExp[d], 1);
    }
  }
}

__device__ void reduce_tokens(const CombineParams& p, const int* sIds) {
  const SetArgs& sa = p.sa;
  const int M = p.M, K = p.K, H = p.H;
  const int C = (H + kChunk - 1) / kChunk;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const uint16_t* data = reinterpret_cast<const uint16_t*>(sa.ps.local + sa.dataOff);
  const int vb = blockIdx.x == 0 ? gridDim.x - 1 : blockIdx.x - 1;  // block 0 last (it publishes acks)
  for (int u = vb * nw + warp; u < p.T * C; u += gridDim.x * nw) {
    int t = u / C, c = u - t * C;
    int dest = lane < K ? sIds[t * K + lane] : -1;
    bool valid = dest >= 0;
    unsigned kmask;
    float w = 0.f;
    if (p.reduce) {
      unsigned peers = __match_any_sync(0xffffffffu, valid ? dest : (0x40000000 | lane));
      kmask = __ballot_sync(0xffffffffu, valid && (__ffs(peers) - 1 == lane));
    } else {
      kmask = __ballot_sync(0xffffffffu, valid);
      if (valid) w = __ldg(p.weights + t * K + lane);
    }
    const Lane2 ln(c, lane, H);
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; i++) acc[i] = 0.f;
    unsigned m = kmask;
    while (m) {
      int4 v[kBatch][2];
      float wk[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        int k = m ? __ffs(m) - 1 : -1;
        if (m) m &= m - 1;
        int kk = k < 0 ? 0 : k;
        int d = __shfl_sync(0xffffffffu, dest, kk);
        wk[b] = p.reduce ? 1.f : __shfl_sync(0xffffffffu, w, kk);
        v[b][0] = make_int4(0, 0, 0, 0);
        v[b][1] = v[b][0];
        if (k >= 0) {
          size_t row = p.reduce ? (size_t)d * M + t : (size_t)t * K + k;
          const uint16_t* src = data + row * H;
          if (ln.a) v[b][0] = dev::ld_nc_na(reinterpret_cast<const int4*>(src + ln.chA));
          if (ln.b) v[b][1] = dev::ld_nc_na(reinterpret_cast<const int4*>(src + ln.chB));
        } else {
          wk[b] = 0.f;
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        float f[16];
        unpack8(v[b][0], f);
        unpack8(v[b][1], f + 8);
        if (p.reduce) {
#pragma unroll
          for (int i = 0; i < 16; i++) acc[i] += f[i];
        } else {
#pragma unroll
          for (int i = 0; i < 16; i++) acc[i] = fmaf(wk[b], f[i], acc[i]);
        }
      }
    }
    uint16_t* dst = p.out + (size_t)t * H;
    if (ln.a) *reinterpret_cast<int4*>(dst + ln.chA) = pack8(acc);
    if (ln.b) *reinterpret_cast<int4*>(dst + ln.chB) = pack8(acc + 8);
  }
}

__global__ void __launch_bounds__(kThreads, 1) combineKernel(CombineParams p) {
  const unsigned long long tEntry = dev::globaltimer_ns();  // EP_LL_PROFILE: before any parameter
  extern __shared__ __align__(16) char smem[];
  __shared__ int sFail;
  const SetArgs& sa = p.sa;
  const int R = p.R, me = p.rank;
  const int C = (p.H + kChunk - 1) / kChunk;
  const int tid = threadIdx.x, nt = blockDim.x;
  const bool doSend = (p.phases & kPhaseSend) != 0, doRecv = (p.phases & kPhaseRecv) != 0;
  int* sCnt = reinterpret_cast<int*>(smem);  // [R] chunks sent to each rank
  int* sExp = sCnt + R;                      // [R] chunk messages expected from each rank
  int* sSrcT = sExp + R;                     // [R] tokens of each source (from the handle)
  int* sIds = sSrcT + R;                     // [T x K] destination rank of each pick
  const uint32_t sendEpoch = doSend ? epoch_read(sa, sa.set) + 1 : 0;
  const uint32_t recvEpoch = doRecv ? epoch_read(sa, 2 + sa.set) + 1 : 0;
  Prof prof(sa, tEntry);
  const int ackPre = doSend ? ack_prefetch(sa, R) : 0;
  int preFlat = -1;
  float preW = 0.f;
  if (doSend) load_unit(p, first_unit(), &preFlat, &preW);
  if (tid == 0) sFail = 0;
  if (blockIdx.x == 0) publish_acks(sa, R);
  for (int d = tid; d < R; d += nt) {
    sCnt[d] = 0;
    sExp[d] = 0;
    if (doSend) sSrcT[d] = p.hSrcT[d];
  }

  if (doSend) {
    if (!wait_acks(sa, R, sendEpoch, ackPre)) sFail = 1;
    __syncthreads();
    prof.mark(1);
    if (!sFail) send_rows(p, sCnt, sSrcT, preFlat, preW);
    prof.mark(2);
    // One release per destination, after the barrier: the barrier orders every
    // warp's stores before it, and release is cumulative (per-warp system
    // fences instead cost ~1 us each, serialised per SM).
    __syncthreads();
    for (int d = tid; d < R; d += nt)
      if (sCnt[d] > 0) sa.ps.signal_add(d, sa.sigOff + sizeof(int) * (size_t)me, sCnt[d]);
    prof.mark(3);
  }

  if (doRecv) {
    __syncthreads();
    expected_counts(p, sIds, sExp);
    __syncthreads();
    for (int d = tid; d < R; d += nt) {
      const int* cntp = sa.ps.local_ptr<int>(sa.sigOff + sizeof(int) * (size_t)d);
      if (!sFail && !wait_reach(cntp, (uint32_t)(sExp[d] * C), sa, kWaitData, d)) sFail = 1;
    }
    __syncthreads();
    prof.mark(4);
    if (!sFail) reduce_tokens(p, sIds);
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

epResult_t launchCombine(const CombineParams& p, int blocks, cudaStream_t stream) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = sizeof(int) * (3 * (size_t)p.R + (size_t)p.M * p.K);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = (p.phases == (kPhaseSend | kPhaseRecv) && p.coop) ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  void* args[] = {const_cast<CombineParams*>(&p)};
  CUDACHECK(cudaLaunchKernelExC(&cfg, (void*)combineKernel, args));
  return epSuccess;
}

}  // namespace ll
}  // namespace ep
