/*************************************************************************
 * epcomm: HT internode (v1) host side: the call sequences (see
 * docs/internode.md) around the verified intranode entry points, which run
 * unchanged on the node comm.
 * SPDX-License-Identifier: Apache-2.0
 *
 * dispatch = node layout -> RDMA phase (pack, put once per node, forwarder
 *            expands into virtual tokens) -> intranode dispatch on the node
 *            comm into scratch -> reorder into the caller's buffers.
 * notify   = node layout -> RDMA phase without rows -> intranode notify.
 * combine  = reorder the caller's rows -> intranode combine (exact: one
 *            holder per virtual token) -> forwarder fp32 sums per token ->
 *            RDMA back -> origin sums nodes (+ biases), rounds once.
 *************************************************************************/
#include "internode/inter_api.h"

#include <algorithm>
#include <cstring>

#include <cuda_runtime.h>

#include "core/api.h"
#include "core/checks.h"
#include "core/comm.h"
#include "intranode/ht_args.h"
#include "intranode/ht_handle.h"
#include "internode/inter_kernels.h"

namespace {

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

epInterK makeK(epComm* comm, epInterState* s) {
  epInterK k;
  memset(&k, 0, sizeof(k));
  k.win = s->win;
  k.lay = s->lay;
  k.net = s->net;
  k.winId = s->winId;
  k.N = s->pl.nNodes;
  k.G = s->pl.G;
  k.R = s->pl.R;
  k.myNode = s->pl.myNode;
  k.myLocal = s->pl.myLocal;
  k.Tcfg = s->Tcfg;
  k.L = 1;
  for (int m = 0; m < k.N; m++) k.peerOfNode[m] = s->pl.nodeRank[(size_t)m * k.G + k.myLocal];
  k.rankNL = s->rankNL;
  k.seq = s->seq;
  k.status = comm->devStatusDev;
  k.timeoutNs = epCommWaitTimeoutNs(comm);
  return k;
}

/* An intranode call on the node comm failed: its message becomes the caller's. */
epResult_t fromNode(epComm* comm, epInterState* s, epResult_t r, const char* fn) {
  if (r != epSuccess) {
    EP_WARN("%s (internode, on the node comm of %d ranks): %s", fn, s->pl.G, s->node->lastError);
    snprintf(comm->lastError, sizeof(comm->lastError), "%.40s: %.900s", fn, s->node->lastError);
  }
  return r;
}

#define CUDALAUNCH(call)                                                         \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    if (e_ != cudaSuccess) {                                                   \
      EP_WARN("HT internode: launch failed: %s", cudaGetErrorString(e_));       \
      return epCudaError;                                                      \
    }                                                                          \
  } while (0)

/* Lazy module loading (the CUDA default) loads a kernel at its first launch,
 * and the driver holds its context lock while it waits for the device: the
 * proxy thread's copies and signal launches then block too. If an internode
 * wait of this rank spins on the stream at that moment, no rank's proxy moves
 * and every rank sits out EP_TIMEOUT_MS (seen on the first GPU run: the first
 * notify of every rank timed out, everything after it passed). The intranode
 * kernels that run on the node comm live in src/intranode and cannot be
 * preloaded from here, so before the first node-comm call of each kind this
 * rank drains its stream: nothing of ours spins while they load. Later calls
 * find them loaded. (Under graph capture the first call cannot be made anyway:
 * the buffers are allocated and registered on the first notify.) */
enum { EP_INTER_SETTLED_NOTIFY = 1u, EP_INTER_SETTLED_DISPATCH = 2u, EP_INTER_SETTLED_COMBINE = 4u };
epResult_t settleBeforeFirst(epInterState* s, unsigned bit, cudaStream_t stream) {
  if (s->settled & bit) return epSuccess;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  CUDACHECK(cudaStreamIsCapturing(stream, &cap));
  if (cap != cudaStreamCaptureStatusNone) return epSuccess;
  CUDACHECK(cudaStreamSynchronize(stream));
  s->settled |= bit;
  return epSuccess;
}

