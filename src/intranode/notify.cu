/*************************************************************************
 * epcomm: HT intranode notify — the count exchange before a dispatch.
 *
 * One kernel on the caller's stream, one block per channel:
 *  1. count (every block): records, per token of the channel, which ranks it
 *     goes to and its slot index in each destination's rows of the channel;
 *     per-channel counts per destination; a histogram of tokens per expert.
 *     Expert ids >= E or < -1 are recorded as device errors and ignored (no
 *     out-of-bounds access).
 *  2. exchange (the last block to finish counting): writes our counts into
 *     every peer's buffer, publishes them with an epoch flag, waits for every
 *     peer's (bounded by EP_TIMEOUT_MS), and derives the receive layout: rows
 *     per source and channel, their prefix sums, aligned per-local-expert
 *     counts. Mode (a) also writes the totals into host-mapped memory; the
 *     host spins on it.
 * Count slots are double-buffered by epoch parity: a rank can be at most one
 * notify ahead of a peer that has not yet read its previous counts (it waits
 * for the peer's flag of the next epoch), so parity is enough.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <algorithm>
#include <chrono>
#include <thread>

#include <cuda_runtime.h>

#include "core/api.h"
#include "core/async_error.h"
#include "core/checks.h"
#include "core/comm.h"
#include "intranode/ht_args.h"
#include "intranode/ht_device.cuh"
#include "intranode/ht_handle.h"
#include "intranode/ht_state.h"
#include "internode/inter_api.h"

namespace ep {
namespace ht {
namespace {

struct NotifyParams {
  // Count (every block: one channel).
  const void* topk;
  int idx64;
  int K;
  int T;
  int E;
  int R;
  const uint8_t* userInRank; /* used when topk is NULL */
  uint8_t* inRank;           /* handle: [T x R] */
  int* slotPrefix;           /* handle: [T x R] */
  int* expertCount;          /* handle: [E]; NULL: no histogram (the user gave numTokensPerExpert) */
  int* ticket;               /* handle: blocks done counting (the last one exchanges, then resets it) */
  // Exchange (the last block).
  Buf b;
  uint32_t* epochCtr;        /* notify call epochs on the device (CallEpoch): count slots and flags */
  int hostEpoch;             /* mode (a): the host's sequence number, echoed into the mailbox */
  int C;
  int L;
  int align;
  const int* userExpertCount; /* [E] the user's numTokensPerExpert, or NULL (then expertCount) */
  epHtHandleDev h;
  epHtHostInfo* host;        /* NULL: mode (b) */
  epDeviceStatus* status;
  unsigned long long timeoutNs;
};

constexpr int kNotifyThreads = 512;
constexpr int kNotifyWarps = kNotifyThreads / 32;

__device__ __forceinline__ long long load_id(const void* p, int idx64, long long i) {
  return idx64 ? reinterpret_cast<const long long*>(p)[i] : (long long)reinterpret_cast<const int*>(p)[i];
}

// Which ranks token t goes to (bit r), from its top-k ids (8 independent
// loads in flight per lane) or the user's isTokenInRank row; with `hist`,
// counts its valid ids into the block's shared histogram. Ids >= E or < -1
// are recorded as device errors and ignored (no out-of-bounds access).
__device__ __forceinline__ unsigned token_rank_mask(const NotifyParams& p, int t, int L, int* hist) {
  unsigned mask = 0;
  if (p.topk) {
    for (int k0 = 0; k0 < p.K; k0 += 8) {
      long long id[8];
#pragma unroll
      for (int u = 0; u < 8; u++) id[u] = k0 + u < p.K ? load_id(p.topk, p.idx64, (long long)t * p.K + k0 + u) : -1;
#pragma unroll
      for (int u = 0; u < 8; u++) {
        if (id[u] >= 0 && id[u] < p.E) {
          mask |= 1u << (int)(id[u] / L);
          if (hist) atomicAdd(&hist[id[u]], 1);
        } else if (id[u] != -1) {
          record_error(p.status, kFamilyHt, EP_DEVERR_BAD_EXPERT_ID, t, k0 + u, id[u]);
        }
      }
    }
  } else {
    for (int r = 0; r < p.R; r++)
      if (p.userInRank[(size_t)t * p.R + r]) mask |= 1u << r;
  }
  return mask;
}

