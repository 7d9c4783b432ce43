/*************************************************************************
 * epcomm LL combine kernel.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Send (phase bit 1), on each expert rank: for every (source s, token t) that
 * the dispatch brought here (the handle's flat rows), per 512-channel chunk:
 *  - reduce on sender: sum_k w[t][k] * x[row(k)] over the token's local
 *    experts in fp32, round to BF16, store one row into slot [me][t] of s;
 *  - plain: store each expert's row as is into slot [t][k] of s.
 * The last block first tells every rank its block count (a tagged word);
 * every block ends with one release store per rank of blkDone[me][block] =
 * epoch. The flow-control ack and the epochs are those of the dispatch
 * (ll_common.cuh): published at kernel start, no last-block atomic, no ack on
 * the critical path.
 * Receive (phase bit 2), on the token's own rank: the token's expert ranks
 * come from the top-k ids (staged in shared memory once); a warp per (token,
 * chunk) waits only for the block of each expert rank that sent that chunk
 * (unit -> block is fixed by the sender's block count), then
 * out[t] = sum of the partial rows (reduced) or sum_k w[t][k] * row[t][k]
 * (plain), in fp32, in a fixed order (deterministic), stored as BF16. Chunks
 * are reduced while the senders' later blocks are still sending.
 * Lines (kLines: reduced on the sender, NVLink peers, hooked or not; EP_LL_LINES):
 * the same units over 448-channel chunks, each sent as 8 flagged 128-byte
 * lines (ll_lines.cuh) into the line slot [me][t] of the token's rank; its
 * receiver reduces a chunk once every expert rank's lines of it show the
 * epoch. No block count is needed, no release and no block-done flag: a
 * system-scope release completes only when the GPU's earlier NVLink writes
 * have drained, which held every block's flag until the end of the link
 * phase.
 *************************************************************************/
#include <cuda_runtime.h>

#include "core/checks.h"
#include "lowlatency/ll_common.cuh"
#include "lowlatency/ll_lines.cuh"