/* The RDMA phase of notify (withX = false) or dispatch (true). */
epResult_t rdmaPhase(epComm* comm, epInterState* s, epInterHandle* ih, const epDispatchInput_t* in,
                     const epHtRowShape& shape, int K, bool withX, bool withIdx, cudaStream_t stream) {
  epInterK k = makeK(comm, s);
  k.L = ih->numExperts / s->pl.R;
  const epInterRec rec = epInterDispatchRec(shape.xBytes, shape.scaleCols, K, withX);
  EP_USAGE_CHECK(rec.bytes <= s->lay.dRecMax, "HT internode: a %d-byte record exceeds the buffers' %d", rec.bytes,
                 s->lay.dRecMax);
  // 1. My previous records to each node were consumed: the staging areas are free.
  CUDALAUNCH(epInterLaunchWait(k, 0, /*incr=*/true, EP_INTER_SIG_DACK, 1, stream));
  epInterPackArgs pa;
  pa.x = withX ? static_cast<const char*>(in->x) : nullptr;
  pa.scales = withX ? static_cast<const char*>(in->xScales) : nullptr;
  pa.sTok = shape.sTok;
  pa.sCol = shape.sCol;
  pa.topk = withIdx ? in->topkIdx : nullptr;
  pa.idx64 = in->topkIdxType == epInt64;
  pa.weights = in->topkWeights;
  pa.T = in->numTokens;
  pa.nodeSlot = ih->nodeSlot;
  pa.nodeCount = ih->nodeCount;
  pa.rec = rec;
  CUDALAUNCH(epInterLaunchPack(k, pa, stream));
  CUDALAUNCH(epInterLaunchPost(k, s->lay.dSendOff, s->lay.dRecvOff, s->lay.dRegion, rec.bytes, ih->nodeCount,
                               /*withHdr=*/true, EP_INTER_SIG_DDATA, stream));
  // 2. Forwarder: every source node's records of this phase have landed.
  CUDALAUNCH(epInterLaunchWait(k, 0, /*incr=*/false, EP_INTER_SIG_DDATA, 0, stream));
  const size_t Tvirt = (size_t)s->pl.G * s->pl.nNodes * s->Tcfg;
  if (K > 0) CUDACHECK(cudaMemsetAsync(s->fwdTopk, 0xff, Tvirt * K * sizeof(int), stream));
  epInterExpandArgs ea;
  ea.rec = rec;
  ea.notifyPhase = !withX;
  ea.withIdx = withIdx;
  ea.fwdX = s->fwdX;
  ea.fwdScales = s->fwdScales;
  ea.fwdTopk = s->fwdTopk;
  ea.fwdW = s->fwdW;
  ea.fwdCount = ih->fwdCount;
  ea.fwdSrc = ih->fwdSrc;
  ea.fwdHold = ih->fwdHold;
  CUDALAUNCH(epInterLaunchExpand(k, ea, stream));
  CUDALAUNCH(epInterLaunchAck(k, EP_INTER_SIG_DACK, stream));
  return epSuccess;
}

/* The node comm's dispatch input over the virtual tokens. */
epDispatchInput_t nodeInput(const epDispatchInput_t* in, epInterState* s, const epInterHandle* ih, bool withIdx,
                            bool withW, int K) {
  epDispatchInput_t n = EP_DISPATCH_INPUT_INITIALIZER;
  n.x = s->fwdX;
  n.xType = in->xType;
  n.xScales = in->xType == epFloat8E4M3 ? s->fwdScales : nullptr;
  n.scaleFormat = in->scaleFormat;
  n.numTokens = s->pl.G * s->pl.nNodes * s->Tcfg;
  n.hidden = in->hidden;
  n.topkIdx = withIdx ? s->fwdTopk : nullptr;
  n.topkIdxType = epInt32;
  n.topkWeights = withW ? s->fwdW : nullptr;
  n.numTopk = K;
  n.numExperts = s->pl.G * (ih->numExperts / s->pl.R);
  n.expertAlignment = in->expertAlignment;
  n.numSms = in->numSms;
  return n;
}

