/*************************************************************************
 * epcomm LL dispatch kernel: send phase (FP8 cast + one-sided puts) and
 * receive phase (fan-out into the per-expert layout).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Send (phase bit 1):
 *  - block 0 builds the routing metadata (per-expert token ranks, counts,
 *    messages per destination) in its staging area and puts it to every rank,
 *    then raises metaFlag[me] = epoch there;
 *  - the other blocks take (token, 512-channel chunk) tasks: cast the chunk to
 *    FP8 (or keep BF16) and store it straight into each destination's slot
 *    (once per destination rank with dedup, once per expert without);
 *  - each block then adds its per-destination chunk counts to dataCnt[me] on
 *    that rank (release), once.
 * Receive (phase bit 2): wait for all metadata, compute each source's base
 * row per local expert (deterministic order: source rank, then token), wait
 * for a source's chunks (dataCnt reaches the count its metadata announced)
 * and copy its messages into recvX / scales, writing srcInfo, weights and
 * the handle. The last block acknowledges the set to every source.
 *************************************************************************/
#include <cuda_runtime.h>

#include "core/checks.h"
#include "lowlatency/ll_common.cuh"

namespace ep {
namespace ll {

namespace {

struct DSmem {
  int* cnt;     // [R] chunks this block sent to each rank
  int* T;       // [R] tokens of each source
  int* nMsg;    // [R] messages each source sends to me
  int* hasW;    // [R]
  int* base;    // [L x R] first row of (local expert, source)
  int* total;   // [L]
  int* ids;     // [M x K] validated ids (block 0, send)
  uint32_t* bits;  // [E x W] token bitmap per expert
  int* ecnt;    // [E]
  int* nOut;    // [R]
};

__device__ __forceinline__ DSmem carve(char* smem, int R, int M, int K, int E, int L) {
  DSmem s;
  int W = (M + 31) / 32;
  s.cnt = reinterpret_cast<int*>(smem);
  s.T = s.cnt + R;
  s.nMsg = s.T + R;
  s.hasW = s.nMsg + R;
  s.base = s.hasW + R;
  s.total = s.base + L * R;
  s.ids = s.total + L;
  s.bits = reinterpret_cast<uint32_t*>(s.ids + M * K);
  s.ecnt = reinterpret_cast<int*>(s.bits + E * W);
  s.nOut = s.ecnt + E;
  return s;
}

// Block 0 of the send phase: routing metadata, staged locally then put to every rank.
__device__ void build_and_send_meta(const DispatchParams& p, const DSmem& sm, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, E = p.E, L = p.L, T = p.T, me = p.rank;
  const int W = (M + 31) / 32, TK = T * K;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < TK; i += nt) {
    long long id = load_topk(p.topk, p.topk64, i);
    bool valid = id >= 0 && id < E;
    if (!valid && id != -1) dev::record_error(sa.status, kFamilyLL, EP_DEVERR_BAD_EXPERT_ID, i / K, i % K, id);
    sm.ids[i] = valid ? (int)id : -1;
  }
  for (int i = tid; i < E * W; i += nt) sm.bits[i] = 0;
  for (int d = tid; d < R; d += nt) sm.nOut[d] = 0;
  __syncthreads();
  for (int i = tid; i < TK; i += nt) {
    int e = sm.ids[i];
    if (e < 0) continue;
    int t = i / K;
    atomicOr(&sm.bits[e * W + (t >> 5)], 1u << (t & 31));
    if (!p.dedup) atomicAdd(&sm.nOut[e / L], 1);
  }
  if (p.dedup) {
    for (int t = tid; t < T; t += nt) {
      for (int k = 0; k < K; k++) {
        int e = sm.ids[t * K + k];
        if (e < 0) continue;
        int d = e / L;
        bool dup = false;
        for (int k2 = 0; k2 < k; k2++) {
          int e2 = sm.ids[t * K + k2];
          dup |= (e2 >= 0 && e2 / L == d);
        }
        if (!dup) atomicAdd(&sm.nOut[d], 1);
      }
    }
  }
  __syncthreads();
  char* stage = sa.ps.local + sa.stageOff;
  int* hdr = reinterpret_cast<int*>(stage);
  int* nMsgs = reinterpret_cast<int*>(stage + sa.metaNOff);
  int* cnt = reinterpret_cast<int*>(stage + sa.metaCntOff);
  int* pick = reinterpret_cast<int*>(stage + sa.metaPickOff);
  float* w = reinterpret_cast<float*>(stage + sa.metaWOff);
  for (int i = tid; i < TK; i += nt) {
    int e = sm.ids[i];
    int v = -1;
    if (e >= 0) {
      int t = i / K;
      const uint32_t* b = sm.bits + e * W;
      int j = __popc(b[t >> 5] & ((1u << (t & 31)) - 1u));
      for (int q = 0; q < (t >> 5); q++) j += __popc(b[q]);
      v = e * M + j;
    }
    pick[i] = v;
    if (p.weights) w[i] = p.weights[i];
  }
  for (int e = tid; e < E; e += nt) {
    int c = 0;
    for (int q = 0; q < W; q++) c += __popc(sm.bits[e * W + q]);
    cnt[e] = c;
  }
  for (int d = tid; d < R; d += nt) nMsgs[d] = sm.nOut[d];
  if (tid == 0) {
    hdr[0] = T;
    hdr[1] = p.weights != nullptr;
    hdr[2] = 0;
    hdr[3] = 0;
  }
  __syncthreads();
  const int lane = tid & 31, warp = tid >> 5, nw = nt >> 5;
  size_t bytesA = alignUp(sa.metaPickOff + sizeof(int) * (size_t)TK, 16);
  size_t bytesW = alignUp(sizeof(float) * (size_t)TK, 16);
  for (int d = warp; d < R; d += nw) {
    size_t dst = sa.metaOff + (size_t)me * sa.metaStride;
    sa.ps.put_warp(d, dst, stage, bytesA, lane);
    if (p.weights && bytesW) sa.ps.put_warp(d, dst + sa.metaWOff, stage + sa.metaWOff, bytesW, lane);
    __syncwarp();
    if (lane == 0) sa.ps.signal_set(d, sa.sigOff + sizeof(int) * (size_t)me, (int)epoch);
  }
}

// Cast 16 BF16 channels to e4m3 with the group's scale (8 lanes = 128 channels).
__device__ __forceinline__ int4 cast_fp8(const int4& v0, const int4& v1, bool roundScale, float* scaleOut) {
  float f[16];
  unpack8(v0, f);
  unpack8(v1, f + 8);
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(f[i]));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 4));
  amax = fmaxf(amax, 1e-4f);
  float scale = amax / 448.f, inv;
  if (roundScale) {
    scale = pow2_ceil(scale);
    inv = 1.f / scale;
  } else {
    inv = 448.f / amax;
  }
  *scaleOut = scale;
  uint32_t wds[4];