namespace ep {
namespace ll {

namespace {

constexpr int kBatch = 4;  // rows loaded before they are summed (latency hiding)
// The info word a combine sender stores at every rank: its block count and
// its mode (kModeReduce: rows reduced on the sender; kModeLines: flagged
// lines). A release-protocol receiver compares the mode with its own and
// reports an LL mode mismatch (reduceOnSender or EP_LL_LINES differing across
// ranks) instead of reading rows of another layout or waiting for flags never
// set; a lines receiver facing a release sender times out (epTimeout).
constexpr uint32_t kCombineModeReduce = 1u, kCombineModeLines = 4u;  // core/async_error.cc prints them
constexpr int kCombineModeShift = 16;
__device__ __forceinline__ uint32_t combine_mode(const CombineParams& p, bool lines) {
  return (p.reduce ? kCombineModeReduce : 0u) | (lines ? kCombineModeLines : 0u);
}

// Channels of a 512-channel chunk that a lane owns: 8 at chA = c*512 + 8*lane
// and 8 at chA + 256. Each 16-byte access instruction of the warp then covers
// 512 contiguous bytes: whole 32-byte sectors, which matters for the stores
// that cross NVLink (16 contiguous channels per lane would write every sector
// in two halves, from two instructions).
// Lines (kLines): chunk c is 8 flagged lines, written by two warp-wide
// stores of 4 lines; lane 8g + j (j < 7) carries the 8 channels of unit j of
// line g of each store (chA: lines 0-3, chB = chA + 224: lines 4-7), lane
// 8g + 7 the flag unit (no channels).
struct Lane2 {
  int chA, chB;
  bool a, b;
  __device__ __forceinline__ Lane2(int c, int lane, int H, bool lines) {
    if (lines) {
      chA = c * kCombineLineChunk + (lane >> 3) * (kLineUnits * 8) + (lane & 7) * 8;
      chB = chA + 4 * kLineUnits * 8;
    } else {
      chA = c * kChunk + lane * 8;
      chB = chA + kChunk / 2;
    }
    const bool flagLane = lines && (lane & 7) == 7;
    a = !flagLane && chA < H;
    b = !flagLane && chB < H;
  }
};

// acc += w * the lane's 16 channels (v[0], v[1]: 8 BF16 each), one fused
// multiply-add per channel (w = 1 for a plain sum: the same bits as an add).
__device__ __forceinline__ void fma_chunk(float w, const int4 (&v)[2], float (&acc)[16]) {
  float f[16];
  unpack8(v[0], f);
  unpack8(v[1], f + 8);
#pragma unroll
  for (int i = 0; i < 16; i++) acc[i] = fmaf(w, f[i], acc[i]);
}
// The lane's 16 summed channels into token t's output row.
__device__ __forceinline__ void store_out_chunk(const CombineParams& p, int t, const Lane2& ln, const float (&acc)[16]) {
  uint16_t* dst = p.out + (size_t)t * p.H;
  if (ln.a) *reinterpret_cast<int4*>(dst + ln.chA) = pack8(acc);
  if (ln.b) *reinterpret_cast<int4*>(dst + ln.chB) = pack8(acc + 8);
}
// Send units per row: 512-channel chunks, or 448-channel line chunks.
template <bool kLines>
__device__ __forceinline__ int row_chunks(int H) {
  return kLines ? combineLineChunks(H) : (H + kChunk - 1) / kChunk;
}

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
  const int vb = vblock();
  return vb * (blockDim.x >> 5) + (threadIdx.x >> 5);
}

// Lane k < K: the handle's flat row and weight of top-k slot k of unit u's
// (source, token) (read whether or not that token exists: the caller checks).
template <bool kLines>
__device__ __forceinline__ void load_unit(const CombineParams& p, int u, int* flat, float* w) {
  const int C = row_chunks<kLines>(p.H), lane = threadIdx.x & 31;
  *flat = -1;
  *w = 0.f;
  if (u >= p.R * p.M * C || lane >= p.K) return;
  const int s = u % p.R, t = (u / p.R) / C;  // unit u = (t * C + c) * R + s (see send_rows)
  size_t h = ((size_t)s * p.M + t) * p.K + lane;
  *flat = __ldg(p.hFlatRow + h);
  *w = __ldg(p.hW + h);
}

// preFlat/preW: the first unit's handle entries, read at kernel start (before
// the ack wait: they do not depend on it). kLines: each reduced chunk goes out
// as flagged lines holding `epoch` (no release afterwards).
template <bool kLines>
__device__ void send_rows(const CombineParams& p, const int* sSrcT, int preFlat, float preW, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const int R = p.R, M = p.M, K = p.K, H = p.H, me = p.rank;
  const int C = row_chunks<kLines>(H);
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
    load_unit<kLines>(p, u + stride, &nextFlat, &nextW);
    // Destination fastest: at any moment the warps of the GPU write to every
    // rank alike (ordered by destination, all GPUs would write to rank 0 first,
    // then rank 1, ...: one rank's ingress the bottleneck at a time).
    const int s = u % R, tc = u / R;
    const int t = tc / C, c = tc - t * C;
    if (t >= sSrcT[s]) continue;
    unsigned lmask = __ballot_sync(0xffffffffu, flat >= 0);
    if (lmask == 0) continue;
    const Lane2 ln(c, lane, H, kLines);
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
        for (int b = 0; b < kBatch; b++) fma_chunk(wk[b], v[b], acc);
      }
      if constexpr (kLines) {
        // Whole lines, flags included, in two store instructions (ll_lines.cuh).
        int4* dst = sa.ps.ptr<int4>(s, sa.lineOff + combineLineRel(M, sa.lineStride, me, t, c));
        const bool flagLane = (lane & 7) == 7;
        line_st(dst + lane, flagLane ? flag_unit(epoch) : pack8(acc));
        line_st(dst + 32 + lane, flagLane ? flag_unit(epoch) : pack8(acc + 8));
      } else {
        uint16_t* dst = sa.ps.ptr<uint16_t>(s, sa.dataOff + ((size_t)me * M + t) * H * 2);
        if (ln.a) dev::st_na(reinterpret_cast<int4*>(dst + ln.chA), pack8(acc));
        if (ln.b) dev::st_na(reinterpret_cast<int4*>(dst + ln.chB), pack8(acc + 8));
      }
    } else {
      while (m) {
        load_batch(p.x, H, ln, flat, w, &m, v, wk, kk);
#pragma unroll
        for (int b = 0; b < kBatch; b++) {
          if (kk[b] < 0) continue;
          uint16_t* dst = sa.ps.ptr<uint16_t>(s, sa.dataOff + ((size_t)t * K + kk[b]) * H * 2);
          if (ln.a) dev::st_na(reinterpret_cast<int4*>(dst + ln.chA), v[b][0]);
          if (ln.b) dev::st_na(reinterpret_cast<int4*>(dst + ln.chB), v[b][1]);
        }
      }
    }
  }
}