// Inclusive prefix sum over a warp.
__device__ __forceinline__ int warp_inclusive_scan(int v, int lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  return v;
}

// The last block: writes our counts into every peer's buffer, publishes them
// with the epoch flag, waits for every peer's (bounded by EP_TIMEOUT_MS), and
// derives the receive layout: rows per source and channel, their prefix
// sums, aligned per-local-expert counts; mode (a) also fills the host mailbox.
// Slot [par][src] in our buffer, written by src: header | src's rows to us
// per channel (C) | per local expert of ours (L) | src's total rows to every
// rank (R: all-gathered, so each sender knows where its rows start in every
// receiver, sendBase, without asking the receiver at dispatch time).
// Per-channel sums and scans use one warp per rank (lanes over channels):
// a thread looping over the channels paid one L2 round trip per channel.
__device__ void exchange_counts(const NotifyParams& p, const int* expertCount, int epoch, int* abortFlag) {
  __shared__ int fromRank[EP_HT_MAX_NVL_RANKS + 1];
  __shared__ int myTotal[EP_HT_MAX_NVL_RANKS];
  __shared__ int sendBase[EP_HT_MAX_NVL_RANKS];
  const int tid = threadIdx.x, lane = lane_id(), warp = warp_id();
  const int R = p.b.R(), me = p.b.me();
  const int par = epoch & 1;
  const int W = 1 + p.C + p.L;
  const int header = p.C | (p.L << 16);
  // 0. Our total rows to each rank (warp d sums d's channel counts).
  if (warp < R) {
    int sum = 0;
    for (int c = lane; c < p.C; c += 32) sum += __ldcg(&p.h.sendChanCount[warp * EP_HT_MAX_CHANNELS + c]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) myTotal[warp] = sum;
  }
  if (tid < EP_HT_MAX_NVL_RANKS) sendBase[tid] = 0;
  __syncthreads();
  // 1. Our counts for destination d go to d's slot [par][me].
  for (int idx = tid; idx < R * (W + R); idx += blockDim.x) {
    const int d = idx / (W + R), j = idx % (W + R);
    int v;
    if (j == 0) v = header;
    else if (j <= p.C) v = __ldcg(&p.h.sendChanCount[d * EP_HT_MAX_CHANNELS + (j - 1)]);
    else if (j < W) v = __ldcg(&expertCount[d * p.L + (j - 1 - p.C)]);
    else v = myTotal[j - W];
    int* slot = reinterpret_cast<int*>(p.b.peers.buf[d] + p.b.lay.notifyOff) +
                ((size_t)par * R + me) * p.b.lay.notifyInts;
    slot[j] = v;
  }
  __syncthreads();
  // The histogram is read: zero it for the next notify (instead of a memset launch per call).
  if (expertCount == p.expertCount && p.expertCount)
    for (int e = tid; e < p.E; e += blockDim.x) p.expertCount[e] = 0;
  // 2. Publish to each peer, then wait for each peer's counts.
  if (tid < R) {
    int* flagAt = reinterpret_cast<int*>(p.b.peers.buf[tid] + p.b.lay.nflagOff) + par * R + me;
    st_release_sys(flagAt, epoch);
    const int* flagIn = reinterpret_cast<int*>(p.b.local() + p.b.lay.nflagOff) + par * R + tid;
    Spin spin(p.timeoutNs);
    while (ld_acquire_sys(flagIn) != epoch) {
      if (spin.tick(abortFlag, p.status, -1, tid, kWaitNotify)) break;
    }
  }
  __syncthreads();
  if (*reinterpret_cast<volatile int*>(abortFlag)) return;
  const int* slots = reinterpret_cast<const int*>(p.b.local() + p.b.lay.notifyOff) + (size_t)par * R * p.b.lay.notifyInts;
  // 3. Warp s: rows per (s, channel) and their prefix inside s's block; s's
  //    totals to every rank (a source before us adds to our sendBase there).
  if (warp < R) {
    const int* sl = slots + (size_t)warp * p.b.lay.notifyInts;
    if (lane == 0 && ld_volatile(&sl[0]) != header) {
      record_error(p.status, kFamilyHt, EP_DEVERR_BAD_HANDLE, warp, header, ld_volatile(&sl[0]));
    }
    int carry = 0;
    for (int c0 = 0; c0 < p.C; c0 += 32) {
      const int c = c0 + lane;
      const int v = c < p.C ? ld_volatile(&sl[1 + c]) : 0;
      const int inc = warp_inclusive_scan(v, lane);
      if (c < p.C) {
        p.h.recvChanCount[warp * EP_HT_MAX_CHANNELS + c] = v;
        p.h.recvChanPrefix[warp * EP_HT_MAX_CHANNELS + c] = carry + inc - v;
      }
      carry += __shfl_sync(0xffffffffu, inc, 31);
    }
    if (lane == 0) fromRank[warp] = carry;
    if (warp < me && lane < R) atomicAdd(&sendBase[lane], ld_volatile(&sl[W + lane]));
  }
  __syncthreads();
  if (tid == 0) {
    int acc = 0;
    for (int r = 0; r < R; r++) {
      p.h.rankPrefix[r] = acc;
      acc += fromRank[r];
    }
    p.h.rankPrefix[R] = acc;
    *p.h.numRecv = acc;
    fromRank[R] = acc;
  }
  if (tid < R) p.h.sendBase[tid] = sendBase[tid];
  // 4. Per local expert: rows from all sources, aligned.
  for (int l = tid; l < p.L; l += blockDim.x) {
    int sum = 0;
    for (int s = 0; s < R; s++) sum += ld_volatile(&slots[(size_t)s * p.b.lay.notifyInts + 1 + p.C + l]);
    const int a = (sum + p.align - 1) / p.align * p.align;
    p.h.expertAligned[l] = a;
    if (p.host) p.host->perExpert[l] = a;
  }
  __syncthreads();
  if (tid == 0 && p.host) {
    p.host->numRecv = fromRank[R];
    __threadfence_system();
    p.host->epoch = p.hostEpoch;
  }
}