#pragma unroll
  for (int q = 0; q < 4; q++) {
    __nv_fp8x2_storage_t lo =
        __nv_cvt_float2_to_fp8x2(make_float2(f[4 * q] * inv, f[4 * q + 1] * inv), __NV_SATFINITE, __NV_E4M3);
    __nv_fp8x2_storage_t hi =
        __nv_cvt_float2_to_fp8x2(make_float2(f[4 * q + 2] * inv, f[4 * q + 3] * inv), __NV_SATFINITE, __NV_E4M3);
    wds[q] = (uint32_t)lo | ((uint32_t)hi << 16);
  }
  return make_int4((int)wds[0], (int)wds[1], (int)wds[2], (int)wds[3]);
}

template <bool kFp8>
__device__ void send_tokens(const DispatchParams& p, const DSmem& sm) {
  const SetArgs& sa = p.sa;
  const int K = p.K, H = p.H, L = p.L, E = p.E, M = p.M, me = p.rank;
  const int C = (H + kChunk - 1) / kChunk;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int workers = (gridDim.x - 1) * nw;
  const int ntask = p.T * C;
  for (int task = (blockIdx.x - 1) * nw + warp; task < ntask; task += workers) {
    int t = task / C, c = task - t * C;
    long long id = lane < K ? load_topk(p.topk, p.topk64, t * K + lane) : -1;
    bool valid = id >= 0 && id < E;
    int dest = valid ? (int)(id / L) : -1;
    unsigned kmask;
    if (p.dedup) {
      unsigned peers = __match_any_sync(0xffffffffu, valid ? dest : (0x40000000 | lane));
      kmask = __ballot_sync(0xffffffffu, valid && (__ffs(peers) - 1 == lane));
    } else {
      kmask = __ballot_sync(0xffffffffu, valid);
    }
    if (kmask == 0) continue;
    int ch0 = c * kChunk + lane * 16;
    bool active = ch0 < H;
    int4 v0 = make_int4(0, 0, 0, 0), v1 = v0;
    if (active) {
      const int4* src = reinterpret_cast<const int4*>(p.x + (size_t)t * H + ch0);
      v0 = dev::ld_nc_na(src);
      v1 = dev::ld_nc_na(src + 1);
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
      if (lane == 0) atomicAdd(&sm.cnt[d], 1);
    }
  }
}

