/*************************************************************************
 * epcomm LL dispatch: device helpers both dispatch protocols share (push in
 * ll_dispatch.cu, flagged lines in ll_dispatch_lines.cuh): the shared-memory carve-up,
 * the T word, the FP8 cast, the send task map and the receive bookkeeping.
 * Included by ll_dispatch.cu only.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_LL_DISPATCH_COMMON_CUH_
#define EP_LL_DISPATCH_COMMON_CUH_

#include "lowlatency/ll_common.cuh"

namespace ep {
namespace ll {

struct DSmem {
  int* ids;        // [M x K] validated global expert ids, -1 masked (send)
  int* jpos;       // [M x K] rank of the token among this rank's tokens of the expert (send)
  uint32_t* bits;  // [E x Wt] token bitmap per expert (send; lines: the publishing blocks)
  int* nOut;       // [R] messages to each rank (block 0, send)
  int* sW;         // [R] (lines recv) source s sent weights; nOut's storage (send-side only, unused by lines)
  int* sG;         // [R] blocks each source's send ran with (recv: maps a chunk to the block that wrote it)
  int* sT;         // [R] tokens of each source (recv)
  int* sCnt;       // [L x R] tokens of (local expert, source) (recv)
  int* base;       // [L x R] first row of (local expert, source) (recv)
  int* total;      // [L] (recv)
};

__device__ __forceinline__ DSmem carve(char* smem, int R, int M, int K, int E, int L) {
  DSmem s;
  int W = (M + 31) / 32;
  s.ids = reinterpret_cast<int*>(smem);
  s.jpos = s.ids + M * K;
  s.bits = reinterpret_cast<uint32_t*>(s.jpos + M * K);
  s.nOut = reinterpret_cast<int*>(s.bits + E * W);
  s.sW = s.nOut;
  s.sG = s.nOut + R;
  s.sT = s.sG + R;
  s.sCnt = s.sT + R;
  s.base = s.sCnt + L * R;
  s.total = s.base + L * R;
  return s;
}

// The T word a dispatch source stores at every rank (info word 0): its token
// count, its block count (maps a task to the block that flags it), and the
// call's mode, so that a receiver detects a peer that made the call with
// other flags (dedup, FP8, protocol) instead of waiting for data never sent.
enum TWordMode : uint32_t { kModeFp8 = 1, kModeDedup = 2, kModeLines = 4, kModeWeights = 8 };
constexpr int kBlockBits = 9;  // up to kMaxBlocks = 256 blocks
static_assert(kMaxBlocks < (1 << kBlockBits), "block count fits the T word");
static_assert(kTokenBits + kBlockBits + 4 <= 32, "T word fields fit 32 bits");
__device__ __forceinline__ uint32_t tword(int T, int blocks, uint32_t mode) {
  return (uint32_t)T | ((uint32_t)blocks << kTokenBits) | (mode << (kTokenBits + kBlockBits));
}
__device__ __forceinline__ int tword_tokens(uint32_t v) { return (int)(v & ((1u << kTokenBits) - 1)); }
__device__ __forceinline__ int tword_blocks(uint32_t v) { return (int)((v >> kTokenBits) & ((1u << kBlockBits) - 1)); }
__device__ __forceinline__ uint32_t tword_mode(uint32_t v) { return v >> (kTokenBits + kBlockBits); }
// The mode bits both sides must agree on (weights may differ per rank).
__device__ __forceinline__ uint32_t call_mode(const DispatchParams& p) {
  return (p.fp8 ? kModeFp8 : 0u) | (p.dedup ? kModeDedup : 0u) | (p.lines ? kModeLines : 0u);
}
// The T word this rank stores at every rank for this dispatch call.
__device__ __forceinline__ uint32_t dispatch_tword(const DispatchParams& p) {
  return tword(p.T, gridDim.x, call_mode(p) | (p.weights ? kModeWeights : 0u));
}

// Set bits of a token bitmap row before bit t: a token's row among the
// tokens of this source that picked the row's expert.
__device__ __forceinline__ int bits_rank(const uint32_t* row, int t) {
  int j = __popc(row[t >> 5] & ((1u << (t & 31)) - 1u));
#pragma unroll 1
  for (int q = 0; q < (t >> 5); q++) j += __popc(row[q]);
  return j;
}

// This source's token count of every expert e (popcount of bits[e * Wt ..],
// Wt words per expert), into info word 2 + le of this source at e's rank:
// the receivers' row bases (both protocols).
__device__ void publish_expert_counts(const DispatchParams& p, const uint32_t* bits, int Wt, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const size_t mine = sa.infoOff + (size_t)p.rank * sa.infoStride;
#pragma unroll 1
  for (int e = threadIdx.x; e < p.E; e += blockDim.x) {
    int c = 0;
#pragma unroll 1
    for (int q = 0; q < Wt; q++) c += __popc(bits[e * Wt + q]);
    const int d = e / p.L;
    st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, mine + sizeof(uint64_t) * (2 + (size_t)(e - d * p.L))),
                       tagged(epoch, (uint32_t)c));
  }
}

// Checks source s's mode against this rank's; records EP_DEVERR_LL_MODE_MISMATCH if they differ.
__device__ __forceinline__ bool mode_matches(const DispatchParams& p, int s, uint32_t srcMode) {
  const uint32_t mine = call_mode(p), theirs = srcMode & (kModeFp8 | kModeDedup | kModeLines);
  if (mine == theirs) return true;
  dev::record_error(p.sa.status, kFamilyLL, EP_DEVERR_LL_MODE_MISMATCH, p.rank, s, (long long)(mine | (theirs << 8)));
  return false;
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

// A warp's first send task (task i runs on virtual block (i mod (blocks * 16)) / 16).
__device__ __forceinline__ int first_task() {
  return vblock() * (blockDim.x >> 5) + (threadIdx.x >> 5);
}

// This lane's 16 BF16 channels of task `task` (zero past H or past the tasks).
__device__ __forceinline__ void load_chunk(const DispatchParams& p, int task, int4* v0, int4* v1) {
  const int C = (p.H + kChunk - 1) / kChunk;
  *v0 = make_int4(0, 0, 0, 0);
  *v1 = *v0;
  if (task >= p.T * C) return;
  int t = task / C, c = task - t * C;
  int ch0 = c * kChunk + (threadIdx.x & 31) * 16;
  if (ch0 >= p.H) return;
  const int4* src = reinterpret_cast<const int4*>(p.x + (size_t)t * p.H + ch0);
  *v0 = dev::ld_nc_na(src);
  *v1 = dev::ld_nc_na(src + 1);
}

// Receive bookkeeping once the per-(local expert, source) token counts are in
// sm.sCnt (and the sources' T in sm.sT): the first row of each (expert,
// source) -- sources in rank order -- and, from block 0, the counts, layout
// ranges, cumulative statistics and the handle's per-source token counts.
__device__ __forceinline__ void recv_bases(const DispatchParams& p, const DSmem& sm) {
  const int R = p.R, L = p.L, tid = threadIdx.x, nt = blockDim.x;
  // Loops kept rolled (#pragma unroll 1) here and in the lines receive path:
  // run once per launch with a cold instruction cache, unrolled code costs
  // more to fetch than it saves (ll_notes.md round 8).
#pragma unroll 1
  for (int e = tid; e < L; e += nt) {
    int run = 0;
#pragma unroll 1
    for (int s = 0; s < R; s++) {
      sm.base[e * R + s] = run;
      run += sm.sCnt[e * R + s];
    }
    sm.total[e] = run;
  }
  __syncthreads();
  if (blockIdx.x == 0) {
#pragma unroll 1
    for (int e = tid; e < L; e += nt) {
      p.recvCount[e] = sm.total[e];
      if (p.cumStats) p.cumStats[e] += sm.total[e];
    }
    if (p.layoutRange) {
#pragma unroll 1
      for (int i = tid; i < L * R; i += nt) {
        p.layoutRange[i] = ((long long)sm.base[i] << 32) | (long long)(uint32_t)sm.sCnt[i];
      }
    }
#pragma unroll 1
    for (int s = tid; s < R; s += nt) p.hSrcT[s] = sm.sT[s];
  }
}

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_DISPATCH_COMMON_CUH_
