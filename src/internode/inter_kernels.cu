/*************************************************************************
 * epcomm: HT internode (v1) kernels (see inter_kernels.h).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Correctness first: simple grid-stride copies with 16-byte accesses, no
 * warp specialisation and no IB/NVLink overlap (v2, docs/internode.md).
 *************************************************************************/
#include "internode/inter_kernels.h"

#include <cuda_bf16.h>

#include "device/ptx.cuh"
#include "device/timeout.cuh"
#include "transports/proxy/net_post.cuh"

namespace ep {
namespace inter {
namespace {

using dev::record_error;

__device__ __forceinline__ int64_t loadId(const void* topk, bool idx64, size_t i) {
  return idx64 ? static_cast<const int64_t*>(topk)[i] : (int64_t) static_cast<const int32_t*>(topk)[i];
}

__device__ __forceinline__ uint64_t* sigWord(const epInterK& k, int which, int node) {
  return reinterpret_cast<uint64_t*>(k.win + k.lay.sigOff) + which * k.N + node;
}

/* Sub-expert id of global expert e on node m (-1 if not there). */
__device__ __forceinline__ int subExpert(const epInterK& k, int64_t e, int m) {
  if (e < 0) return -1;
  const int nl = k.rankNL[e / k.L];
  if ((nl >> 16) != m) return -1;
  return (nl & 0xffff) * k.L + (int)(e % k.L);
}

/* Copies n 16-byte units with the block's threads. */
__device__ __forceinline__ void blockCopy16(void* dst, const void* src, int bytes) {
  int4* d = static_cast<int4*>(dst);
  const int4* s = static_cast<const int4*>(src);
  for (int i = threadIdx.x; i < bytes / 16; i += blockDim.x) d[i] = s[i];
}

__global__ void nodeLayoutKernel(epInterK k, const void* topk, bool idx64, int T, int K, int E, int limit,
                                 int* nodeSlot, int* nodeCount) {
  __shared__ int wcnt[32][EP_INTER_MAX_NODES];
  __shared__ int base[EP_INTER_MAX_NODES];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, N = k.N;
  if (tid < N) base[tid] = 0;
  __syncthreads();
  for (int chunk = 0; chunk < T; chunk += blockDim.x) {
    const int t = chunk + tid;
    uint32_t mask = 0;
    if (t < T) {
      for (int j = 0; j < K; j++) {
        const int64_t e = loadId(topk, idx64, (size_t)t * K + j);
        if (e < -1 || e >= E) {
          record_error(k.status, EP_INTER_ERR_FAMILY, EP_DEVERR_BAD_EXPERT_ID, t, j, (long long)e);
          continue;  // treated as masked: nothing out of bounds
        }
        if (e >= 0) mask |= 1u << (k.rankNL[e / k.L] >> 16);
      }
      const int nodes = __popc(mask);
      if (limit > 0 && nodes > limit) record_error(k.status, EP_INTER_ERR_FAMILY, EP_DEVERR_NODE_LIMIT, t, limit, nodes);
    }
    for (int m = 0; m < N; m++) {
      const unsigned b = __ballot_sync(0xffffffffu, (mask >> m) & 1);
      if (lane == 0) wcnt[warp][m] = __popc(b);
    }
    __syncthreads();
    if (tid < N) {
      int acc = base[tid];
      for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
        const int c = wcnt[w][tid];
        wcnt[w][tid] = acc;
        acc += c;
      }
      base[tid] = acc;
    }
    __syncthreads();
    for (int m = 0; m < N; m++) {
      const unsigned b = __ballot_sync(0xffffffffu, (mask >> m) & 1);
      if (t < T) {
        const unsigned lt = (1u << lane) - 1;
        nodeSlot[(size_t)t * N + m] = ((mask >> m) & 1) ? wcnt[warp][m] + __popc(b & lt) : -1;
      }
    }
    __syncthreads();
  }
  if (tid < N) nodeCount[tid] = base[tid];
}

__global__ void waitKernel(epInterK k, int which, bool incr, int sigWhich, int offset) {
  __shared__ unsigned long long q;
  if (threadIdx.x == 0) {
    q = incr ? ++k.seq[which] : k.seq[which];
  }
  __syncthreads();
  const int m = threadIdx.x;
  if (m < k.N && m != k.myNode) {
    const unsigned long long target = q - (unsigned long long)offset;
    // Not net::wait_signal_geq: that gives up on any recorded error, and a bad expert id or the node limit
    // must not desynchronise the protocol (the call completes, the error is reported after it).
    const uint64_t* word = sigWord(k, sigWhich, m);
    dev::Deadline dl(k.timeoutNs);
    while (target > 0 && dev::ld_acquire_sys(word) < target) {
      if (dl.expired()) {
        record_error(k.status, EP_INTER_ERR_FAMILY, EP_DEVERR_TIMEOUT, m % EP_INTER_HT_CHANNELS, k.peerOfNode[m],
                     (long long)target);
        break;
      }
      if (k.status != nullptr && dev::ld_volatile(&k.status->kind) == EP_DEVERR_TIMEOUT) break;  // already failed
    }
  }
}

__global__ void packKernel(epInterK k, epInterPackArgs a) {
  const int N = k.N;
  const epInterRec r = a.rec;
  if (blockIdx.x == 0 && (int)threadIdx.x < N) {
    const int m = threadIdx.x;
    const long long hdr = m == k.myNode ? k.lay.hdrRecvOff + (long long)m * EP_INTER_HDR_BYTES
                                        : k.lay.hdrSendOff + (long long)m * EP_INTER_HDR_BYTES;
    *reinterpret_cast<int*>(k.win + hdr) = a.nodeCount[m];
  }
  for (int t = blockIdx.x; t < a.T; t += gridDim.x) {
    for (int m = 0; m < N; m++) {
      const int slot = a.nodeSlot[(size_t)t * N + m];
      if (slot < 0) continue;
      const long long area = m == k.myNode ? k.lay.dRecvOff + (long long)m * k.lay.dRegion
                                           : k.lay.dSendOff + (long long)m * k.lay.dRegion;
      char* rec = k.win + area + (long long)slot * r.bytes;
      if (r.xBytes > 0) blockCopy16(rec, a.x + (size_t)t * r.xBytes, r.xBytes);
      for (int c = threadIdx.x; c < r.scaleCols; c += blockDim.x)
        reinterpret_cast<int*>(rec + r.scaleOff)[c] =
            reinterpret_cast<const int*>(a.scales)[(size_t)t * a.sTok + (size_t)c * a.sCol];
      for (int j = threadIdx.x; j < r.K; j += blockDim.x) {
        reinterpret_cast<int*>(rec + r.idxOff)[j] =
            a.topk ? subExpert(k, loadId(a.topk, a.idx64, (size_t)t * r.K + j), m) : -1;
        reinterpret_cast<float*>(rec + r.wOff)[j] = a.weights ? a.weights[(size_t)t * r.K + j] : 0.f;
      }
      if (threadIdx.x == 0) *reinterpret_cast<int*>(rec + r.srcOff) = t;
    }
  }
}

__global__ void postKernel(epInterK k, long long sendOff, long long recvOff, long long region, int recBytes,
                           const int* counts, bool withHdr, int sigWhich) {
  const int m = threadIdx.x;
  if (m >= k.N || m == k.myNode) return;
  const int ch = m % EP_INTER_HT_CHANNELS, peer = k.peerOfNode[m];
  const uint64_t bytes = (uint64_t)counts[m] * (uint64_t)recBytes;
  const uint64_t src = (uint64_t)(sendOff + (long long)m * region);
  const uint64_t dst = (uint64_t)(recvOff + (long long)k.myNode * region);
  for (uint64_t off = 0; off < bytes; off += EP_INTER_PUT_CHUNK) {
    const uint32_t b = (uint32_t)min((uint64_t)EP_INTER_PUT_CHUNK, bytes - off);
    if (net::put(k.net, ch, peer, k.winId, dst + off, k.winId, src + off, b) != EP_NET_POST_OK) return;
  }
  const uint32_t slot = epInterSigSlot(k.lay, sigWhich, k.myNode);
  if (withHdr) {
    (void)net::put_signal(k.net, ch, peer, k.winId, k.lay.hdrRecvOff + (long long)k.myNode * EP_INTER_HDR_BYTES,
                          k.winId, k.lay.hdrSendOff + (long long)m * EP_INTER_HDR_BYTES, EP_INTER_HDR_BYTES, k.winId,
                          slot, 1);
  } else {
    (void)net::signal(k.net, ch, peer, k.winId, slot, 1);
  }
}

__global__ void ackKernel(epInterK k, int sigWhich) {
  const int m = threadIdx.x;
  if (m >= k.N || m == k.myNode) return;
  (void)net::signal(k.net, m % EP_INTER_HT_CHANNELS, k.peerOfNode[m], k.winId, epInterSigSlot(k.lay, sigWhich, k.myNode),
                    1);
}

__global__ void expandKernel(epInterK k, epInterExpandArgs a) {
  const epInterRec r = a.rec;
  const int N = k.N, G = k.G, Tcfg = k.Tcfg, K = r.K;
  const long long Tpad = (long long)N * Tcfg;
  __shared__ uint32_t hold;
  if (blockIdx.x == 0 && (int)threadIdx.x < N)
    a.fwdCount[threadIdx.x] = *reinterpret_cast<const int*>(k.win + k.lay.hdrRecvOff +
                                                             (long long)threadIdx.x * EP_INTER_HDR_BYTES);
  for (long long item = blockIdx.x; item < Tpad; item += gridDim.x) {
    const int s = (int)(item / Tcfg), slot = (int)(item % Tcfg);
    const int cnt = *reinterpret_cast<const int*>(k.win + k.lay.hdrRecvOff + (long long)s * EP_INTER_HDR_BYTES);
    if (slot >= cnt) continue;  // uniform per block
    const char* rec = k.win + k.lay.dRecvOff + (long long)s * k.lay.dRegion + (long long)slot * r.bytes;
    const int t = *reinterpret_cast<const int*>(rec + r.srcOff);
    if (t < 0 || t >= Tcfg || cnt > Tcfg) {
      if (threadIdx.x == 0) record_error(k.status, EP_INTER_ERR_FAMILY, EP_DEVERR_BAD_HANDLE, s, slot, t);
      continue;
    }
    const long long p = (long long)s * Tcfg + t;
    const int* ids = reinterpret_cast<const int*>(rec + r.idxOff);
    if (threadIdx.x == 0) {
      uint32_t h = 0;
      if (a.notifyPhase) {
        for (int j = 0; j < K; j++)
          if (ids[j] >= 0) h |= 1u << (ids[j] / k.L);
        a.fwdHold[p] = (uint8_t)h;
        a.fwdSrc[(long long)s * Tcfg + slot] = t;
      } else {
        h = a.fwdHold[p];
      }
      hold = h;
    }
    __syncthreads();
    const uint32_t h = hold;
    for (int j = 0; j < G; j++) {
      if (!((h >> j) & 1)) continue;
      const long long vp = (long long)j * Tpad + p;
      if (r.xBytes > 0) blockCopy16(a.fwdX + vp * r.xBytes, rec, r.xBytes);
      for (int c = threadIdx.x; c < r.scaleCols; c += blockDim.x)
        a.fwdScales[vp * r.scaleCols + c] = reinterpret_cast<const int*>(rec + r.scaleOff)[c];
      for (int q = threadIdx.x; q < K; q += blockDim.x) {
        const int id = ids[q];
        // Notify: the routing of virtual token (j, p). Dispatch: the ids for the outputs (if sent).
        a.fwdTopk[vp * K + q] = (a.notifyPhase || a.withIdx) && id >= j * k.L && id < (j + 1) * k.L ? id : -1;
        a.fwdW[vp * K + q] = reinterpret_cast<const float*>(rec + r.wOff)[q];
      }
    }
    __syncthreads();
  }
}

__global__ void rowMapKernel(epInterK k, const int* rankPrefix, const int* numRecv, const int* scrSrc, int* perm) {
  __shared__ int cnt[8][EP_INTER_MAX_NODES], base[8][EP_INTER_MAX_NODES], first[8][EP_INTER_MAX_NODES];
  __shared__ int rp[9];
  const int tid = threadIdx.x, G = k.G, N = k.N;
  const long long Tpad = (long long)N * k.Tcfg;
  for (int i = tid; i < 8 * EP_INTER_MAX_NODES; i += blockDim.x) (&cnt[0][0])[i] = 0;
  if (tid <= G) rp[tid] = rankPrefix[tid];
  __syncthreads();
  const int n = *numRecv;
  auto fwdOf = [&](int i) {
    int j = 0;
    while (j + 1 < G && i >= rp[j + 1]) j++;
    return j;
  };
  for (int i = tid; i < n; i += blockDim.x) {
    const int s = (int)((scrSrc[i] % Tpad) / k.Tcfg);
    atomicAdd(&cnt[fwdOf(i)][s], 1);
  }
  __syncthreads();
  if (tid == 0) {
    int acc = 0;
    for (int r = 0; r < k.R; r++) {
      const int nl = k.rankNL[r], s = nl >> 16, j = nl & 0xffff;
      base[j][s] = acc;
      acc += cnt[j][s];
    }
    for (int j = 0; j < G; j++) {
      int f = rp[j];
      for (int s = 0; s < N; s++) {
        first[j][s] = f;
        f += cnt[j][s];
      }
    }
  }
  __syncthreads();
  for (int i = tid; i < n; i += blockDim.x) {
    const int j = fwdOf(i);
    const int s = (int)((scrSrc[i] % Tpad) / k.Tcfg);
    perm[i] = base[j][s] + (i - first[j][s]);
  }
}

__global__ void permuteOutKernel(epInterK k, epInterPermArgs a) {
  const int n = *a.numRecv;
  const long long Tpad = (long long)k.N * k.Tcfg;
  if (blockIdx.x == 0 && threadIdx.x == 0 && n > a.capacity)
    record_error(k.status, EP_INTER_ERR_FAMILY, EP_DEVERR_CAPACITY_OVERFLOW, a.capacity, 0, n);
  for (int i = blockIdx.x; i < n; i += gridDim.x) {
    const int d = a.perm[i];
    if (d < 0 || d >= a.capacity) continue;
    blockCopy16(a.recvX + (size_t)d * a.xBytes, a.scrX + (size_t)i * a.xBytes, a.xBytes);
    for (int c = threadIdx.x; c < a.scaleCols; c += blockDim.x)
      a.recvScales[(size_t)d * a.scaleCols + c] = a.scrScales[(size_t)i * a.scaleCols + c];
    for (int q = threadIdx.x; q < a.K; q += blockDim.x) {
      if (a.recvTopk) a.recvTopk[(size_t)d * a.K + q] = a.scrTopk[(size_t)i * a.K + q];
      if (a.recvW) a.recvW[(size_t)d * a.K + q] = a.scrW[(size_t)i * a.K + q];
    }
    if (a.recvSrc && threadIdx.x == 0) a.recvSrc[d] = (int)((a.scrSrc[i] % Tpad) % k.Tcfg);
  }
}

__global__ void permuteInKernel(const int* numRecv, const int* perm, const char* x, const float* w, int rowBytes,
                                int K, char* scrX, float* scrW) {
  const int n = *numRecv;
  for (int i = blockIdx.x; i < n; i += gridDim.x) {
    const int d = perm[i];
    blockCopy16(scrX + (size_t)i * rowBytes, x + (size_t)d * rowBytes, rowBytes);
    if (w)
      for (int q = threadIdx.x; q < K; q += blockDim.x) scrW[(size_t)i * K + q] = w[(size_t)d * K + q];
  }
}

__global__ void gatherKernel(epInterK k, const int* fwdCount, const int* fwdSrc, const uint8_t* fwdHold,
                             const __nv_bfloat16* fwdOut, const float* fwdOutW, int H, int K, epInterRec crec) {
  const int N = k.N, G = k.G, Tcfg = k.Tcfg;
  const long long Tpad = (long long)N * Tcfg;
  for (long long item = blockIdx.x; item < Tpad; item += gridDim.x) {
    const int s = (int)(item / Tcfg), slot = (int)(item % Tcfg);
    if (slot >= fwdCount[s]) continue;
    const int t = fwdSrc[item];
    const long long p = (long long)s * Tcfg + t;
    const uint32_t h = fwdHold[p];
    const long long area = s == k.myNode ? k.lay.cRecvOff + (long long)s * k.lay.cRegion
                                         : k.lay.cSendOff + (long long)s * k.lay.cRegion;
    float* rec = reinterpret_cast<float*>(k.win + area + (long long)slot * crec.bytes);
    for (int c = threadIdx.x; c < H / 8; c += blockDim.x) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int j = 0; j < G; j++) {  // fixed order: deterministic sums
        if (!((h >> j) & 1)) continue;
        const int4 v = reinterpret_cast<const int4*>(fwdOut + ((long long)j * Tpad + p) * H)[c];
        const __nv_bfloat16* b = reinterpret_cast<const __nv_bfloat16*>(&v);
        for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(b[e]);
      }
      float4* o = reinterpret_cast<float4*>(rec + c * 8);
      o[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      o[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
    }
    if (fwdOutW) {
      for (int q = threadIdx.x; q < K; q += blockDim.x) {
        float acc = 0.f;
        for (int j = 0; j < G; j++)
          if ((h >> j) & 1) acc += fwdOutW[((long long)j * Tpad + p) * K + q];
        rec[crec.wOff / 4 + q] = acc;
      }
    }
  }
}

__global__ void reduceKernel(epInterK k, const int* nodeSlot, int T, int H, int K, epInterRec crec,
                             const __nv_bfloat16* bias0, const __nv_bfloat16* bias1, __nv_bfloat16* out, float* outW) {
  const int N = k.N;
  for (int t = blockIdx.x; t < T; t += gridDim.x) {
    for (int c = threadIdx.x; c < H / 8; c += blockDim.x) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int m = 0; m < N; m++) {  // node order: deterministic
        const int slot = nodeSlot[(size_t)t * N + m];
        if (slot < 0) continue;
        const float4* r = reinterpret_cast<const float4*>(k.win + k.lay.cRecvOff + (long long)m * k.lay.cRegion +
                                                          (long long)slot * crec.bytes) + c * 2;
        const float4 a0 = r[0], a1 = r[1];
        acc[0] += a0.x; acc[1] += a0.y; acc[2] += a0.z; acc[3] += a0.w;
        acc[4] += a1.x; acc[5] += a1.y; acc[6] += a1.z; acc[7] += a1.w;
      }
      for (const __nv_bfloat16* bias : {bias0, bias1}) {
        if (!bias) continue;
        const int4 v = reinterpret_cast<const int4*>(bias + (size_t)t * H)[c];
        const __nv_bfloat16* b = reinterpret_cast<const __nv_bfloat16*>(&v);
        for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(b[e]);
      }
      int4 o;
      __nv_bfloat16* ob = reinterpret_cast<__nv_bfloat16*>(&o);
      for (int e = 0; e < 8; e++) ob[e] = __float2bfloat16_rn(acc[e]);
      reinterpret_cast<int4*>(out + (size_t)t * H)[c] = o;
    }
    if (outW) {
      for (int q = threadIdx.x; q < K; q += blockDim.x) {
        float acc = 0.f;
        for (int m = 0; m < N; m++) {
          const int slot = nodeSlot[(size_t)t * N + m];
          if (slot < 0) continue;
          acc += reinterpret_cast<const float*>(k.win + k.lay.cRecvOff + (long long)m * k.lay.cRegion +
                                                (long long)slot * crec.bytes + crec.wOff)[q];
        }
        outW[(size_t)t * K + q] = acc;
      }
    }
  }
}