// Copies one received message into the rows of the local experts in `tmask`
// (lane k holds flat row `flat` of pick k).
template <bool kFp8>
__device__ __forceinline__ void copy_message(const DispatchParams& p, const char* msg, unsigned tmask, int flat,
                                             int lane) {
  const int H = p.H;
  const int RM = p.R * p.M;
  const int n16 = kFp8 ? H / 16 : H / 8;
  constexpr int U = 8;
  const int4* src = reinterpret_cast<const int4*>(msg);
  for (int base = 0; base < n16; base += 32 * U) {
    int4 v[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      int i = base + u * 32 + lane;
      if (i < n16) v[u] = dev::ld_nc_na(src + i);
    }
    unsigned m = tmask;
    while (m) {
      int k = __ffs(m) - 1;
      m &= m - 1;
      int f = __shfl_sync(0xffffffffu, flat, k);
      int4* dst = reinterpret_cast<int4*>(static_cast<char*>(p.recvX) + (size_t)f * n16 * 16);
#pragma unroll
      for (int u = 0; u < U; u++) {
        int i = base + u * 32 + lane;
        if (i < n16) dst[i] = v[u];
      }
    }
  }
  if (!kFp8) return;
  const int G = H / 128;
  const float* sc = reinterpret_cast<const float*>(msg + H);
  if (p.ue8m0) {
    const int S = (G + 3) / 4;
    for (int wb = 0; wb < S; wb += 32) {
      int w = wb + lane;
      uint32_t word = 0;
      if (w < S) {
        for (int j = 0; j < 4 && 4 * w + j < G; j++) {
          uint32_t b = (__float_as_uint(__ldcg(sc + 4 * w + j)) >> 23) & 0xffu;
          word |= b << (8 * j);
        }
      }
      unsigned m = tmask;
      while (m) {
        int k = __ffs(m) - 1;
        m &= m - 1;
        int f = __shfl_sync(0xffffffffu, flat, k);
        if (w < S) {
          size_t idx = p.scaleMn ? ((size_t)(f / RM) * S + w) * RM + (f % RM) : (size_t)f * S + w;
          static_cast<uint32_t*>(p.recvScales)[idx] = word;
        }
      }
    }
  } else {
    for (int gb = 0; gb < G; gb += 32) {
      int g = gb + lane;
      float s = g < G ? __ldcg(sc + g) : 0.f;
      unsigned m = tmask;
      while (m) {
        int k = __ffs(m) - 1;
        m &= m - 1;
        int f = __shfl_sync(0xffffffffu, flat, k);
        if (g < G) {
          size_t idx = p.scaleMn ? ((size_t)(f / RM) * G + g) * RM + (f % RM) : (size_t)f * G + g;
          static_cast<float*>(p.recvScales)[idx] = s;
        }
      }
    }
  }
}

