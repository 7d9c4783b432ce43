/*************************************************************************
 * epcomm: HT intranode dispatch kernel.
 *
 * One block per channel; a channel owns a contiguous slice of this rank's
 * tokens and one ring per peer in every peer's buffer. Warps:
 *   0             issuer: bulk-stores each staged slot into the rings of the
 *                 token's destinations (one bulk store per destination; the
 *                 row is read from HBM once), publishes tails (release).
 *   1..4          producers (2 by default): bulk-load a token's row into a shared-memory
 *                 stage and write its metadata (scales, top-k ids, weights,
 *                 source index) next to it, so a slot travels as one copy.
 *   next 1-2      receivers: for the rings (c, src -> me), bulk-loads arrived
 *                 slots into shared memory, bulk-stores the row to recvX at
 *                 rankPrefix[src] + channel offset + k, writes the metadata
 *                 (top-k ids mapped to local experts), publishes heads.
 * Few threads move many bytes: each stage is one slot (~14 KB for a 7168
 * BF16 row) and several are in flight per SM in each direction.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <algorithm>

#include <cuda_runtime.h>

#include "core/api.h"
#include "core/checks.h"
#include "core/comm.h"
#include "intranode/ht_args.h"
#include "intranode/ht_device.cuh"
#include "intranode/ht_direct.cuh"
#include "intranode/ht_direct.h"
#include "intranode/ht_handle.h"
#include "intranode/ht_state.h"
#include "internode/inter_api.h"

namespace ep {
namespace ht {
namespace {

constexpr int kMaxProd = 4;  // producer warps compiled in; tune.nProd of them work
constexpr int kMaxRecv = 2;  // receiver warps compiled in; tune.nRecv of them work (sources split by rank)
constexpr int kDispatchThreads = (kMaxProd + 1 + kMaxRecv) * 32;
constexpr int kRecvPubEvery = 4;  // consumed slots between two head publications

struct DispatchParams {
  Buf b;
  epHtTune tune;
  int C;
  int T;
  epHtSlotLayout sl;
  int cap;
  int Ss, Sr;  // sender stages / stages per receiver warp
  int nRecv;   // receiver warps (1..kMaxRecv)
  // inputs
  const char* x;
  const char* scales;
  long long sTok, sCol;
  const void* topk;
  int idx64;
  const float* weights;
  int L;  // local experts (id mapping)
  epHtHandleDev h;
  // outputs
  char* recvX;
  int* recvScales;
  int* recvTopkIdx;
  float* recvTopkWeights;
  int* recvSrcIdx;
  int* outCountPerExpert;
  int* outNumRecv;
  int capacity;
  epDeviceStatus* status;
  unsigned long long timeoutNs;
  uint32_t* epochCtr;  // the dispatch call epochs on the device (CallEpoch; path handshake)
};

__device__ __forceinline__ void produce(const DispatchParams& p, const SendSmem& sm, int c, int t0, int n, int w,
                                        Spin& spin, int* abortFlag) {
  const int lane = lane_id();
  const int R = p.b.R();
  const Prof prof{w == 0 ? p.tune.prof : nullptr};
  const long long tTotal = prof.now();
  for (int i = w; i < n; i += p.tune.nProd) {
    long long tp = prof.now();
    if (!producer_wait_empty(sm, i, spin, abortFlag, p.status, c)) return;
    prof.add(P_P_EMPTY, tp);
    tp = prof.now();
    const int t = t0 + i;
    char* stg = sm.stages + (size_t)(i % sm.S) * sm.slotBytes;
    if (lane == 0) {
      mbar_arrive_expect_tx(&sm.full[i % sm.S], p.sl.xBytes);
      bulk_load(stg, p.x + (size_t)t * p.sl.xBytes, p.sl.xBytes, &sm.full[i % sm.S]);
    }
    const unsigned in = lane < R ? p.h.isTokenInRank[(size_t)t * R + lane] : 0;
    const int mask = (int)__ballot_sync(0xffffffffu, in != 0);
    for (int j = lane; j < p.sl.scaleCols; j += 32)
      reinterpret_cast<int*>(stg + p.sl.scaleOff)[j] =
          reinterpret_cast<const int*>(p.scales)[(size_t)t * p.sTok + (size_t)j * p.sCol];
    if (p.topk && lane < p.sl.K) {
      long long id = p.idx64 ? reinterpret_cast<const long long*>(p.topk)[(size_t)t * p.sl.K + lane]
                             : (long long)reinterpret_cast<const int*>(p.topk)[(size_t)t * p.sl.K + lane];
      reinterpret_cast<int*>(stg + p.sl.idxOff)[lane] = (id >= 0 && id < (long long)p.L * R) ? (int)id : -1;
    }
    if (p.weights && lane < p.sl.K)
      reinterpret_cast<float*>(stg + p.sl.wOff)[lane] = p.weights[(size_t)t * p.sl.K + lane];
    if (lane == 0) *reinterpret_cast<int*>(stg + p.sl.srcOff) = t;
    producer_commit(sm, i, mask);
    prof.add(P_P_META, tp);
  }
  prof.add(P_P_TOTAL, tTotal);
}

// Writes one received slot (staged in shared memory) to the caller's outputs:
// the row by a bulk store (lane 0; the caller commits the group), the
// metadata by the lanes, with top-k ids mapped to local experts.
// Lane 0 only issues the bulk copy: it never has generic global stores in
// flight, so its proxy fences and releases do not wait for them.
__device__ __forceinline__ void deliver_row(const DispatchParams& p, int row, const char* sm) {
  const int lane = lane_id();
  const int lo = p.b.me() * p.L;
  if (lane == 0) bulk_store(p.recvX + (size_t)row * p.sl.xBytes, sm, p.sl.xBytes);
  if (p.recvScales && lane > 0)
    for (int j = lane - 1; j < p.sl.scaleCols; j += 31)
      p.recvScales[(size_t)row * p.sl.scaleCols + j] = reinterpret_cast<const int*>(sm + p.sl.scaleOff)[j];
  const int k = lane == 0 ? 31 : lane - 1;  // lane 0 takes slot 31 only when K == 32
  if (k < p.sl.K) {
    int local = -1;
    if (p.topk) {
      const int g = reinterpret_cast<const int*>(sm + p.sl.idxOff)[k];
      local = (g >= lo && g < lo + p.L) ? g - lo : -1;
      if (p.recvTopkIdx) p.recvTopkIdx[(size_t)row * p.sl.K + k] = local;
    }
    if (p.weights && p.recvTopkWeights) {
      const float wv = reinterpret_cast<const float*>(sm + p.sl.wOff)[k];
      p.recvTopkWeights[(size_t)row * p.sl.K + k] = (p.topk && local < 0) ? 0.f : wv;
    }
  }
  if (lane == 31 && p.recvSrcIdx) p.recvSrcIdx[row] = *reinterpret_cast<const int*>(sm + p.sl.srcOff);
}

// Our own tokens skip the rings: the issuer writes them straight to recvX.
struct SelfDeliver {
  const DispatchParams* p;
  int row;  // next row of ours in recvX
  bool overflow;
  __device__ __forceinline__ void operator()(const char* stage) {
    if (row < p->capacity) deliver_row(*p, row, stage);
    else overflow = true;
    row++;
    fence_proxy_async();  // our generic reads of the stage precede the next bulk load into it
    __syncwarp();
  }
};

template <int kR>
__device__ __forceinline__ void receive(const DispatchParams& p, int c, int rIdx, char* stages, uint64_t* full,
                                        int* infoS, int* infoK, Spin& spin, int* abortFlag) {
  const int lane = lane_id();
  const int R = p.b.R(), me = p.b.me();
  const int slotBytes = p.sl.slotBytes;
  // Lane s < R owns ring (c, s -> me).
  int n = 0, k = 0, cons = 0, outBase = 0;
  uint32_t base = 0, tailSeen = 0, pub = 0;
  const int* tailPtr = nullptr;
  int* headRemote = nullptr;
  const char* ring = nullptr;
  // Our own rows were delivered by the issuer; receiver warp rIdx takes the
  // sources s with s % nRecv == rIdx.
  if (lane < R && lane != me && lane % p.nRecv == rIdx) {
    n = p.h.recvChanCount[lane * EP_HT_MAX_CHANNELS + c];
    outBase = p.h.rankPrefix[lane] + p.h.recvChanPrefix[lane * EP_HT_MAX_CHANNELS + c];
    base = (uint32_t)*p.b.recvPos(c, lane);
    pub = base;
    tailSeen = base;
    tailPtr = p.b.tailIn(c, lane);
    headRemote = p.b.headAt(lane, c);
    ring = p.b.ringIn(c, lane);
  }
  int total = n;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffffu, total, o);
  const int Sr = p.Sr;
  int issued = 0, done = 0, rr = 0;
  bool aborted = false, overflow = false;
  const Prof prof{p.tune.prof};
  const long long tTotal = prof.now();
  while (done < total) {
    long long t0 = prof.now();
    // Issue loads of arrived slots, round-robin over sources.
    while (issued - done < Sr - 1) {
      bool has = lane < R && k < n && (int)(tailSeen - (base + k)) > 0;
      unsigned av = __ballot_sync(0xffffffffu, has);
      if (!av) {
        if (lane < R && k < n) tailSeen = (uint32_t)ld_acquire_sys(tailPtr);
        has = lane < R && k < n && (int)(tailSeen - (base + k)) > 0;
        av = __ballot_sync(0xffffffffu, has);
        if (!av) break;
        // New slots were published to us through the generic proxy (the
        // acquire above); order our bulk loads of them after it. Once per
        // refresh, not per slot: the fence is not free.
        __syncwarp();
        if (lane == 0) fence_proxy_async_global();
      }
      const unsigned hi = av & ~((1u << rr) - 1);
      const int s = __ffs(hi ? hi : av) - 1;
      rr = s + 1 < R ? s + 1 : 0;
      const int kk = __shfl_sync(0xffffffffu, k, s);
      const uint32_t bb = __shfl_sync(0xffffffffu, base, s);
      const char* rs = reinterpret_cast<const char*>(__shfl_sync(0xffffffffu, reinterpret_cast<unsigned long long>(ring), s));
      const int stage = issued % Sr;
      if (lane == 0) {
        const long long tr = prof.now();
        bulk_wait_read<1>();        // the stage's previous bulk store no longer reads it
        prof.add(P_R_READ, tr);
        mbar_arrive_expect_tx(&full[stage], slotBytes);
        bulk_load(stages + (size_t)stage * slotBytes, rs + (size_t)((bb + kk) % (uint32_t)p.cap) * slotBytes,
                  slotBytes, &full[stage]);
        infoS[stage] = s;
        infoK[stage] = kk;
      }
      if (lane == s) k++;
      issued++;
    }
    if (issued == done) {
      // Nothing arrived: hand consumed slots back first (the sender may be
      // waiting for them), then wait for a tail to move.
      if (lane < R && base + cons != pub) {
        publish_head(headRemote, (int)(base + cons));
        pub = base + cons;
      }
      unsigned waiting = __ballot_sync(0xffffffffu, lane < R && k < n);
      if (warp_tick(spin, abortFlag, p.status, c, __ffs(waiting) - 1, kWaitRingData)) {
        aborted = true;
        break;
      }
      prof.add(P_R_IDLE, t0);
      prof.cnt(P_N_IDLE);
      continue;
    }
    t0 = prof.now();
    // Complete the oldest load.
    const int stage = done % Sr;
    if (!warp_wait_mbar(&full[stage], (done / Sr) & 1, spin, abortFlag, p.status, c)) {
      aborted = true;
      break;
    }
    prof.add(P_R_FULL, t0);
    prof.cnt(P_N_SLOTS);
    t0 = prof.now();
    const int s = infoS[stage], kk = infoK[stage];
    const int row = __shfl_sync(0xffffffffu, outBase, s) + kk;
    const char* sm = stages + (size_t)stage * slotBytes;
    if (row < p.capacity) deliver_row(p, row, sm);
    else overflow = true;
    prof.add(P_R_DELIVER, t0);
    if (lane == 0) bulk_commit();
    fence_proxy_async();  // our generic reads of the stage precede the next bulk load into it
    __syncwarp();
    if (lane == s) {
      cons++;
      if ((int)(base + cons - pub) >= kRecvPubEvery) {
        publish_head(headRemote, (int)(base + cons));
        pub = base + cons;
      }
    }
    done++;
  }
  prof.add(P_R_TOTAL, tTotal);
  if (lane == 0) bulk_wait<0>();
  __syncwarp();
  if (!aborted && lane < R && lane != me) {
    if (base + cons != pub) publish_head(headRemote, (int)(base + cons));
    *p.b.recvPos(c, lane) = (int)(base + cons);
  }
  if (__any_sync(0xffffffffu, overflow) && lane == 0)
    record_error(p.status, kFamilyHt, EP_DEVERR_CAPACITY_OVERFLOW, p.capacity, 0, *p.h.numRecv);
}

template <int kR>
__global__ void __launch_bounds__(kDispatchThreads, 1) dispatch_kernel(DispatchParams p) {
  const CallEpoch epoch(p.epochCtr);  // first: every return path advances it
  extern __shared__ __align__(128) char smem[];
  const int c = blockIdx.x;
  const int warp = warp_id();
  const int slotBytes = p.sl.slotBytes;
  SendSmem sm;
  sm.S = p.Ss;
  sm.slotBytes = slotBytes;
  sm.stages = smem;
  const int nRs = p.nRecv * p.Sr;  // receiver stages, all receiver warps
  char* rstages = smem + (size_t)p.Ss * slotBytes;
  char* tailp = rstages + (size_t)nRs * slotBytes;
  sm.full = reinterpret_cast<uint64_t*>(tailp);
  sm.empty = sm.full + p.Ss;
  uint64_t* rfull = sm.empty + p.Ss;
  sm.mask = reinterpret_cast<int*>(rfull + nRs);
  sm.hist = sm.mask + p.Ss;
  int* infoS = sm.hist + kSendHist * EP_HT_MAX_NVL_RANKS;
  int* infoK = infoS + nRs;
  int* abortFlag = infoK + nRs;
  if (threadIdx.x == 0) {
    send_init(sm);
    for (int s = 0; s < nRs; s++) mbar_init(&rfull[s], 1);
    *abortFlag = 0;
    fence_mbar_init();
  }
  __syncthreads();
  // Every rank must be on the ring path for this call (see ht_direct.cuh).
  if (!ring_path_handshake(p.b, EP_HT_KIND_DISPATCH, epoch.e, abortFlag, p.status, p.timeoutNs)) return;
  if (c == 0 && threadIdx.x < 32) {
    // Device copies of the counts for the caller (mode b has no host copy).
    if (p.outNumRecv && threadIdx.x == 0) *p.outNumRecv = *p.h.numRecv;
    if (p.outCountPerExpert)
      for (int l = threadIdx.x; l < p.L; l += 32) p.outCountPerExpert[l] = p.h.expertAligned[l];
  }
  Spin spin(p.timeoutNs);
  int t0, t1;
  channel_range(p.T, p.C, c, &t0, &t1);
  if (warp == 0) {
    const int me = p.b.me();
    SelfDeliver self{&p, p.h.rankPrefix[me] + p.h.recvChanPrefix[me * EP_HT_MAX_CHANNELS + c], false};
    send_issue<kR>(p.b, p.tune, c, t1 - t0, sm, p.cap, self, spin, abortFlag, p.status);
    if (__any_sync(0xffffffffu, self.overflow) && lane_id() == 0)
      record_error(p.status, kFamilyHt, EP_DEVERR_CAPACITY_OVERFLOW, p.capacity, 0, *p.h.numRecv);
  } else if (warp <= kMaxProd) {
    if (warp <= p.tune.nProd) produce(p, sm, c, t0, t1 - t0, warp - 1, spin, abortFlag);
  } else {
    const int r = warp - kMaxProd - 1;
    if (r < p.nRecv)
      receive<kR>(p, c, r, rstages + (size_t)r * p.Sr * slotBytes, rfull + r * p.Sr, infoS + r * p.Sr,
                  infoK + r * p.Sr, spin, abortFlag);
  }
}

size_t dispatchSmem(int Ss, int Sr, int nRecv, int slotBytes) {
  const size_t nRs = (size_t)nRecv * Sr;
  return (Ss + nRs) * slotBytes + (2 * Ss + nRs) * 8 + (size_t)Ss * 4 + (size_t)kSendHist * EP_HT_MAX_NVL_RANKS * 4 +
         2 * nRs * 4 + 16;
}

template <int kR>
epResult_t launchDispatch(epHtState* st, const DispatchParams& p, size_t smem, cudaStream_t stream) {
  EPCHECK(epHtAllowLargeSmem(st, EP_HT_ATTR_DISPATCH << (kR == 2 ? 0 : kR == 4 ? 1 : 2), dispatch_kernel<kR>));
  dispatch_kernel<kR><<<p.C, kDispatchThreads, smem, stream>>>(p);
  CUDACHECK_LAUNCH();
  return epSuccess;
}

}  // namespace
}  // namespace ht
}  // namespace ep

using namespace ep::ht;

EP_API epResult_t epDispatch(epComm_t comm, const epDispatchInput_t* in, const epDispatchOutput_t* out,
                             epHtHandle_t handle, cudaStream_t stream) {
  EPCHECK(epCommCheck(comm, "epDispatch"));
  EP_COMM_SCOPE(comm);
  if (epInterWanted(comm)) {
    EPCHECK(epHtCheckNotCapturing(comm, stream, "epDispatch"));  // internode: not yet verified under graph replay
    return epInterDispatch(comm, in, out, handle, stream);
  }
  EPCHECK(epHtCheckIntranode(comm, "epDispatch"));
  EPCHECK(epHtHandleCheck(comm, handle, "epDispatch"));
  epHtRowShape shape;
  EPCHECK(epHtCheckDispatchInput(comm, in, handle, /*needRouting=*/false, "epDispatch", &shape));
  EP_DESC_CHECK(out, epDispatchOutput_t, EP_DISPATCH_OUTPUT_INITIALIZER, "epDispatch");
  EP_USAGE_CHECK(handle->notified, "epDispatch: the handle has no layout yet: call epDispatchNotify first");
  EP_USAGE_CHECK(in->numTokens == handle->numTokens,
                 "epDispatch: numTokens %d differs from the notify's %d (cached dispatch needs the same routing)",
                 in->numTokens, handle->numTokens);
  EP_ARG_CHECK(out->capacity >= 0, "epDispatch: capacity %d < 0", out->capacity);
  EP_ARG_CHECK(out->capacity == 0 || out->recvX != nullptr, "epDispatch: recvX is NULL");
  EP_ARG_CHECK((reinterpret_cast<uintptr_t>(out->recvX) & 15) == 0, "epDispatch: recvX must be 16-byte aligned");
  EP_ARG_CHECK(shape.scaleCols == 0 || out->capacity == 0 || out->recvXScales != nullptr,
               "epDispatch: FP8 rows need recvXScales");
  EP_ARG_CHECK(out->recvTopkIdx == nullptr || in->topkIdx != nullptr,
               "epDispatch: recvTopkIdx requested but topkIdx is NULL");
  EP_ARG_CHECK(out->recvTopkWeights == nullptr || in->topkWeights != nullptr,
               "epDispatch: recvTopkWeights requested but topkWeights is NULL");
  if (in->topkIdx != nullptr) {
    EP_USAGE_CHECK(in->numExperts == handle->numExperts, "epDispatch: numExperts %d differs from the notify's %d",
                   in->numExperts, handle->numExperts);
  }
  const int C = handle->numChannels;
  EP_USAGE_CHECK(in->numSms == 0 || in->numSms >= C,
                 "epDispatch: numSms %d differs from the notify's %d channels (the layout is per channel)", in->numSms,
                 C);
  epHtState* st = comm->ht;
  EP_USAGE_CHECK(st != nullptr, "epDispatch: no HT state (call epDispatchNotify first)");

  const bool withIdx = in->topkIdx != nullptr, withW = in->topkWeights != nullptr;
  const int K = (withIdx || withW) ? in->numTopk : 0;
  // Registered outputs: senders write straight into them (ht_direct.h).
  epHtDirectRec rec;
  st->lastDirect[EP_HT_KIND_DISPATCH] = 0;
  const bool afterNotify = st->notifiedSinceDispatch;
  st->notifiedSinceDispatch = false;
  if (epHtDispatchDirectRecord(comm, out, shape, in->numTopk, &rec)) {
    st->lastDirect[EP_HT_KIND_DISPATCH] = 1;
    return epHtLaunchDispatchDirect(comm, st, in, out, handle, shape, rec, afterNotify, stream);
  }
  epHtSlotLayout sl = epHtDispatchSlot(shape.xBytes, shape.scaleCols, K, withIdx, withW);
  const int cap = (int)(st->lay.ringBytes / sl.slotBytes);
  if (cap < EP_HT_MIN_RING_SLOTS) {
    EP_WARN("epDispatch: ring of %lld bytes holds %d slots of %d bytes, fewer than %d. HINT: raise nvlBufferBytes "
            "(epGetBufferSizeHint)",
            st->lay.ringBytes, cap, sl.slotBytes, EP_HT_MIN_RING_SLOTS);
    return epInvalidArgument;
  }
  // Stages: as many as fit, up to 6 for the sender and 6 per receiver warp
  // (enough bytes in flight per SM).
  const epHtTune tune = epHtTuneGet(st);
  const int nRecv = std::min(std::max(tune.nRecv, 1), kMaxRecv);
  const int stagesFit = (int)(((size_t)st->smemOptin - 2048) / (size_t)sl.slotBytes);
  const int Ss = std::min(6, stagesFit / 2);
  const int Sr = std::min(6, (stagesFit - Ss) / nRecv);
  if (Ss < 2 || Sr < 2) {
    EP_WARN("epDispatch: a %d-byte slot leaves fewer than 2 shared-memory stages per warp (hidden too large)",
            sl.slotBytes);
    return epInvalidArgument;
  }

  DispatchParams p;
  p.b.lay = st->lay;
  p.b.peers = st->peers;
  p.tune = tune;
  p.C = C;
  p.T = in->numTokens;
  p.sl = sl;
  p.cap = cap;
  p.Ss = Ss;
  p.Sr = Sr;
  p.nRecv = nRecv;
  p.x = static_cast<const char*>(in->x);
  p.scales = static_cast<const char*>(in->xScales);
  p.sTok = shape.sTok;
  p.sCol = shape.sCol;
  p.topk = in->topkIdx;
  p.idx64 = in->topkIdxType == epInt64;
  p.weights = in->topkWeights;
  p.L = handle->numExperts / comm->nranks;
  p.h = handle->dev;
  p.recvX = static_cast<char*>(out->recvX);
  p.recvScales = static_cast<int*>(out->recvXScales);
  p.recvTopkIdx = out->recvTopkIdx;
  p.recvTopkWeights = out->recvTopkWeights;
  p.recvSrcIdx = out->recvSrcIdx;
  p.outCountPerExpert = out->recvCountPerExpert;
  p.outNumRecv = out->numRecvTokens;
  p.capacity = out->capacity;
  p.status = comm->devStatusDev;
  p.timeoutNs = epCommWaitTimeoutNs(comm);
  p.epochCtr = epHtEpochCounters(st, EP_HT_KIND_DISPATCH);
  const size_t smem = dispatchSmem(p.Ss, p.Sr, p.nRecv, sl.slotBytes);
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  const int R = comm->nranks;
  epResult_t res = R <= 2 ? launchDispatch<2>(st, p, smem, stream) : R <= 4 ? launchDispatch<4>(st, p, smem, stream)
                                                          : launchDispatch<8>(st, p, smem, stream);
  if (res == epSuccess) epHtProfAfter(comm, st, 0, C, stream);
  return res;
}