epResult_t interOf(epComm* comm, epHtHandle_t handle, const char* fn, epInterState** s, epInterHandle** ih) {
  EPCHECK(epHtHandleCheck(comm, handle, fn));
  EP_USAGE_CHECK(handle->inter != nullptr, "%s: the handle was created for single-node HT; create it again", fn);
  *ih = handle->inter;
  EPCHECK(epInterCommGet(comm, s));
  return epSuccess;
}

}  // namespace

epResult_t epInterHandleCreate(epComm* comm, int maxTokens, epHtHandle_t* handle) {
  EP_ARG_CHECK(maxTokens >= 1, "epHtHandleCreate: maxTokens must be >= 1 (got %d)", maxTokens);
  EP_ARG_CHECK(maxTokens <= comm->config.htMaxTokensPerRank,
               "epHtHandleCreate: maxTokens %d exceeds the configured maximum %d (htMaxTokensPerRank / "
               "EP_HT_MAX_TOKENS)",
               maxTokens, comm->config.htMaxTokensPerRank);
  epInterState* s = nullptr;
  EPCHECK(epInterCommGet(comm, &s));
  const int N = s->pl.nNodes, R = s->pl.R, Tcfg = s->Tcfg;
  epHtHandle* h = new epHtHandle();
  h->commHash = comm->commHash;
  h->nranks = comm->nranks;
  h->rank = comm->rank;
  h->cudaDev = comm->cudaDev;
  h->maxTokens = maxTokens;
  epInterHandle* ih = new epInterHandle();
  h->inter = ih;
  ih->maxTokens = maxTokens;
  epResult_t res = fromNode(comm, s, epHtHandleCreate(s->node, s->pl.G * N * Tcfg, &ih->sub), "epHtHandleCreate");
  if (res != epSuccess) {
    epInterHandleFree(ih);
    h->magic = 0;
    delete h;
    return res;
  }
  size_t sizes[6] = {(size_t)maxTokens * N * 4, (size_t)N * 4, (size_t)N * 4, (size_t)N * Tcfg * 4,
                     (size_t)N * Tcfg, (size_t)R * Tcfg * 4};
  size_t off[6], total = 0;
  for (int i = 0; i < 6; i++) {
    off[i] = total;
    total += alignUp(sizes[i], 256);
  }
  char* base = nullptr;
  CUDACHECKGOTO(cudaSetDevice(comm->cudaDev), res, fail);
  CUDACHECKGOTO(cudaMalloc(&ih->devMem, total), res, fail);
  CUDACHECKGOTO(cudaMemset(ih->devMem, 0, total), res, fail);
  base = static_cast<char*>(ih->devMem);
  ih->nodeSlot = reinterpret_cast<int*>(base + off[0]);
  ih->nodeCount = reinterpret_cast<int*>(base + off[1]);
  ih->fwdCount = reinterpret_cast<int*>(base + off[2]);
  ih->fwdSrc = reinterpret_cast<int*>(base + off[3]);
  ih->fwdHold = reinterpret_cast<uint8_t*>(base + off[4]);
  ih->perm = reinterpret_cast<int*>(base + off[5]);
  EP_INFO(EP_LOG_HT | EP_LOG_ALLOC, "HT internode handle: %zu device bytes for %d tokens (+ node handle)", total,
          maxTokens);
  *handle = h;
  return epSuccess;
fail:
  epInterHandleFree(ih);
  h->inter = nullptr;
  h->magic = 0;
  delete h;
  return res;
}

void epInterHandleFree(epInterHandle* ih) {
  if (ih == nullptr) return;
  if (ih->sub) (void)epHtHandleDestroy(ih->sub);
  if (ih->devMem) (void)cudaFree(ih->devMem);
  delete ih;
}