template <bool kFp8>
__device__ void recv_tokens(const DispatchParams& p, const DSmem& sm, int* sFail) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, H = p.H, L = p.L, me = p.rank;
  const int C = (H + kChunk - 1) / kChunk;
  const int RM = R * M;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const uint32_t* consumed = sa.ctl->consumed + (size_t)sa.set * R;
  int waited = -1;
  for (int u = blockIdx.x * nw + warp; u < R * M; u += gridDim.x * nw) {
    int s = u / M, t = u - s * M;
    if (t >= sm.T[s]) continue;
    const char* meta = sa.ps.local + sa.metaOff + (size_t)s * sa.metaStride;
    int v = lane < K ? __ldcg(reinterpret_cast<const int*>(meta + sa.metaPickOff) + t * K + lane) : -1;
    float w = 0.f;
    int flat = -1;
    if (v >= 0) {
      int eg = v / M, j = v - eg * M;
      if (eg / L == me) {
        int le = eg - me * L;
        flat = le * RM + sm.base[le * R + s] + j;
        if (sm.hasW[s]) w = __ldcg(reinterpret_cast<const float*>(meta + sa.metaWOff) + t * K + lane);
      }
    }
    if (lane < K) {
      size_t h = ((size_t)s * M + t) * K + lane;
      p.hFlatRow[h] = flat;
      p.hW[h] = w;
    }
    unsigned lmask = __ballot_sync(0xffffffffu, flat >= 0);
    if (lmask == 0) continue;
    if (flat >= 0) {
      if (p.srcInfo) p.srcInfo[flat] = t;
      if (p.recvW) p.recvW[flat] = w;
    }
    if (s != waited) {
      int ok = 1;
      if (lane == 0) {
        const int* cntp = sa.ps.local_ptr<int>(sa.sigOff + sizeof(int) * ((size_t)R + s));
        ok = wait_reach(cntp, consumed[s] + (uint32_t)(sm.nMsg[s] * C), sa, kWaitData, s);
      }
      ok = __shfl_sync(0xffffffffu, ok, 0);
      if (!ok) {
        *sFail = 1;
        break;
      }
      waited = s;
    }
    const char* data = sa.ps.local + sa.dataOff;
    if (p.dedup) {
      copy_message<kFp8>(p, data + ((size_t)s * M + t) * p.msgStride, lmask, flat, lane);
    } else {
      unsigned m = lmask;
      while (m) {
        int k = __ffs(m) - 1;
        m &= m - 1;
        copy_message<kFp8>(p, data + (((size_t)s * M + t) * K + k) * p.msgStride, 1u << k, flat, lane);
      }
    }
  }
}