// One launch per notify (it was a memset, a count kernel and an exchange
// kernel: ~27 us inside a 300 us FP8 dispatch call). Every block counts one
// channel with all its warps (512 tokens per round: each warp ballots 32
// tokens, a shared prefix over the warps orders them), so a channel's slot
// indices come in ceil(n / 512) rounds instead of n / 32 serial steps; the
// last block to finish counting (a ticket) runs the exchange.
__global__ void __launch_bounds__(kNotifyThreads) notify_kernel(NotifyParams p) {
  const CallEpoch callEpoch(p.epochCtr);  // first: every return path advances it
  extern __shared__ int hist[];           // [E] when histogramming
  __shared__ int warpBase[kNotifyWarps][EP_HT_MAX_NVL_RANKS];
  __shared__ int running[EP_HT_MAX_NVL_RANKS];
  __shared__ int isLast;
  __shared__ int abortFlag;
  const int c = blockIdx.x, tid = threadIdx.x, lane = lane_id(), warp = warp_id();
  const int R = p.R, L = p.E / R;
  int* const h = p.expertCount ? hist : nullptr;
  if (tid == 0) abortFlag = 0;
  if (tid < EP_HT_MAX_NVL_RANKS) running[tid] = 0;
  if (h)
    for (int e = tid; e < p.E; e += blockDim.x) h[e] = 0;
  __syncthreads();
  int t0, t1;
  channel_range(p.T, p.C, c, &t0, &t1);
  const unsigned lt = (1u << lane) - 1;
  for (int base = t0; base < t1; base += kNotifyThreads) {
    const int t = base + warp * 32 + lane;
    const bool valid = t < t1;
    const unsigned mask = valid ? token_rank_mask(p, t, L, h) : 0u;
    unsigned bits[EP_HT_MAX_NVL_RANKS];
#pragma unroll
    for (int r = 0; r < EP_HT_MAX_NVL_RANKS; r++) {
      bits[r] = __ballot_sync(0xffffffffu, (mask >> r) & 1);
      if (lane == 0 && r < R) warpBase[warp][r] = __popc(bits[r]);
    }
    __syncthreads();
    if (tid < R) {  // exclusive prefix over the warps, in token order
      int acc = running[tid];
      for (int w = 0; w < kNotifyWarps; w++) {
        const int v = warpBase[w][tid];
        warpBase[w][tid] = acc;
        acc += v;
      }
      running[tid] = acc;
    }
    __syncthreads();
    if (valid) {
#pragma unroll
      for (int r = 0; r < EP_HT_MAX_NVL_RANKS; r++) {
        if (r < R) {
          p.slotPrefix[(size_t)t * R + r] = warpBase[warp][r] + __popc(bits[r] & lt);
          p.inRank[(size_t)t * R + r] = (uint8_t)((mask >> r) & 1);
        }
      }
    }
    __syncthreads();  // warpBase is rewritten by the next round
  }
  if (tid < R) p.h.sendChanCount[tid * EP_HT_MAX_CHANNELS + c] = running[tid];
  if (h) {
    __syncthreads();
    for (int e = tid; e < p.E; e += blockDim.x)
      if (h[e]) atomicAdd(&p.expertCount[e], h[e]);
  }
  // Ticket: our counts (and histogram adds) are visible device-wide before it.
  __syncthreads();
  if (tid == 0) {
    __threadfence();
    const int done = atomicAdd(p.ticket, 1);
    isLast = done == p.C - 1;
    if (isLast) {
      *p.ticket = 0;  // for the next notify (stream-ordered after this kernel)
      __threadfence();
    }
  }
  __syncthreads();
  if (!isLast) return;
  // The dispatch that follows (launched with PDL) may be scheduled now, while
  // this block exchanges counts: its blocks wait (pdl_wait) until this kernel
  // is complete, so the launch latency overlaps the exchange. Triggered here,
  // not at kernel start, so that only this block still holds an SM when the
  // dispatch's blocks (and clusters) are placed: the placement sets the
  // dispatch's NVLink rate (ht_launch.h).
  pdl_launch_dependents();
  exchange_counts(p, p.userExpertCount ? p.userExpertCount : p.expertCount, (int)callEpoch.e, &abortFlag);
}

}  // namespace
}  // namespace ht
}  // namespace ep