epResult_t epInterDispatchNotify(epComm* comm, const epDispatchInput_t* in, epHtHandle_t handle, int* numRecvTokens,
                                 int* recvCountPerExpert, cudaStream_t stream) {
  const char* fn = "epDispatchNotify";
  epInterState* s = nullptr;
  epInterHandle* ih = nullptr;
  EPCHECK(interOf(comm, handle, fn, &s, &ih));
  epHtRowShape shape;
  EPCHECK(epHtCheckDispatchInput(comm, in, handle, /*needRouting=*/true, fn, &shape));
  EP_ARG_CHECK((numRecvTokens == nullptr) == (recvCountPerExpert == nullptr),
               "%s: numRecvTokens and recvCountPerExpert must both be set (mode a) or both NULL (mode b)", fn);
  EP_ARG_CHECK(in->numTokens == 0 || in->topkIdx != nullptr,
               "%s: internode HT derives the per-node layout from topkIdx (isTokenInRank alone is not enough)", fn);
  const int K = in->numTopk;
  EPCHECK(epInterBuffersGet(comm, in->hidden, in->numSms, &s));
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  ih->numTokens = in->numTokens;
  ih->numTopk = K;
  ih->numExperts = in->numExperts;
  ih->dispatched = false;
  epInterK k = makeK(comm, s);
  k.L = in->numExperts / comm->nranks;
  if (in->numTokens > 0)
    CUDALAUNCH(epInterLaunchNodeLayout(k, in->topkIdx, in->topkIdxType == epInt64, in->numTokens, K, in->numExperts,
                                       epInterNodeLimit(), ih->nodeSlot, ih->nodeCount, stream));
  else
    CUDACHECK(cudaMemsetAsync(ih->nodeCount, 0, sizeof(int) * s->pl.nNodes, stream));
  EPCHECK(rdmaPhase(comm, s, ih, in, shape, K, /*withX=*/false, /*withIdx=*/true, stream));
  epDispatchInput_t nin = nodeInput(in, s, ih, /*withIdx=*/true, /*withW=*/false, K);
  EPCHECK(settleBeforeFirst(s, EP_INTER_SETTLED_NOTIFY, stream));
  EPCHECK(fromNode(comm, s, epDispatchNotify(s->node, &nin, ih->sub, numRecvTokens, recvCountPerExpert, stream), fn));
  handle->notified = true;
  handle->numTokens = in->numTokens;
  handle->numChannels = ih->sub->numChannels;
  handle->numExperts = in->numExperts;
  handle->numTopk = K;
  handle->hostNumRecv = ih->sub->hostNumRecv;
  return epSuccess;
}

