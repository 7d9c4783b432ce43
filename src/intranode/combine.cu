/*************************************************************************
 * epcomm: HT intranode combine kernel.
 *
 * The reverse of dispatch over the same rings (same channels, same
 * counters): the rows this rank received from `src` in channel c go back,
 * in the same order, into ring (c, me -> src) in src's buffer; src sums, per
 * original token, the rows of every rank the token went to.
 *
 * One block per channel. Warps:
 *   0..R-1   senders, one per destination (so that a slow destination never
 *            stalls the others: the receivers consume in token order, and a
 *            shared in-order sender could deadlock against them). Each warp
 *            bulk-loads rows (and their top-k weights) into its own shared
 *            stages and bulk-stores whole slots into the destination's ring.
 *   R..      reducers: each takes every kRed-th token of the channel, waits
 *            for its slots (slot index per rank precomputed by notify),
 *            sums them in fp32 with the biases, writes BF16; sums weights.
 *            Ring heads advance to the lowest token all reducers finished.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <algorithm>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "core/api.h"
#include "core/checks.h"
#include "core/comm.h"
#include "intranode/ht_device.cuh"
#include "intranode/ht_direct.cuh"
#include "intranode/ht_direct.h"
#include "intranode/ht_handle.h"
#include "intranode/ht_state.h"
#include "internode/inter_api.h"

namespace ep {
namespace ht {
namespace {

constexpr int kRed = 8;              // reducer warps per block
constexpr int kWScratch = 160;       // bytes per stage for the 16-byte-aligned span of a weights row
constexpr int kPubTokens = 4;        // reducer progress (tokens) between two head publications
template <int kR>
constexpr int unrollFor() { return kR <= 4 ? 4 : 2; }  // 16-byte vectors per lane in flight per source (registers)

struct CombineParams {
  Buf b;
  epHtTune tune;
  int C;
  int T;
  int H;
  epHtSlotLayout sl;
  int cap;
  int S;
  const char* x;
  const float* weights;
  int K;
  const __nv_bfloat16* bias0;
  const __nv_bfloat16* bias1;
  epHtHandleDev h;
  __nv_bfloat16* out;
  float* outW;
  epDeviceStatus* status;
  unsigned long long timeoutNs;
  uint32_t* epochCtr;  // the combine call epochs on the device (CallEpoch; path handshake)
};

struct RedSmem {
  int* prog;      // [kRed] next token each reducer will take
  int* lock;
  int* pubTok;    // tokens < pubTok have been handed back (heads published)
};

__device__ __forceinline__ void send_dst(const CombineParams& p, int c, int dst, char* stages, uint64_t* bars,
                                         Spin& spin, int* abortFlag) {
  const int lane = lane_id();
  const int S = p.S, slotBytes = p.sl.slotBytes, stageBytes = slotBytes + kWScratch;
  const int n = p.h.recvChanCount[dst * EP_HT_MAX_CHANNELS + c];
  const int rowBase = p.h.rankPrefix[dst] + p.h.recvChanPrefix[dst * EP_HT_MAX_CHANNELS + c];
  uint32_t tail = (uint32_t)*p.b.sendPos(c, dst);
  uint32_t pub = tail;
  const int* headPtr = p.b.headIn(c, dst);
  uint32_t headC = (uint32_t)__shfl_sync(0xffffffffu, lane == 0 ? ld_acquire_sys(headPtr) : 0, 0);
  char* ring = p.b.ringAt(dst, c);
  int* tailRemote = p.b.tailAt(dst, c);
  const int wBytes = p.K * 4;
  auto issue_load = [&](int k) {  // lane 0 only
    const int s = k % S;
    char* stg = stages + (size_t)s * stageBytes;
    const size_t row = (size_t)rowBase + k;
    uint32_t bytes = p.sl.xBytes;
    size_t wStart = 0;
    uint32_t wLen = 0;
    if (p.weights) {
      const size_t a = row * wBytes;
      wStart = a & ~(size_t)15;
      wLen = (uint32_t)(((a + wBytes + 15) & ~(size_t)15) - wStart);
      bytes += wLen;
    }
    mbar_arrive_expect_tx(&bars[s], bytes);
    bulk_load(stg, p.x + row * p.sl.xBytes, p.sl.xBytes, &bars[s]);
    if (p.weights) bulk_load(stg + slotBytes, reinterpret_cast<const char*>(p.weights) + wStart, wLen, &bars[s]);
  };
  if (lane == 0)
    for (int k = 0; k < n && k < S; k++) issue_load(k);
  bool aborted = false;
  const Prof prof{p.tune.prof};
  const long long tTotal = prof.now();
  for (int k = 0; k < n; k++) {
    const int s = k % S;
    char* stg = stages + (size_t)s * stageBytes;
    long long t0 = prof.now();
    if (!warp_wait_mbar(&bars[s], (k / S) & 1, spin, abortFlag, p.status, c)) {
      aborted = true;
      break;
    }
    prof.add(P_CS_LOAD, t0);
    t0 = prof.now();
    if (p.weights) {
      const int off = (int)(((size_t)(rowBase + k) * wBytes) & 15) / 4;
      if (lane < p.K) reinterpret_cast<float*>(stg + p.sl.wOff)[lane] = reinterpret_cast<const float*>(stg + slotBytes)[off + lane];
      fence_proxy_async();
      __syncwarp();
    }
    if ((int)(tail - headC) >= p.cap) {
      headC = (uint32_t)__shfl_sync(0xffffffffu, lane == 0 ? ld_acquire_sys(headPtr) : 0, 0);
      if ((int)(tail - headC) >= p.cap) {
        if (lane == 0) {
          bulk_wait<0>();
          fence_proxy_async_global();
        }
        __syncwarp();
        if (lane == 0 && tail != pub) publish_tail(p.tune, tailRemote, (int)tail);
        pub = tail;
        while ((int)(tail - headC) >= p.cap) {
          if (warp_tick(spin, abortFlag, p.status, c, dst, kWaitRingSpace)) {
            aborted = true;
            break;
          }
          headC = (uint32_t)__shfl_sync(0xffffffffu, lane == 0 ? ld_acquire_sys(headPtr) : 0, 0);
        }
        if (aborted) break;
      }
    }
    prof.add(P_CS_SPACE, t0);
    t0 = prof.now();
    if (lane == 0) {
      bulk_store(ring + (size_t)(tail % (uint32_t)p.cap) * slotBytes, stg, slotBytes);
      bulk_commit();
    }
    tail++;
    if (lane == 0) {
      bulk_wait_read<0>();
      if (k + S < n) issue_load(k + S);
    }
    prof.add(P_CS_READ, t0);
    t0 = prof.now();
    const int lag = send_lag(p.tune);
    if ((k % p.tune.cpubEvery) == p.tune.cpubEvery - 1 && k >= lag) {
      if (lane == 0) {
        bulk_wait_lag(p.tune);
        fence_proxy_async_global();
        publish_tail(p.tune, tailRemote, (int)(tail - lag));
      }
      pub = tail - lag;
    }
    prof.add(P_CS_LAG, t0);
    __syncwarp();
  }
  prof.add(P_CS_TOTAL, tTotal);
  if (lane == 0) {
    bulk_wait<0>();
    fence_proxy_async_global();
  }
  __syncwarp();
  if (!aborted && lane == 0) {
    if (tail != pub) publish_tail(p.tune, tailRemote, (int)tail);
    *p.b.sendPos(c, dst) = (int)tail;
  }
}

// Hands slots back to the senders: heads move to the first token some
// reducer has not finished. One publisher at a time (try-lock), so heads
// never go backwards. Lane 0 of a reducer warp.
__device__ __forceinline__ void try_publish(const CombineParams& p, const RedSmem& rs, int c, int t0, int t1,
                                            const uint32_t* base, bool force) {
  if (atomicCAS(rs.lock, 0, 1) != 0) return;
  __threadfence_block();
  int m = t1;
  for (int w = 0; w < kRed; w++) m = min(m, atomicAdd(&rs.prog[w], 0));
  const int pubTok = atomicAdd(rs.pubTok, 0);
  if (m > pubTok && (force || m - pubTok >= kPubTokens || m == t1)) {
    const int R = p.b.R();
    for (int r = 0; r < R; r++) {
      if (r == p.b.me()) continue;  // own rows are read from x directly: no ring
      const int slots = m < t1 ? p.h.slotPrefix[(size_t)m * R + r] : p.h.sendChanCount[r * EP_HT_MAX_CHANNELS + c];
      publish_head(p.b.headAt(r, c), (int)(base[r] + slots));
    }
    atomicExch(rs.pubTok, m);
  }
  __threadfence_block();
  atomicExch(rs.lock, 0);
}

template <int kR>
__device__ __forceinline__ void reduce(const CombineParams& p, const RedSmem& rs, int c, int wr, Spin& spin,
                                       int* abortFlag) {
  const int lane = lane_id();
  const int R = p.b.R();
  int t0, t1;
  channel_range(p.T, p.C, c, &t0, &t1);
  uint32_t base[kR];
#pragma unroll
  for (int r = 0; r < kR; r++) base[r] = r < R ? (uint32_t)*p.b.recvPos(c, r) : 0;
  const uint32_t myBase = lane < R ? (uint32_t)*p.b.recvPos(c, lane) : 0;
  const int* tailPtr = lane < R ? p.b.tailIn(c, lane) : nullptr;
  const char* ring = lane < R ? p.b.ringIn(c, lane) : nullptr;
  uint32_t tailSeen = myBase;
  const int me = p.b.me();
  const int selfRow0 = p.h.rankPrefix[me] + p.h.recvChanPrefix[me * EP_HT_MAX_CHANNELS + c];
  const int nVec = p.H / 8;
  bool aborted = false;
  const Prof prof{wr == 0 ? p.tune.prof : nullptr};
  const long long tTotal = prof.now();
  for (int t = t0 + wr; t < t1; t += kRed) {
    long long tw = prof.now();
    const bool in = lane < R && p.h.isTokenInRank[(size_t)t * R + lane];
    const int k = in ? p.h.slotPrefix[(size_t)t * R + lane] : 0;
    const uint32_t abs = myBase + (uint32_t)k;
    const bool viaRing = in && lane != me;
    const unsigned m = __ballot_sync(0xffffffffu, in);
    unsigned need = __ballot_sync(0xffffffffu, viaRing && (int)(tailSeen - abs) <= 0);
    while (need) {
      if ((need >> lane) & 1) tailSeen = (uint32_t)ld_acquire_sys(tailPtr);
      need = __ballot_sync(0xffffffffu, viaRing && (int)(tailSeen - abs) <= 0);
      if (!need) break;
      if ((spin.n & 1023u) == 1023u && lane == 0) try_publish(p, rs, c, t0, t1, base, true);
      if (warp_tick(spin, abortFlag, p.status, c, __ffs(need) - 1, kWaitRingData)) {
        aborted = true;
        break;
      }
    }
    if (aborted) break;
    __syncwarp();  // lanes read rows whose tails other lanes acquired
    prof.add(P_CR_WAIT, tw);
    tw = prof.now();
    // Rows from other ranks sit in our rings; our own row is read from x in place.
    const char* mySlot = !in ? nullptr
                         : viaRing ? ring + (size_t)(abs % (uint32_t)p.cap) * p.sl.slotBytes
                                   : p.x + (size_t)(selfRow0 + k) * p.sl.xBytes;
    const int4* src[kR];
#pragma unroll
    for (int r = 0; r < kR; r++)
      src[r] = reinterpret_cast<const int4*>(__shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(mySlot), r < R ? r : 0));
    const int selfK = __shfl_sync(0xffffffffu, k, me < R ? me : 0);
    const int4* b0 = p.bias0 ? reinterpret_cast<const int4*>(p.bias0 + (size_t)t * p.H) : nullptr;
    const int4* b1 = p.bias1 ? reinterpret_cast<const int4*>(p.bias1 + (size_t)t * p.H) : nullptr;
    int4* o = reinterpret_cast<int4*>(p.out + (size_t)t * p.H);
    for (int v0 = lane; v0 < nVec; v0 += 32 * unrollFor<kR>()) {
      int4 vals[unrollFor<kR>()][kR];
      int4 bv[unrollFor<kR>()][2];
#pragma unroll
      for (int u = 0; u < unrollFor<kR>(); u++) {
        const int v = v0 + u * 32;
        if (v < nVec) {
#pragma unroll
          for (int r = 0; r < kR; r++)
            if ((m >> r) & 1) vals[u][r] = ld_na(src[r] + v);
          if (b0) bv[u][0] = ld_nc_na(b0 + v);
          if (b1) bv[u][1] = ld_nc_na(b1 + v);
        }
      }
#pragma unroll
      for (int u = 0; u < unrollFor<kR>(); u++) {
        const int v = v0 + u * 32;
        if (v < nVec) st_na(o + v, sum_chunk_bf16<kR>(vals[u], m, bv[u], b0 != nullptr, b1 != nullptr));
      }
    }
    if (p.outW && lane < p.K) {
      float w = 0.f;
#pragma unroll
      for (int r = 0; r < kR; r++) {
        if (!((m >> r) & 1)) continue;
        if (r == me) {
          w += p.weights[(size_t)(selfRow0 + selfK) * p.K + lane];
        } else {
          w += reinterpret_cast<const float*>(reinterpret_cast<const char*>(src[r]) + p.sl.wOff)[lane];
        }
      }
      p.outW[(size_t)t * p.K + lane] = w;
    }
    prof.add(P_CR_SUM, tw);
    __syncwarp();
    if (lane == 0) {
      __threadfence_block();
      atomicExch(&rs.prog[wr], t + kRed);
      try_publish(p, rs, c, t0, t1, base, false);
    }
  }
  prof.add(P_CR_TOTAL, tTotal);
  if (lane == 0) atomicExch(&rs.prog[wr], t1);
  // All reducers done: final heads (exact), and our positions for the next call.
  // A warp that gave up still arrives here (its peers give up too, through
  // abortFlag), so the barrier never waits for a warp that left.
  named_barrier(1, kRed * 32);
  if (wr == 0 && lane < R && lane != me && !*reinterpret_cast<volatile int*>(abortFlag)) {
    const uint32_t fin = myBase + (uint32_t)p.h.sendChanCount[lane * EP_HT_MAX_CHANNELS + c];
    publish_head(p.b.headAt(lane, c), (int)fin);
    *p.b.recvPos(c, lane) = (int)fin;
  }
}

template <int kR>
__global__ void __launch_bounds__((kR + kRed) * 32, 1) combine_kernel(CombineParams p) {
  const CallEpoch epoch(p.epochCtr);  // first: every return path advances it
  extern __shared__ __align__(128) char smem[];
  const int c = blockIdx.x;
  const int warp = warp_id();
  const int R = p.b.R();
  const int stageBytes = p.sl.slotBytes + kWScratch;
  char* stages = smem;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + (size_t)R * p.S * stageBytes);
  RedSmem rs;
  rs.prog = reinterpret_cast<int*>(bars + R * p.S);
  rs.lock = rs.prog + kRed;
  rs.pubTok = rs.lock + 1;
  int* abortFlag = rs.pubTok + 1;
  int t0, t1;
  channel_range(p.T, p.C, c, &t0, &t1);
  if (threadIdx.x == 0) {
    for (int i = 0; i < R * p.S; i++) mbar_init(&bars[i], 1);
    for (int w = 0; w < kRed; w++) rs.prog[w] = t0 + w;
    *rs.lock = 0;
    *rs.pubTok = t0;
    *abortFlag = 0;
    fence_mbar_init();
  }
  __syncthreads();
  // Every rank must be on the ring path for this call (see ht_direct.cuh).
  if (!ring_path_handshake(p.b, EP_HT_KIND_COMBINE, epoch.e, abortFlag, p.status, p.timeoutNs)) return;
  Spin spin(p.timeoutNs);
  if (warp < kR) {
    if (warp < R) {
      const int dst = (p.b.me() + c + warp) % R;
      if (dst != p.b.me())  // own rows are read in place by the reducers
        send_dst(p, c, dst, stages + (size_t)warp * p.S * stageBytes, bars + warp * p.S, spin, abortFlag);
    }
  } else {
    reduce<kR>(p, rs, c, warp - kR, spin, abortFlag);
  }
}

template <int kR>
epResult_t launchCombine(epHtState* st, const CombineParams& p, size_t smem, cudaStream_t stream) {
  EPCHECK(epHtAllowLargeSmem(st, EP_HT_ATTR_COMBINE << (kR == 2 ? 0 : kR == 4 ? 1 : 2), combine_kernel<kR>));
  combine_kernel<kR><<<p.C, (kR + kRed) * 32, smem, stream>>>(p);
  CUDACHECK_LAUNCH();
  return epSuccess;
}

}  // namespace
}  // namespace ht
}  // namespace ep

using namespace ep::ht;

EP_API epResult_t epCombine(epComm_t comm, const epCombineInput_t* in, const epCombineOutput_t* out,
                            epHtHandle_t handle, cudaStream_t stream) {
  EPCHECK(epCommCheck(comm, "epCombine"));
  EP_COMM_SCOPE(comm);
  if (epInterWanted(comm)) {
    EPCHECK(epHtCheckNotCapturing(comm, stream, "epCombine"));  // internode: not yet verified under graph replay
    return epInterCombine(comm, in, out, handle, stream);
  }
  EPCHECK(epHtCheckIntranode(comm, "epCombine"));
  EPCHECK(epHtHandleCheck(comm, handle, "epCombine"));
  EP_DESC_CHECK(in, epCombineInput_t, EP_COMBINE_INPUT_INITIALIZER, "epCombine");
  EP_DESC_CHECK(out, epCombineOutput_t, EP_COMBINE_OUTPUT_INITIALIZER, "epCombine");
  EP_USAGE_CHECK(handle->notified, "epCombine: the handle has no layout: dispatch with it first");
  EP_ARG_CHECK(in->hidden > 0 && in->hidden % 8 == 0, "epCombine: hidden %d must be a positive multiple of 8",
               in->hidden);
  const int T = handle->numTokens;
  EP_ARG_CHECK(T == 0 || out->out != nullptr, "epCombine: out is NULL");
  EP_ARG_CHECK(in->x != nullptr || handle->hostNumRecv == 0 || T == 0,
               "epCombine: x is NULL (allowed only when this rank received no rows)");
  auto a16 = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15) == 0; };
  EP_ARG_CHECK(a16(in->x) && a16(out->out) && a16(in->bias0) && a16(in->bias1) && a16(in->topkWeights),
               "epCombine: x, out, biases and topkWeights must be 16-byte aligned");
  EP_ARG_CHECK(in->numSms >= 0, "epCombine: numSms %d < 0", in->numSms);
  const int C = handle->numChannels;
  EP_USAGE_CHECK(in->numSms == 0 || in->numSms >= C,
                 "epCombine: numSms %d is below the %d channels of the handle's layout", in->numSms, C);
  epHtState* st = comm->ht;
  EP_USAGE_CHECK(st != nullptr, "epCombine: no HT state (dispatch first)");
  // K is the notify's numTopk (combine returns what dispatch delivered).
  int K = 0;
  if (in->topkWeights != nullptr || out->outTopkWeights != nullptr) {
    EP_ARG_CHECK(in->topkWeights != nullptr && out->outTopkWeights != nullptr,
                 "epCombine: topkWeights and outTopkWeights go together");
    K = handle->numTopk;
    EP_USAGE_CHECK(K >= 1, "epCombine: weights given but the handle's dispatch had no top-k");
  }
  // Registered x (and weights): pull the rows from the peers (ht_direct.h).
  epHtDirectRec rec;
  st->lastDirect[EP_HT_KIND_COMBINE] = 0;
  if (epHtCombineDirectRecord(comm, in, K, handle->hostNumRecv, &rec)) {
    st->lastDirect[EP_HT_KIND_COMBINE] = 1;
    return epHtLaunchCombineDirect(comm, st, in, out, handle, K, rec, stream);
  }
  epHtSlotLayout sl = epHtCombineSlot(in->hidden, K, K > 0);
  const int cap = (int)(st->lay.ringBytes / sl.slotBytes);
  if (cap < EP_HT_MIN_RING_SLOTS) {
    EP_WARN("epCombine: ring of %lld bytes holds %d slots of %d bytes, fewer than %d. HINT: raise nvlBufferBytes "
            "(epGetBufferSizeHint)",
            st->lay.ringBytes, cap, sl.slotBytes, EP_HT_MIN_RING_SLOTS);
    return epInvalidArgument;
  }
  const int R = comm->nranks;
  const size_t tail = (size_t)R * 3 * 8 + (kRed + 3) * 4 + 64;
  const size_t budget = (size_t)st->smemOptin - tail - 1024;
  int S = (int)std::min<size_t>(3, budget / ((size_t)R * (sl.slotBytes + kWScratch)));
  if (S < 1) {
    EP_WARN("epCombine: hidden %d too large for the combine stages (%d ranks)", in->hidden, R);
    return epInvalidArgument;
  }
  CombineParams p;
  p.b.lay = st->lay;
  p.b.peers = st->peers;
  p.tune = epHtTuneGet(st);
  p.C = C;
  p.T = T;
  p.H = in->hidden;
  p.sl = sl;
  p.cap = cap;
  p.S = S;
  p.x = static_cast<const char*>(in->x);
  p.weights = K > 0 ? in->topkWeights : nullptr;
  p.K = K;
  p.bias0 = static_cast<const __nv_bfloat16*>(in->bias0);
  p.bias1 = static_cast<const __nv_bfloat16*>(in->bias1);
  p.h = handle->dev;
  p.out = static_cast<__nv_bfloat16*>(out->out);
  p.outW = K > 0 ? out->outTopkWeights : nullptr;
  p.status = comm->devStatusDev;
  p.timeoutNs = epCommWaitTimeoutNs(comm);
  p.epochCtr = epHtEpochCounters(st, EP_HT_KIND_COMBINE);
  const size_t smem = (size_t)R * S * (sl.slotBytes + kWScratch) + (size_t)R * S * 8 + (kRed + 3) * 4 + 16;
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  epResult_t res = R <= 2 ? launchCombine<2>(st, p, smem, stream) : R <= 4 ? launchCombine<4>(st, p, smem, stream)
                                                          : launchCombine<8>(st, p, smem, stream);
  if (res == epSuccess) epHtProfAfter(comm, st, 1, C, stream);
  return res;
}
