/*************************************************************************
 * epcomm: HT internode (v1) kernels, launched by inter_ht.cc.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every launch runs on the caller's stream; none synchronises with the host.
 * Cross-rank waits poll 64-bit signal words in this rank's window (written
 * by peers through the proxy, RDMA-ordered after their data), bounded by
 * EP_TIMEOUT_MS and recorded as EP_DEVERR_TIMEOUT (family 3) in the comm's
 * device status. Phase counters live on the device (graph replays advance
 * them), identical on every rank because HT calls are collective.
 *************************************************************************/
#ifndef EP_INTERNODE_INTER_KERNELS_H_
#define EP_INTERNODE_INTER_KERNELS_H_

#include <cstdint>

#include <cuda_runtime_api.h>

#include "device/status.h"
#include "internode/inter_plan.h"
#include "transports/proxy/net_device.h"

/* What every internode kernel gets (by value). */
struct epInterK {
  char* win;                 /* this rank's window */
  epInterBufLayout lay;
  epNetDevice net;
  int winId;
  int N, G, R, myNode, myLocal, Tcfg, L;
  int peerOfNode[EP_INTER_MAX_NODES]; /* rank (node m, my local rank): my RDMA peer on node m */
  const int* rankNL;         /* device [R]: node << 16 | local */
  unsigned long long* seq;   /* device [2]: dispatch / combine phase counters */
  epDeviceStatus* status;
  unsigned long long timeoutNs;
};

/* Family tag of internode errors in epDeviceStatus. */
#define EP_INTER_ERR_FAMILY 3

/* Loads every internode kernel now (no lazy loading while a wait kernel spins). */
cudaError_t epInterPreloadKernels();
/* Per-node layout: nodeSlot [T x N], nodeCount [N]; bad ids and the node limit reported. */
cudaError_t epInterLaunchNodeLayout(const epInterK& k, const void* topk, bool idx64, int T, int K, int E, int limit,
                                    int* nodeSlot, int* nodeCount, cudaStream_t s);
/* Phase start (incr) or data wait: waits word `sigWhich` of every other node >= counter[which] - offset. */
cudaError_t epInterLaunchWait(const epInterK& k, int which, bool incr, int sigWhich, int offset, cudaStream_t s);
/* Dispatch pack: records of every token for every node it touches (own node straight into the receive area). */
struct epInterPackArgs {
  const char* x;
  const char* scales;
  long long sTok, sCol; /* scale strides in 4-byte words */
  const void* topk;
  bool idx64;
  const float* weights;
  int T;
  const int* nodeSlot;
  const int* nodeCount;
  epInterRec rec;
};
cudaError_t epInterLaunchPack(const epInterK& k, const epInterPackArgs& a, cudaStream_t s);
/* Posts, for every other node m: counts[m] records of `recBytes` from my send region m to its
 * receive region [myNode], then (withHdr) my header slot m, then signal sigWhich[myNode] += 1. */
cudaError_t epInterLaunchPost(const epInterK& k, long long sendOff, long long recvOff, long long region, int recBytes,
                              const int* counts, bool withHdr, int sigWhich, cudaStream_t s);
/* Signals word sigWhich[myNode] += 1 at every other node's peer. */
cudaError_t epInterLaunchAck(const epInterK& k, int sigWhich, cudaStream_t s);
/* Forwarder: received records -> virtual tokens (x copied for holders only). fwdTopk must be -1 before. */
struct epInterExpandArgs {
  epInterRec rec;
  bool notifyPhase;  /* compute and store the holder masks (else read them) */
  bool withIdx;      /* records carry top-k ids for the outputs */
  char* fwdX;
  int* fwdScales;
  int* fwdTopk;
  float* fwdW;
  int* fwdCount;     /* handle [N] */
  int* fwdSrc;       /* handle [N x Tcfg] */
  uint8_t* fwdHold;  /* handle [N x Tcfg] holder mask per padded token */
};
cudaError_t epInterLaunchExpand(const epInterK& k, const epInterExpandArgs& a, cudaStream_t s);
/* Row order map of the receiver (source rank, then source token). */
cudaError_t epInterLaunchRowMap(const epInterK& k, const int* rankPrefix, const int* numRecv, const int* scrSrc,
                                int* perm, cudaStream_t s);
struct epInterPermArgs {
  const int* numRecv;
  const int* perm;
  const char* scrX;
  const int* scrScales;
  const int* scrTopk;
  const float* scrW;
  const int* scrSrc;
  int xBytes, scaleCols, K;
  char* recvX;
  int* recvScales;
  int32_t* recvTopk;
  float* recvW;
  int32_t* recvSrc;
  int capacity;
};
cudaError_t epInterLaunchPermuteOut(const epInterK& k, const epInterPermArgs& a, cudaStream_t s);
/* Combine input in the user's order -> intranode order. */
cudaError_t epInterLaunchPermuteIn(const epInterK& k, const int* numRecv, const int* perm, const char* x,
                                   const float* w, int rowBytes, int K, char* scrX, float* scrW, cudaStream_t s);
/* Forwarder: fp32 sums of the holders' rows per received token -> combine records. */
cudaError_t epInterLaunchGather(const epInterK& k, const int* fwdCount, const int* fwdSrc, const uint8_t* fwdHold,
                                const char* fwdOut, const float* fwdOutW, int H, int K, epInterRec crec,
                                cudaStream_t s);
/* Origin: out[t] = sum over nodes of the partials (+ biases), weights likewise. */
cudaError_t epInterLaunchReduce(const epInterK& k, const int* nodeSlot, int T, int H, int K, epInterRec crec,
                                const void* bias0, const void* bias1, void* out, float* outW, cudaStream_t s);

#endif  // EP_INTERNODE_INTER_KERNELS_H_