int gridFor(long long items) { return (int)(items < 1 ? 1 : items < 1024 ? items : 1024); }

}  // namespace
}  // namespace inter
}  // namespace ep

using namespace ep::inter;

cudaError_t epInterPreloadKernels() {
  // Lazy module loading would load each kernel at its first launch, possibly while a wait kernel of
  // this rank spins on a peer's signal; load them all up front (as the emulated backend does).
  const void* fns[] = {(const void*)nodeLayoutKernel, (const void*)waitKernel,      (const void*)packKernel,
                       (const void*)postKernel,       (const void*)ackKernel,       (const void*)expandKernel,
                       (const void*)rowMapKernel,     (const void*)permuteOutKernel, (const void*)permuteInKernel,
                       (const void*)gatherKernel,     (const void*)reduceKernel};
  for (const void* f : fns) {
    cudaFuncAttributes a;
    cudaError_t e = cudaFuncGetAttributes(&a, f);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t epInterLaunchNodeLayout(const epInterK& k, const void* topk, bool idx64, int T, int K, int E, int limit,
                                    int* nodeSlot, int* nodeCount, cudaStream_t s) {
  nodeLayoutKernel<<<1, 1024, 0, s>>>(k, topk, idx64, T, K, E, limit, nodeSlot, nodeCount);
  return cudaGetLastError();
}

cudaError_t epInterLaunchWait(const epInterK& k, int which, bool incr, int sigWhich, int offset, cudaStream_t s) {
  waitKernel<<<1, EP_INTER_MAX_NODES, 0, s>>>(k, which, incr, sigWhich, offset);
  return cudaGetLastError();
}

cudaError_t epInterLaunchPack(const epInterK& k, const epInterPackArgs& a, cudaStream_t s) {
  packKernel<<<gridFor(a.T), 256, 0, s>>>(k, a);
  return cudaGetLastError();
}

cudaError_t epInterLaunchPost(const epInterK& k, long long sendOff, long long recvOff, long long region, int recBytes,
                              const int* counts, bool withHdr, int sigWhich, cudaStream_t s) {
  postKernel<<<1, EP_INTER_MAX_NODES, 0, s>>>(k, sendOff, recvOff, region, recBytes, counts, withHdr, sigWhich);
  return cudaGetLastError();
}

cudaError_t epInterLaunchAck(const epInterK& k, int sigWhich, cudaStream_t s) {
  ackKernel<<<1, EP_INTER_MAX_NODES, 0, s>>>(k, sigWhich);
  return cudaGetLastError();
}

cudaError_t epInterLaunchExpand(const epInterK& k, const epInterExpandArgs& a, cudaStream_t s) {
  expandKernel<<<gridFor((long long)k.N * k.Tcfg), 256, 0, s>>>(k, a);
  return cudaGetLastError();
}

cudaError_t epInterLaunchRowMap(const epInterK& k, const int* rankPrefix, const int* numRecv, const int* scrSrc,
                                int* perm, cudaStream_t s) {
  rowMapKernel<<<1, 1024, 0, s>>>(k, rankPrefix, numRecv, scrSrc, perm);
  return cudaGetLastError();
}

cudaError_t epInterLaunchPermuteOut(const epInterK& k, const epInterPermArgs& a, cudaStream_t s) {
  permuteOutKernel<<<gridFor((long long)k.R * k.Tcfg), 256, 0, s>>>(k, a);
  return cudaGetLastError();
}

cudaError_t epInterLaunchPermuteIn(const epInterK& k, const int* numRecv, const int* perm, const char* x,
                                   const float* w, int rowBytes, int K, char* scrX, float* scrW, cudaStream_t s) {
  permuteInKernel<<<gridFor((long long)k.R * k.Tcfg), 256, 0, s>>>(numRecv, perm, x, w, rowBytes, K, scrX, scrW);
  return cudaGetLastError();
}

cudaError_t epInterLaunchGather(const epInterK& k, const int* fwdCount, const int* fwdSrc, const uint8_t* fwdHold,
                                const char* fwdOut, const float* fwdOutW, int H, int K, epInterRec crec,
                                cudaStream_t s) {
  gatherKernel<<<gridFor((long long)k.N * k.Tcfg), 256, 0, s>>>(
      k, fwdCount, fwdSrc, fwdHold, reinterpret_cast<const __nv_bfloat16*>(fwdOut), fwdOutW, H, K, crec);
  return cudaGetLastError();
}

cudaError_t epInterLaunchReduce(const epInterK& k, const int* nodeSlot, int T, int H, int K, epInterRec crec,
                                const void* bias0, const void* bias1, void* out, float* outW, cudaStream_t s) {
  reduceKernel<<<gridFor(T), 256, 0, s>>>(k, nodeSlot, T, H, K, crec, static_cast<const __nv_bfloat16*>(bias0),
                                          static_cast<const __nv_bfloat16*>(bias1),
                                          static_cast<__nv_bfloat16*>(out), outW);
  return cudaGetLastError();
}
