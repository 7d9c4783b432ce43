/*************************************************************************
 * epcomm: HT intranode notify — the count exchange before a dispatch.
 *
 * Two kernels on the caller's stream:
 *  1. count (one block per channel): scans the channel's tokens in order and
 *     records, per token, which ranks it goes to and its slot index in each
 *     destination ring; per-channel counts per destination; a histogram of
 *     tokens per expert. Expert ids >= E or < -1 are recorded as device
 *     errors and ignored (no out-of-bounds access).
 *  2. exchange (one block): writes our counts into every peer's buffer,
 *     publishes them with an epoch flag, waits for every peer's (bounded by
 *     EP_TIMEOUT_MS), and derives the receive layout: rows per source and
 *     channel, their prefix sums, aligned per-local-expert counts. Mode (a)
 *     also writes the totals into host-mapped memory; the host spins on it.
 *
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

struct CountParams {
  const void* topk;
  int idx64;
  int K;
  int T;
  int E;
  int L;
  int R;
  int C;
  const uint8_t* userInRank; /* used when topk is NULL */
  uint8_t* inRank;           /* handle: [T x R] */
  int* slotPrefix;           /* handle: [T x R] */
  int* sendChanCount;        /* handle: [R][Cmax] */
  int* expertCount;          /* handle: [E]; NULL: no histogram */
  epDeviceStatus* status;
};

__device__ __forceinline__ long long load_id(const void* p, int idx64, long long i) {
  return idx64 ? reinterpret_cast<const long long*>(p)[i] : (long long)reinterpret_cast<const int*>(p)[i];
}