using namespace ep::ht;

EP_API epResult_t epDispatchNotify(epComm_t comm, const epDispatchInput_t* in, epHtHandle_t handle, int* numRecvTokens,
                                   int* recvCountPerExpert, cudaStream_t stream) {
  EPCHECK(epCommCheck(comm, "epDispatchNotify"));
  EP_COMM_SCOPE(comm);
  if (epInterWanted(comm)) {
    EPCHECK(epHtCheckNotCapturing(comm, stream, "epDispatchNotify"));  // internode: not yet verified under graph replay
    return epInterDispatchNotify(comm, in, handle, numRecvTokens, recvCountPerExpert, stream);
  }
  EPCHECK(epHtCheckIntranode(comm, "epDispatchNotify"));
  EPCHECK(epHtHandleCheck(comm, handle, "epDispatchNotify"));
  EPCHECK(epHtCheckDispatchInput(comm, in, handle, /*needRouting=*/true, "epDispatchNotify", nullptr));
  EP_ARG_CHECK((numRecvTokens == nullptr) == (recvCountPerExpert == nullptr),
               "epDispatchNotify: numRecvTokens and recvCountPerExpert must both be set (mode a) or both NULL (mode b)");
  const int R = comm->nranks, T = in->numTokens, E = in->numExperts, L = E / R;
  epHtState* st = nullptr;
  const int wantC = in->numSms > 0 ? in->numSms : comm->config.numSms;
  EPCHECK(epHtStateGet(comm, in->hidden, in->numTopk, wantC, &st));
  const int C = epHtChannels(comm, st, in->numSms);
  CUDACHECK(cudaSetDevice(comm->cudaDev));

  const bool hist = in->numTokensPerExpert == nullptr;
  // The histogram fits the default 48 KB of shared memory (E <= R x EP_HT_MAX_LOCAL_EXPERTS = 8192 experts
  // is 32 KB, plus ~1 KB of the kernel's own), so no opt-in is needed.
  EP_ARG_CHECK(!hist || (size_t)E * 4 + 2048 <= 48 * 1024, "epDispatchNotify: %d experts exceed the histogram limit %d",
               E, (48 * 1024 - 2048) / 4);
  const int hostEpoch = (int)(++st->notifyEpoch & 0x7fffffff);
  const bool modeA = numRecvTokens != nullptr;
  NotifyParams p;
  p.topk = in->topkIdx;
  p.idx64 = in->topkIdxType == epInt64;
  p.K = in->numTopk;
  p.T = T;
  p.E = E;
  p.R = R;
  p.userInRank = in->isTokenInRank;
  p.inRank = handle->dev.isTokenInRank;
  p.slotPrefix = handle->dev.slotPrefix;
  p.expertCount = hist ? handle->dev.expertCount : nullptr;
  p.ticket = handle->dev.notifyTicket;
  p.b.lay = st->lay;
  p.b.peers = st->peers;
  p.epochCtr = epHtEpochCounters(st, EP_HT_EPOCH_NOTIFY);
  p.hostEpoch = hostEpoch;
  p.C = C;
  p.L = L;
  p.align = in->expertAlignment;
  p.userExpertCount = hist ? nullptr : in->numTokensPerExpert;
  p.h = handle->dev;
  p.host = modeA ? handle->hostInfoDev : nullptr;
  p.status = comm->devStatusDev;
  p.timeoutNs = epCommWaitTimeoutNs(comm);
  notify_kernel<<<C, kNotifyThreads, hist ? (size_t)E * 4 : 0, stream>>>(p);
  CUDACHECK_LAUNCH();

  handle->notified = true;
  st->notifiedSinceDispatch = true;
  handle->numTokens = T;
  handle->numChannels = C;
  handle->numExperts = E;
  handle->numTopk = in->numTopk;
  handle->hostNumRecv = -1;
  if (!modeA) return epSuccess;

  // Mode (a): wait for the counts in host-mapped memory, bounded by the timeout.
  volatile epHtHostInfo* hi = handle->hostInfo;
  auto start = std::chrono::steady_clock::now();
  unsigned spins = 0;
  while (hi->epoch != hostEpoch) {
    if (comm->devStatus && reinterpret_cast<volatile epDeviceStatus*>(comm->devStatus)->kind != EP_DEVERR_NONE) {
      CUDACHECK(cudaStreamSynchronize(stream));
      epDeviceStatus s = *comm->devStatus;
      char msg[512];
      epResult_t r = epDeviceStatusDescribe(s, msg, sizeof(msg));
      EP_WARN("epDispatchNotify: %s", msg);
      return r == epSuccess ? epInternalError : r;
    }
    if (++spins % 1024 == 0) {
      cudaError_t q = cudaStreamQuery(stream);
      if (q != cudaSuccess && q != cudaErrorNotReady) {
        EP_WARN("epDispatchNotify: stream error while waiting for counts: %s", cudaGetErrorString(q));
        return epCudaError;
      }
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
      if (ms > comm->config.timeoutMs + 1000) {
        EP_WARN("epDispatchNotify: receive counts did not arrive within %d ms (EP_TIMEOUT_MS)", comm->config.timeoutMs);
        return epTimeout;
      }
      if (q == cudaSuccess && hi->epoch != hostEpoch) {
        // The stream finished without publishing: the kernel gave up (error recorded above) or was skipped.
        if (comm->devStatus && reinterpret_cast<volatile epDeviceStatus*>(comm->devStatus)->kind != EP_DEVERR_NONE)
          continue;
        EP_WARN("epDispatchNotify: stream completed without the notify result");
        return epInternalError;
      }
      if (spins > (1u << 20)) std::this_thread::yield();
    }
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  *numRecvTokens = hi->numRecv;
  for (int l = 0; l < L; l++) recvCountPerExpert[l] = hi->perExpert[l];
  handle->hostNumRecv = hi->numRecv;
  return epSuccess;
}