epResult_t epInterDispatch(epComm* comm, const epDispatchInput_t* in, const epDispatchOutput_t* out,
                           epHtHandle_t handle, cudaStream_t stream) {
  const char* fn = "epDispatch";
  epInterState* s = nullptr;
  epInterHandle* ih = nullptr;
  EPCHECK(interOf(comm, handle, fn, &s, &ih));
  epHtRowShape shape;
  EPCHECK(epHtCheckDispatchInput(comm, in, handle, /*needRouting=*/false, fn, &shape));
  EP_DESC_CHECK(out, epDispatchOutput_t, EP_DISPATCH_OUTPUT_INITIALIZER, fn);
  EP_USAGE_CHECK(handle->notified, "%s: the handle has no layout yet: call epDispatchNotify first", fn);
  EP_USAGE_CHECK(in->numTokens == handle->numTokens,
                 "%s: numTokens %d differs from the notify's %d (cached dispatch needs the same routing)", fn,
                 in->numTokens, handle->numTokens);
  EP_ARG_CHECK(out->capacity >= 0, "%s: capacity %d < 0", fn, out->capacity);
  EP_ARG_CHECK(out->capacity == 0 || out->recvX != nullptr, "%s: recvX is NULL", fn);
  EP_ARG_CHECK((reinterpret_cast<uintptr_t>(out->recvX) & 15) == 0, "%s: recvX must be 16-byte aligned", fn);
  EP_ARG_CHECK(shape.scaleCols == 0 || out->capacity == 0 || out->recvXScales != nullptr,
               "%s: FP8 rows need recvXScales", fn);
  EP_ARG_CHECK(out->recvTopkIdx == nullptr || in->topkIdx != nullptr, "%s: recvTopkIdx requested but topkIdx is NULL",
               fn);
  EP_ARG_CHECK(out->recvTopkWeights == nullptr || in->topkWeights != nullptr,
               "%s: recvTopkWeights requested but topkWeights is NULL", fn);
  if (in->topkIdx != nullptr) {
    EP_USAGE_CHECK(in->numExperts == handle->numExperts, "%s: numExperts %d differs from the notify's %d", fn,
                   in->numExperts, handle->numExperts);
  }
  EPCHECK(epInterBuffersGet(comm, in->hidden, in->numSms, &s));
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  const bool withIdx = in->topkIdx != nullptr, withW = in->topkWeights != nullptr;
  const int K = (withIdx || withW) ? in->numTopk : 0;
  EP_USAGE_CHECK(K == 0 || K == ih->numTopk, "%s: numTopk %d differs from the notify's %d", fn, K, ih->numTopk);
  EPCHECK(rdmaPhase(comm, s, ih, in, shape, K, /*withX=*/true, withIdx, stream));
  epDispatchInput_t nin = nodeInput(in, s, ih, withIdx, withW, K);
  const int Trecv = s->pl.R * s->Tcfg;
  epDispatchOutput_t nout = EP_DISPATCH_OUTPUT_INITIALIZER;
  nout.recvX = s->scrX;
  nout.recvXScales = shape.scaleCols > 0 ? s->scrScales : nullptr;
  nout.recvTopkIdx = out->recvTopkIdx ? s->scrTopk : nullptr;
  nout.recvTopkWeights = out->recvTopkWeights ? s->scrW : nullptr;
  nout.recvSrcIdx = s->scrSrc;
  nout.recvCountPerExpert = out->recvCountPerExpert;
  nout.numRecvTokens = out->numRecvTokens;
  nout.capacity = Trecv;
  EPCHECK(settleBeforeFirst(s, EP_INTER_SETTLED_DISPATCH, stream));
  EPCHECK(fromNode(comm, s, epDispatch(s->node, &nin, &nout, ih->sub, stream), fn));
  epInterK k = makeK(comm, s);
  k.L = handle->numExperts / comm->nranks;
  CUDALAUNCH(epInterLaunchRowMap(k, ih->sub->dev.rankPrefix, ih->sub->dev.numRecv, s->scrSrc, ih->perm, stream));
  epInterPermArgs pa;
  pa.numRecv = ih->sub->dev.numRecv;
  pa.perm = ih->perm;
  pa.scrX = s->scrX;
  pa.scrScales = s->scrScales;
  pa.scrTopk = s->scrTopk;
  pa.scrW = s->scrW;
  pa.scrSrc = s->scrSrc;
  pa.xBytes = shape.xBytes;
  pa.scaleCols = shape.scaleCols;
  pa.K = K;
  pa.recvX = static_cast<char*>(out->recvX);
  pa.recvScales = static_cast<int*>(out->recvXScales);
  pa.recvTopk = out->recvTopkIdx;
  pa.recvW = out->recvTopkWeights;
  pa.recvSrc = out->recvSrcIdx;
  pa.capacity = out->capacity;
  CUDALAUNCH(epInterLaunchPermuteOut(k, pa, stream));
  ih->dispatched = true;
  return epSuccess;
}