__global__ void __launch_bounds__(256) count_kernel(CountParams p) {
  extern __shared__ int hist[];  // [E] when histogramming
  const int c = blockIdx.x;
  int t0, t1;
  channel_range(p.T, p.C, c, &t0, &t1);
  const int tid = threadIdx.x, lane = lane_id();
  if (p.expertCount) {
    for (int e = tid; e < p.E; e += blockDim.x) hist[e] = 0;
    __syncthreads();
  }
  if (tid < 32) {
    // Warp 0: in-order scan of the channel's tokens, 32 at a time.
    int running[EP_HT_MAX_NVL_RANKS];
#pragma unroll
    for (int r = 0; r < EP_HT_MAX_NVL_RANKS; r++) running[r] = 0;
    for (int base = t0; base < t1; base += 32) {
      const int t = base + lane;
      const bool valid = t < t1;
      unsigned mask = 0;
      if (valid) {
        if (p.topk) {
          for (int k = 0; k < p.K; k++) {
            long long id = load_id(p.topk, p.idx64, (long long)t * p.K + k);
            if (id >= 0 && id < p.E) {
              mask |= 1u << (int)(id / p.L);
            } else if (id != -1) {
              record_error(p.status, kFamilyHt, EP_DEVERR_BAD_EXPERT_ID, t, k, id);
            }
          }
        } else {
          for (int r = 0; r < p.R; r++)
            if (p.userInRank[(size_t)t * p.R + r]) mask |= 1u << r;
        }
      }
      const unsigned lt = (1u << lane) - 1;
#pragma unroll
      for (int r = 0; r < EP_HT_MAX_NVL_RANKS; r++) {
        if (r < p.R) {
          const unsigned bits = __ballot_sync(0xffffffffu, (mask >> r) & 1);
          if (valid) {
            p.slotPrefix[(size_t)t * p.R + r] = running[r] + __popc(bits & lt);
            p.inRank[(size_t)t * p.R + r] = (uint8_t)((mask >> r) & 1);
          }
          running[r] += __popc(bits);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < EP_HT_MAX_NVL_RANKS; r++)
      if (lane == r && r < p.R) p.sendChanCount[r * EP_HT_MAX_CHANNELS + c] = running[r];
  } else if (p.expertCount && p.topk) {
    // Other warps: tokens per expert over this channel's (token, slot) pairs.
    const long long n = (long long)(t1 - t0) * p.K;
    for (long long i = tid - 32; i < n; i += blockDim.x - 32) {
      long long id = load_id(p.topk, p.idx64, (long long)t0 * p.K + i);
      if (id >= 0 && id < p.E) atomicAdd(&hist[id], 1);
    }
  }
  if (p.expertCount) {
    __syncthreads();
    for (int e = tid; e < p.E; e += blockDim.x)
      if (hist[e]) atomicAdd(&p.expertCount[e], hist[e]);
  }
}

struct ExchangeParams {
  Buf b;
  uint32_t* epochCtr;  // notify call epochs on the device (CallEpoch): count slots and flags
  int hostEpoch;       // mode (a): the host's sequence number, echoed into the mailbox
  int C;
  int L;
  int align;
  const int* sendChanCount;  // [R][Cmax]
  const int* expertCount;    // [E] (handle's histogram or the user's numTokensPerExpert)
  epHtHandleDev h;
  epHtHostInfo* host;        // NULL: mode (b)
  epDeviceStatus* status;
  unsigned long long timeoutNs;
};

__global__ void __launch_bounds__(512) exchange_kernel(ExchangeParams p) {
  const CallEpoch callEpoch(p.epochCtr);  // first: every return path advances it
  const int epoch = (int)callEpoch.e;
  __shared__ int fromRank[EP_HT_MAX_NVL_RANKS + 1];
  __shared__ int abortFlag;
  const int tid = threadIdx.x;
  const int R = p.b.R(), me = p.b.me();
  const int par = epoch & 1;
  const int W = 1 + p.C + p.L;
  const int header = p.C | (p.L << 16);
  if (tid == 0) abortFlag = 0;
  // 1. Our counts for destination d go to d's slot [par][me].
  for (int idx = tid; idx < R * W; idx += blockDim.x) {
    const int d = idx / W, j = idx % W;
    int v;
    if (j == 0) v = header;
    else if (j <= p.C) v = p.sendChanCount[d * EP_HT_MAX_CHANNELS + (j - 1)];
    else v = p.expertCount[d * p.L + (j - 1 - p.C)];
    int* slot = reinterpret_cast<int*>(p.b.peers.buf[d] + p.b.lay.notifyOff) +
                ((size_t)par * R + me) * p.b.lay.notifyInts;
    slot[j] = v;
  }
  __syncthreads();
  // 2. Publish to each peer, then wait for each peer's counts.
  if (tid < R) {
    int* flagAt = reinterpret_cast<int*>(p.b.peers.buf[tid] + p.b.lay.nflagOff) + par * R + me;
    st_release_sys(flagAt, epoch);
    const int* flagIn = reinterpret_cast<int*>(p.b.local() + p.b.lay.nflagOff) + par * R + tid;
    Spin spin(p.timeoutNs);
    while (ld_acquire_sys(flagIn) != epoch) {
      if (spin.tick(&abortFlag, p.status, -1, tid, kWaitNotify)) break;
    }
  }
  __syncthreads();
  if (abortFlag) return;
  const int* slots = reinterpret_cast<const int*>(p.b.local() + p.b.lay.notifyOff) + (size_t)par * R * p.b.lay.notifyInts;
  // 3. Rows per (source, channel) and their prefix inside the source's block.
  if (tid < R) {
    const int* s = slots + (size_t)tid * p.b.lay.notifyInts;
    if (ld_volatile(&s[0]) != header) {
      record_error(p.status, kFamilyHt, EP_DEVERR_BAD_HANDLE, tid, header, ld_volatile(&s[0]));
    }
    int sum = 0;
    for (int c = 0; c < p.C; c++) {
      const int v = ld_volatile(&s[1 + c]);
      p.h.recvChanCount[tid * EP_HT_MAX_CHANNELS + c] = v;
      p.h.recvChanPrefix[tid * EP_HT_MAX_CHANNELS + c] = sum;
      sum += v;
    }
    fromRank[tid] = sum;
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
  if (hist) {
    CUDACHECK(cudaMemsetAsync(handle->dev.expertCount, 0, sizeof(int) * E, stream));
    EPCHECK(epHtAllowLargeSmem(st, EP_HT_ATTR_COUNT, count_kernel));  // the histogram may exceed 48 KB
    EP_ARG_CHECK((size_t)E * 4 <= (size_t)st->smemOptin, "epDispatchNotify: %d experts exceed the histogram limit %d",
                 E, st->smemOptin / 4);
  }
  CountParams cp;
  cp.topk = in->topkIdx;
  cp.idx64 = in->topkIdxType == epInt64;
  cp.K = in->numTopk;
  cp.T = T;
  cp.E = E;
  cp.L = L;
  cp.R = R;
  cp.C = C;
  cp.userInRank = in->isTokenInRank;
  cp.inRank = handle->dev.isTokenInRank;
  cp.slotPrefix = handle->dev.slotPrefix;
  cp.sendChanCount = handle->dev.sendChanCount;
  cp.expertCount = hist ? handle->dev.expertCount : nullptr;
  cp.status = comm->devStatusDev;
  count_kernel<<<C, 256, hist ? (size_t)E * 4 : 0, stream>>>(cp);
  CUDACHECK_LAUNCH();

  const int epoch = (int)(++st->notifyEpoch & 0x7fffffff);
  const bool modeA = numRecvTokens != nullptr;
  ExchangeParams ep;
  ep.b.lay = st->lay;
  ep.b.peers = st->peers;
  ep.epochCtr = epHtEpochCounters(st, EP_HT_EPOCH_NOTIFY);
  ep.hostEpoch = epoch;
  ep.C = C;
  ep.L = L;
  ep.align = in->expertAlignment;
  ep.sendChanCount = handle->dev.sendChanCount;
  ep.expertCount = hist ? handle->dev.expertCount : in->numTokensPerExpert;
  ep.h = handle->dev;
  ep.host = modeA ? handle->hostInfoDev : nullptr;
  ep.status = comm->devStatusDev;
  ep.timeoutNs = epCommWaitTimeoutNs(comm);
  exchange_kernel<<<1, 512, 0, stream>>>(ep);
  CUDACHECK_LAUNCH();

  handle->notified = true;
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
  while (hi->epoch != epoch) {
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
      if (q == cudaSuccess && hi->epoch != epoch) {
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