// The expert rank of each of this rank's picks, staged in shared memory (one
// coalesced pass; the reduction reads it per token).
__device__ void stage_routing(const CombineParams& p, int* sIds) {
  const int E = p.E, L = p.L, TK = p.T * p.K;
  for (int i = threadIdx.x; i < TK; i += blockDim.x) {
    long long id = load_topk(p.topk, p.topk64, i);
    sIds[i] = (id >= 0 && id < E) ? (int)(id / L) : -1;  // destination rank, -1 masked
  }
}

// sG[d]: the block count of expert rank d's send (its unit -> block map).
__device__ void reduce_tokens(const CombineParams& p, const int* sIds, const int* sG, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const int M = p.M, K = p.K, H = p.H, R = p.R, me = p.rank;
  const int C = (H + kChunk - 1) / kChunk;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const uint16_t* data = reinterpret_cast<const uint16_t*>(sa.ps.local + sa.dataOff);
  const int vb = vblock();
  for (int u = vb * nw + warp; u < p.T * C; u += gridDim.x * nw) {
    int t = u / C, c = u - t * C;
    int dest = lane < K ? sIds[t * K + lane] : -1;
    bool valid = dest >= 0;
    unsigned kmask;
    float w = 0.f;
    const bool firstOfRank = first_lane_of_rank(dest);
    if (p.reduce) {
      kmask = __ballot_sync(0xffffffffu, firstOfRank);
    } else {
      kmask = __ballot_sync(0xffffffffu, valid);
      if (valid) w = __ldg(p.weights + t * K + lane);
    }
    // Wait, per expert rank of the token, for the block there that sent
    // chunk c of it (its unit (me, t, c)): chunks whose senders are done are
    // reduced while later blocks are still sending.
    bool ok = true;
    if (firstOfRank && !rm_remote(sa, dest)) {  // another node: waited for whole (its DATA word)
      const int su = (t * C + c) * R + me, G = sG[dest];  // that rank's unit (me, t, c)
      const int bvb = (su % (G * kWarpsPerBlock)) / kWarpsPerBlock;
      ok = wait_eq(sa.ps.local_ptr<int>(sa.sigOff + blkDoneRel(R, dest, bvb)), epoch, sa, kWaitData, dest);
    }
    if (!__all_sync(0xffffffffu, ok)) continue;  // timed out (recorded)
    const Lane2 ln(c, lane, H, false);
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
      for (int b = 0; b < kBatch; b++) fma_chunk(wk[b], v[b], acc);  // wk = 1 for reduced rows
    }
    store_out_chunk(p, t, ln, acc);
  }
}