epResult_t epInterCombine(epComm* comm, const epCombineInput_t* in, const epCombineOutput_t* out, epHtHandle_t handle,
                          cudaStream_t stream) {
  const char* fn = "epCombine";
  epInterState* s = nullptr;
  epInterHandle* ih = nullptr;
  EPCHECK(interOf(comm, handle, fn, &s, &ih));
  EP_DESC_CHECK(in, epCombineInput_t, EP_COMBINE_INPUT_INITIALIZER, fn);
  EP_DESC_CHECK(out, epCombineOutput_t, EP_COMBINE_OUTPUT_INITIALIZER, fn);
  EP_USAGE_CHECK(handle->notified && ih->dispatched, "%s: the handle has no layout: dispatch with it first", fn);
  EP_ARG_CHECK(in->hidden > 0 && in->hidden % 8 == 0, "%s: hidden %d must be a positive multiple of 8", fn,
               in->hidden);
  const int T = handle->numTokens;
  EP_ARG_CHECK(T == 0 || out->out != nullptr, "%s: out is NULL", fn);
  EP_ARG_CHECK(in->x != nullptr || handle->hostNumRecv == 0 || ih->sub->hostNumRecv == 0 || T == 0,
               "%s: x is NULL (allowed only when this rank received no rows)", fn);
  auto a16 = [](const void* q) { return (reinterpret_cast<uintptr_t>(q) & 15) == 0; };
  EP_ARG_CHECK(a16(in->x) && a16(out->out) && a16(in->bias0) && a16(in->bias1) && a16(in->topkWeights),
               "%s: x, out, biases and topkWeights must be 16-byte aligned", fn);
  EP_ARG_CHECK(in->numSms >= 0, "%s: numSms %d < 0", fn, in->numSms);
  int K = 0;
  if (in->topkWeights != nullptr || out->outTopkWeights != nullptr) {
    EP_ARG_CHECK(in->topkWeights != nullptr && out->outTopkWeights != nullptr,
                 "%s: topkWeights and outTopkWeights go together", fn);
    K = handle->numTopk;
    EP_USAGE_CHECK(K >= 1, "%s: weights given but the handle's dispatch had no top-k", fn);
  }
  EPCHECK(epInterBuffersGet(comm, in->hidden, in->numSms, &s));
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  epInterK k = makeK(comm, s);
  k.L = handle->numExperts / comm->nranks;
  const int H = in->hidden;
  if (in->x != nullptr)
    CUDALAUNCH(epInterLaunchPermuteIn(k, ih->sub->dev.numRecv, ih->perm, static_cast<const char*>(in->x),
                                      K ? in->topkWeights : nullptr, H * 2, K, s->scrX, s->scrW, stream));
  epCombineInput_t nin = EP_COMBINE_INPUT_INITIALIZER;
  nin.x = s->scrX;
  nin.topkWeights = K ? s->scrW : nullptr;
  nin.hidden = H;
  nin.numSms = in->numSms;
  epCombineOutput_t nout = EP_COMBINE_OUTPUT_INITIALIZER;
  nout.out = s->fwdOut;
  nout.outTopkWeights = K ? s->fwdOutW : nullptr;
  EPCHECK(settleBeforeFirst(s, EP_INTER_SETTLED_COMBINE, stream));
  EPCHECK(fromNode(comm, s, epCombine(s->node, &nin, &nout, ih->sub, stream), fn));
  const epInterRec crec = epInterCombineRec(H, K);
  EP_USAGE_CHECK(crec.bytes <= s->lay.cRecMax, "%s: a %d-byte combine record exceeds the buffers' %d", fn, crec.bytes,
                 s->lay.cRecMax);
  // The origins consumed my previous partial sums: the combine areas are free.
  CUDALAUNCH(epInterLaunchWait(k, 1, /*incr=*/true, EP_INTER_SIG_CACK, 1, stream));
  CUDALAUNCH(epInterLaunchGather(k, ih->fwdCount, ih->fwdSrc, ih->fwdHold, s->fwdOut, K ? s->fwdOutW : nullptr, H, K,
                                 crec, stream));
  CUDALAUNCH(epInterLaunchPost(k, s->lay.cSendOff, s->lay.cRecvOff, s->lay.cRegion, crec.bytes, ih->fwdCount,
                               /*withHdr=*/false, EP_INTER_SIG_CDATA, stream));
  CUDALAUNCH(epInterLaunchWait(k, 1, /*incr=*/false, EP_INTER_SIG_CDATA, 0, stream));
  CUDALAUNCH(epInterLaunchReduce(k, ih->nodeSlot, T, H, K, crec, in->bias0, in->bias1, out->out,
                                 K ? out->outTopkWeights : nullptr, stream));
  CUDALAUNCH(epInterLaunchAck(k, EP_INTER_SIG_CACK, stream));
  return epSuccess;
}