template <bool kFp8>
__global__ void __launch_bounds__(kThreads, 1) dispatchKernel(DispatchParams p) {
  extern __shared__ __align__(16) char smem[];
  __shared__ int sFail, sFlag;
  const SetArgs& sa = p.sa;
  const int R = p.R, L = p.L, me = p.rank;
  const int C = (p.H + kChunk - 1) / kChunk;
  const int tid = threadIdx.x, nt = blockDim.x;
  DSmem sm = carve(smem, R, p.M, p.K, p.E, L);
  const uint32_t sendEpoch = *(volatile uint32_t*)&sa.ctl->sendEpoch[sa.set] + 1;
  const uint32_t recvEpoch = *(volatile uint32_t*)&sa.ctl->recvEpoch[sa.set] + 1;
  if (tid == 0) sFail = 0;
  for (int d = tid; d < R; d += nt) sm.cnt[d] = 0;
  __syncthreads();

  if (p.phases & kPhaseSend) {
    if (wait_acks(sa, R, sendEpoch, &sFail)) {
      if (blockIdx.x == 0)
        build_and_send_meta(p, sm, sendEpoch);
      else
        send_tokens<kFp8>(p, sm);
    }
    // One release per destination, after the barrier: the barrier orders every
    // warp's stores before it, and release is cumulative (per-warp system
    // fences instead cost ~1 us each, serialised per SM).
    __syncthreads();
    for (int d = tid; d < R; d += nt)
      if (sm.cnt[d] > 0) sa.ps.signal_add(d, sa.sigOff + sizeof(int) * ((size_t)R + me), sm.cnt[d]);
  }

  if (p.phases & kPhaseRecv) {
    for (int s = tid; s < R; s += nt) {
      const int* f = sa.ps.local_ptr<int>(sa.sigOff + sizeof(int) * (size_t)s);
      if (!wait_equal(f, recvEpoch, sa, kWaitMeta, s)) sFail = 1;
    }
    __syncthreads();
    if (!sFail) {
      for (int s = tid; s < R; s += nt) {
        const int* meta = reinterpret_cast<const int*>(sa.ps.local + sa.metaOff + (size_t)s * sa.metaStride);
        sm.T[s] = __ldcg(meta);
        sm.hasW[s] = __ldcg(meta + 1);
        sm.nMsg[s] = __ldcg(meta + sa.metaNOff / 4 + me);
      }
      for (int e = tid; e < L; e += nt) {
        int run = 0;
        for (int s = 0; s < R; s++) {
          const int* cnt = reinterpret_cast<const int*>(sa.ps.local + sa.metaOff + (size_t)s * sa.metaStride +
                                                        sa.metaCntOff);
          sm.base[e * R + s] = run;
          run += __ldcg(cnt + me * L + e);
        }
        sm.total[e] = run;
      }
      __syncthreads();
      if (blockIdx.x == 0) {
        for (int e = tid; e < L; e += nt) {
          p.recvCount[e] = sm.total[e];
          if (p.cumStats) p.cumStats[e] += sm.total[e];
        }
        if (p.layoutRange) {
          for (int i = tid; i < L * R; i += nt) {
            int e = i / R, s = i - e * R;
            int end = s + 1 < R ? sm.base[i + 1] : sm.total[e];
            p.layoutRange[i] = ((long long)sm.base[i] << 32) | (long long)(uint32_t)(end - sm.base[i]);
          }
        }
        for (int s = tid; s < R; s += nt) p.hSrcT[s] = sm.T[s];
      }
      recv_tokens<kFp8>(p, sm, &sFail);
    }
  }

  if (last_block(sa.ctl, sa.set, &sFlag)) {
    if ((p.phases & kPhaseRecv) && !sFail) {
      for (int s = tid; s < R; s += nt) sa.ctl->consumed[(size_t)sa.set * R + s] += (uint32_t)(sm.nMsg[s] * C);
    }
    __syncthreads();
    if (tid == 0) {
      if (p.phases & kPhaseSend) sa.ctl->sendEpoch[sa.set] = sendEpoch;
      if (p.phases & kPhaseRecv) sa.ctl->recvEpoch[sa.set] = recvEpoch;
    }
    if (p.phases & kPhaseRecv) {
      for (int s = tid; s < R; s += nt) sa.ps.signal_set(s, sa.sigOff + sizeof(int) * (2 * (size_t)R + me), (int)recvEpoch);
    }
  }
}

}  // namespace

size_t dispatchSmemBytes(int R, int M, int K, int E) {
  int L = E / R, W = (M + 31) / 32;
  return sizeof(int) * ((size_t)4 * R + (size_t)L * R + L + (size_t)M * K + (size_t)E * W + E + R);
}

epResult_t launchDispatch(const DispatchParams& p, int blocks, cudaStream_t stream) {
  size_t smem = dispatchSmemBytes(p.R, p.M, p.K, p.E);
  void* fn = p.fp8 ? (void*)dispatchKernel<true> : (void*)dispatchKernel<false>;
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
  attr[0].val.cooperative = (p.phases == (kPhaseSend | kPhaseRecv)) ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  void* args[] = {const_cast<DispatchParams*>(&p)};
  CUDACHECK(cudaLaunchKernelExC(&cfg, fn, args));
  return epSuccess;
}

}  // namespace ll
}  // namespace ep