// Lines (kLines, reduced on the sender): a warp per (token, 448-channel
// chunk) loads the chunk's lines from each expert rank of the token (up to
// kBatch ranks in flight at once) and waits only until their flags show the
// epoch: a chunk is reduced as soon as its lines have landed, while the link
// still carries later tokens' lines (no release, no block-done flags). Same
// order of summation as reduce_tokens (expert ranks in top-k slot order), so
// both protocols give the same bits.
__device__ void reduce_lines(const CombineParams& p, const int* sIds, uint32_t epoch) {
  const SetArgs& sa = p.sa;
  const int M = p.M, K = p.K, H = p.H;
  const int C = combineLineChunks(H);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int vb = vblock();
  for (int u = vb * nw + warp; u < p.T * C; u += gridDim.x * nw) {
    const int t = u / C, c = u - t * C;
    const int dest = lane < K ? sIds[t * K + lane] : -1;
    const unsigned kmask = __ballot_sync(0xffffffffu, first_lane_of_rank(dest));
    const Lane2 ln(c, lane, H, true);
    const int lb = c * kCombineLinesPerChunk;
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; i++) acc[i] = 0.f;
    unsigned m = kmask;
    while (m) {
      int4 v[kBatch][2];
      unsigned need[kBatch];
      int d[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        const int k = m ? __ffs(m) - 1 : -1;
        if (m) m &= m - 1;
        d[b] = k < 0 ? -1 : __shfl_sync(0xffffffffu, dest, k);
        need[b] = 0;
        if (d[b] >= 0)
          need[b] = issue_lines(sa.ps.local_ptr<int4>(sa.lineOff + combineLineRel(M, sa.lineStride, d[b], t, 0)), lb,
                                lb + kCombineLinesPerChunk, v[b]);
      }
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        if (d[b] < 0) continue;
        const int4* slot = sa.ps.local_ptr<int4>(sa.lineOff + combineLineRel(M, sa.lineStride, d[b], t, 0));
        if (!wait_lines(sa, slot, lb, epoch, d[b], v[b], need[b], nullptr)) return;  // timed out (recorded)
        fma_chunk(1.f, v[b], acc);
      }
    }
    store_out_chunk(p, t, ln, acc);
  }
}

// kLines: the flagged-line protocol (reduced on the sender, NVLink peers,
// fused, split or hooked calls); otherwise the release protocol.
template <bool kLines>
__global__ void __launch_bounds__(kThreads, 1) combineKernel(CombineParams p) {
  const unsigned long long tEntry = dev::globaltimer_ns();  // EP_LL_PROFILE: before any parameter
  extern __shared__ __align__(16) char smem[];
  __shared__ int sFail;
  const SetArgs& sa = p.sa;
  const int R = p.R, me = p.rank;
  const int tid = threadIdx.x, nt = blockDim.x;
  const bool doSend = (p.phases & kPhaseSend) != 0, doRecv = (p.phases & kPhaseRecv) != 0;
  int* sG = reinterpret_cast<int*>(smem);    // [R] block count of each expert rank's send (recv)
  int* sSrcT = sG + R;                       // [R] tokens of each source (from the handle)
  int* sIds = sSrcT + R;                     // [T x K] destination rank of each pick
  const uint32_t sendEpoch = doSend ? epoch_read(sa, sa.set) + 1 : 0;
  const uint32_t recvEpoch = doRecv ? epoch_read(sa, 2 + sa.set) + 1 : 0;
  Prof prof(sa, tEntry);
  const int ackPre = doSend ? ack_prefetch(sa, R) : 0;
  int preFlat = -1;
  float preW = 0.f;
  if (doSend) load_unit<kLines>(p, first_unit(), &preFlat, &preW);
  if (tid == 0) sFail = 0;
  if (blockIdx.x == 0) publish_acks<!kLines>(sa, R);  // lines: NVLink peers only
  if (doSend)
    for (int d = tid; d < R; d += nt) sSrcT[d] = p.hSrcT[d];
  // The receive's routing (top-k ids -> expert ranks) is staged now, its loads
  // in flight with the acks': nothing it reads depends on the send.
  if (doRecv) stage_routing(p, sIds);

  if (doSend) {
    if (!wait_acks<!kLines>(sa, R, sendEpoch, ackPre)) sFail = 1;
    __syncthreads();
    prof.mark(1);
    // The receivers map a unit to its block with this block count: tagged, so
    // it needs no release (and it goes out before the data).
    if (!sFail && blockIdx.x == gridDim.x - 1)
      for (int d = tid; d < R; d += nt)
        st_relaxed_sys_u64(sa.ps.ptr<uint64_t>(d, sa.infoOff + (size_t)me * sa.infoStride),
                           tagged(sendEpoch, gridDim.x | (combine_mode(p, kLines) << kCombineModeShift)));
    if (!sFail) send_rows<kLines>(p, sSrcT, preFlat, preW, sendEpoch);
    prof.mark(2);
    if constexpr (!kLines) {
      // One release per destination, after the barrier: the barrier orders every
      // warp's stores before it, and release is cumulative (per-warp system
      // fences instead cost ~1 us each, serialised per SM).
      __syncthreads();
      // blkDone[me][vb] = epoch at every rank (also where this block sent nothing).
      const int vb = vblock();
      if (!sFail)
        for (int d = tid; d < R; d += nt) sa.ps.signal_set(d, sa.sigOff + blkDoneRel(R, me, vb), (int)sendEpoch);
      rm_ship_combine(p, sSrcT, sendEpoch);  // peers on other nodes: their mirrors go out (ll_remote.cuh)
    }
    prof.mark(3);
  }

  if (doRecv) {
    if constexpr (kLines) {
      // After this kernel's send, each warp goes on to its chunks as soon as
      // its own sends are issued (sIds and sFail were set before the send's
      // barrier); a receive-only launch orders the staged routing first.
      if (!doSend) __syncthreads();
    } else {
      __syncthreads();
      for (int d = tid; d < R; d += nt) {
        if (rm_remote(sa, d)) {  // another node: its rows landed once DATA reaches the epoch (ll_remote.cuh)
          if (!sFail && !rm_wait(sa, kRemoteData, d, recvEpoch, kWaitData)) sFail = 1;
          sG[d] = 0;  // no per-block waits for it (its blkDone flags are not shipped)
          continue;
        }
        uint32_t g = 0;
        const uint64_t* pw = sa.ps.local_ptr<uint64_t>(sa.infoOff + (size_t)d * sa.infoStride);
        if (!sFail && !wait_tag(pw, recvEpoch, sa, kWaitMeta, d, &g)) sFail = 1;
        const uint32_t mine = combine_mode(p, false), theirs = g >> kCombineModeShift;
        if (!sFail && theirs != mine) {
          // value: mine | theirs << 8, bit 16: a combine (core/async_error.cc).
          dev::record_error(sa.status, kFamilyLL, EP_DEVERR_LL_MODE_MISMATCH, me, d,
                            (long long)(mine | (theirs << 8) | (1u << 16)));
          sFail = 1;
        }
        sG[d] = (int)(g & ((1u << kCombineModeShift) - 1));
      }
      __syncthreads();
    }
    prof.mark(4);
    if (!sFail) {
      if constexpr (kLines) reduce_lines(p, sIds, recvEpoch);
      else reduce_tokens(p, sIds, sG, recvEpoch);
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

epResult_t launchCombine(const CombineParams& p, int blocks, cudaStream_t stream) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = sizeof(int) * (2 * (size_t)p.R + (size_t)p.M * p.K);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = (p.phases == (kPhaseSend | kPhaseRecv) && p.coop) ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  void* args[] = {const_cast<CombineParams*>(&p)};
  void* fn = p.lines ? (void*)combineKernel<true> : (void*)combineKernel<false>;
  CUDACHECK(cudaLaunchKernelExC(&cfg, fn, args));
  return epSuccess;
}

}  // namespace ll
}  // namespace ep
