/*************************************************************************
 * epcomm: HT internode state (see inter_state.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "internode/inter_state.h"
#include "internode/inter_kernels.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>

#include <cuda_runtime.h>

#include "core/checks.h"
#include "core/comm.h"
#include "core/param.h"
#include "device/status.h"
#include "intranode/ht_state.h"
#include "intranode/ht_types.h"
#include "transports/nvlink/nvl_buffer.h"
#include "transports/proxy/net.h"

namespace {

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

// The re-size WARN once per process (returns 0 the first time).
int64_t growWarnedOnce() {
  static std::atomic<int> warned{0};
  return warned.exchange(1);
}

/* Carves device arrays out of one allocation, 256-byte aligned. */
struct Carver {
  size_t total = 0;
  std::vector<std::pair<void**, size_t>> parts;
  template <typename T>
  void add(T** p, size_t bytes) {
    parts.push_back({reinterpret_cast<void**>(p), bytes});
    total += alignUp(bytes, 256);
  }
  void assign(char* base) {
    size_t off = 0;
    for (auto& pr : parts) {
      *pr.first = base + off;
      off += alignUp(pr.second, 256);
    }
  }
};

}  // namespace

epComm* epInterNodeCommCreate(const epComm* comm, const epInterPlacement& pl, int Tcfg) {
  const int G = pl.G;
  epComm* n = new epComm();
  n->commHash = comm->commHash ^ (0x9e3779b97f4a7c15ull * (uint64_t)(pl.myNode + 1));
  n->rank = pl.myLocal;
  n->nranks = G;
  n->cudaDev = comm->cudaDev;
  n->node = 0;
  n->nNodes = 1;
  n->localRank = pl.myLocal;
  n->localRanks = G;
  n->rankNode.assign(G, 0);
  n->rankLocal.resize(G);
  std::iota(n->rankLocal.begin(), n->rankLocal.end(), 0);
  n->nodeRanks = n->rankLocal;
  n->nvlinkPeer.assign(G, 1);
  for (int j = 0; j < G; j++) {
    const int r = pl.nodeRank[(size_t)pl.myNode * G + j];
    n->rankCudaDev.push_back(comm->rankCudaDev.empty() ? -1 : comm->rankCudaDev[r]);
    n->rankHostHash.push_back(comm->rankHostHash.empty() ? 0 : comm->rankHostHash[r]);
    n->rankProc.push_back(comm->rankProc.empty() ? 0 : comm->rankProc[r]);
    n->rankBusId.push_back(comm->rankBusId.empty() ? std::string() : comm->rankBusId[r]);
  }
  n->config = comm->config;
  // The intranode calls run over the virtual token space of every node.
  n->config.htMaxTokensPerRank = G * pl.nNodes * Tcfg;
  n->bootstrap = nullptr;  // never used: the node comm's HT state is built by epInterBuffersGet
  n->topo = comm->topo;
  n->devStatus = comm->devStatus;
  n->devStatusDev = comm->devStatusDev;
  return n;
}

namespace {

void freeState(epComm* c) {
  epInterState* s = c->inter;
  if (s == nullptr) return;
  if (c->cudaDev >= 0) (void)cudaSetDevice(c->cudaDev);
  if (s->winId >= 0 && c->net && c->net->windows && c->net->windows->get(s->winId)) {
    // No barrier here (epCommInitAll destroys ranks one by one): destroy already synchronised the ranks.
    c->net->windows->retire(s->winId);
    (void)c->net->backend->deregisterWindow(s->winId);
  }
  if (s->win) (void)cudaFree(s->win);
  if (s->fwdX) (void)cudaFree(s->fwdX);  // one allocation holds every forwarder/scratch array
  if (s->seq) (void)cudaFree(s->seq);
  if (s->node) {
    epHtStateRelease(c, s->node->ht);  // its NVLink buffer came through the parent comm
    s->node->ht = nullptr;
    s->node->magic = 0;
    delete s->node;
  }
  c->deviceBytes -= s->devBytes;
  delete s;
  c->inter = nullptr;
}

/* The node comm's HT state: the intranode layout over G ranks, its NVLink
 * buffer allocated through the parent (only same-node peers get mapped). */
epResult_t buildNodeHt(epComm* comm, epInterState* s, int hidden, int numSms) {
  epComm* n = s->node;
  epHtState* st = new epHtState();
  epResult_t res = epSuccess;
  int maxChannels = std::max({comm->config.numSms, numSms, EP_HT_MIN_BUFFER_CHANNELS});
  maxChannels = std::min(maxChannels, EP_HT_MAX_CHANNELS);
  size_t bytes = (size_t)comm->config.nvlBufferBytes;
  CUDACHECKGOTO(cudaDeviceGetAttribute(&st->smemOptin, cudaDevAttrMaxSharedMemoryPerBlockOptin, comm->cudaDev), res,
                fail);
  CUDACHECKGOTO(cudaDeviceGetAttribute(&st->deviceSms, cudaDevAttrMultiProcessorCount, comm->cudaDev), res, fail);
  if (bytes == 0) {
    const int slot = epHtMaxSlotBytes(hidden, epBfloat16, EP_HT_MAX_TOPK);
    bytes = epHtHeaderBytes(s->pl.G, maxChannels) +
            (size_t)maxChannels * s->pl.G * alignUp((size_t)EP_HT_HINT_RING_SLOTS * slot, 128);
  }
  epHtLayoutCompute(s->pl.G, s->pl.myLocal, maxChannels, bytes, &st->lay);
  if (st->lay.ringBytes <= 0) {
    EP_WARN("HT internode: NVL buffer of %zu bytes is smaller than its %lld-byte header. HINT: use epGetBufferSizeHint",
            bytes, st->lay.ringOff);
    res = epInvalidArgument;
    goto fail;
  }
  // The intranode kernels the node comm runs keep their call epochs on the device (CUDA-graph replay).
  EPCHECKGOTO(epHtStateAllocEpochs(comm, st), res, fail);
  EPCHECKGOTO(epNvlBufferAlloc(comm, bytes, &st->nvl), res, fail);  // collective over the parent comm
  memset(&st->peers, 0, sizeof(st->peers));
  for (int j = 0; j < s->pl.G; j++) {
    st->peers.buf[j] = static_cast<char*>(st->nvl.peer[s->pl.nodeRank[(size_t)s->pl.myNode * s->pl.G + j]]);
    if (st->peers.buf[j] == nullptr) {
      EP_WARN("HT internode: same-node rank %d's buffer is not mapped", j);
      res = epInternalError;
      goto fail;
    }
  }
  n->ht = st;
  return epSuccess;
fail:
  epHtStateRelease(comm, st);
  return res;
}

/* A call with a larger hidden than the buffers hold: every rank makes the same
 * call, so every rank re-sizes here, collectively. Device-synchronising (no
 * graph capture); EP_INTERNODE_MAX_HIDDEN sizes for the largest hidden up front. */
epResult_t growBuffers(epComm* comm, epInterState* s, int hidden) {
  EP_INFO(EP_LOG_HT | EP_LOG_ALLOC, "HT internode: hidden %d > %d: re-sizing the buffers (collective)", hidden,
          s->maxHidden);
  if (growWarnedOnce() == 0 && comm->rank == 0)
    EP_WARN("HT internode: hidden %d exceeds the %d the buffers were sized for: re-sizing them (device sync). HINT: "
            "set EP_INTERNODE_MAX_HIDDEN to the largest hidden size",
            hidden, s->maxHidden);
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  CUDACHECK(cudaDeviceSynchronize());
  EPCHECK(epNetDeregisterWindow(comm, s->winId));  // drains the rings, barrier: no peer targets it any more
  s->winId = -1;
  (void)cudaFree(s->win);
  (void)cudaFree(s->fwdX);
  s->win = nullptr;
  s->fwdX = nullptr;
  comm->deviceBytes -= s->devBytes;
  s->devBytes = 0;
  if (comm->config.nvlBufferBytes == 0 && s->node->ht != nullptr) {  // rings were sized for the old rows
    epHtStateRelease(comm, s->node->ht);
    s->node->ht = nullptr;
  }
  s->ready = false;
  return epSuccess;
}

}  // namespace

void epInterMapDeviceStatus(const epComm* comm, epDeviceStatus* s) {
  const epInterState* st = comm->inter;
  if (st == nullptr || s->family != 1 || s->kind != EP_DEVERR_TIMEOUT) return;  // family 1: HT (node comm)
  if (s->b >= 0 && s->b < st->pl.G) s->b = st->pl.nodeRank[(size_t)st->pl.myNode * st->pl.G + s->b];
}

bool epInterWanted(const epComm* comm) { return comm->nNodes > 1; }

epResult_t epInterCommGet(epComm* comm, epInterState** out) {
  if (comm->inter != nullptr) {
    *out = comm->inter;
    return epSuccess;
  }
  EP_USAGE_CHECK(comm->cudaDev >= 0, "HT internode: rank %d has no CUDA device", comm->rank);
  epInterState* s = new epInterState();
  std::string why;
  if (!epInterPlacementBuild(comm->rank, comm->nranks, comm->rankNode, comm->rankLocal, comm->nvlinkPeer,
                             EP_HT_MAX_NVL_RANKS, &s->pl, &why)) {
    delete s;
    EP_WARN("HT internode: %s", why.c_str());
    return epNotSupported;
  }
  s->Tcfg = comm->config.htMaxTokensPerRank;
  s->node = epInterNodeCommCreate(comm, s->pl, s->Tcfg);
  comm->inter = s;
  epCommAddCleanup(comm, freeState);
  *out = s;
  return epSuccess;
}

epResult_t epInterBuffersGet(epComm* comm, int hidden, int numSms, epInterState** out) {
  epInterState* s = nullptr;
  EPCHECK(epInterCommGet(comm, &s));
  if (s->ready && hidden <= s->maxHidden) {
    *out = s;
    return epSuccess;
  }
  if (s->ready) EPCHECK(growBuffers(comm, s, hidden));
  const int N = s->pl.nNodes, G = s->pl.G, R = s->pl.R, Tcfg = s->Tcfg;
  const int H = std::max(hidden, epInterMaxHidden());
  const size_t Tvirt = (size_t)G * N * Tcfg, Trecv = (size_t)R * Tcfg;
  const size_t rowBytes = (size_t)H * 2, scaleCols = (size_t)(H + 127) / 128, KK = EP_INTER_REC_TOPK;
  Carver cv;
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  if (s->node->ht == nullptr) EPCHECK(buildNodeHt(comm, s, H, numSms));
  CUDACHECK(epInterPreloadKernels());
  EPCHECK(epNetInit(comm, EP_INTER_HT_CHANNELS, EP_INTER_LL_CHANNELS));
  EPCHECK(epNetGetDevice(comm, &s->net));
  epInterBufLayoutCompute(N, Tcfg, epInterDispatchRec((int)rowBytes, (int)scaleCols, (int)KK, true).bytes,
                          epInterCombineRec(H, (int)KK).bytes, &s->lay);
  if (s->win == nullptr) {
    CUDACHECK(cudaMalloc(&s->win, s->lay.total));
    s->devBytes += s->lay.total;
    comm->deviceBytes += s->lay.total;
  }
  CUDACHECK(cudaMemset(s->win, 0, s->lay.total));
  cv.add(&s->fwdX, Tvirt * rowBytes);
  cv.add(&s->fwdScales, Tvirt * scaleCols * 4);
  cv.add(&s->fwdTopk, Tvirt * KK * 4);
  cv.add(&s->fwdW, Tvirt * KK * 4);
  cv.add(&s->fwdOut, Tvirt * rowBytes);
  cv.add(&s->fwdOutW, Tvirt * KK * 4);
  cv.add(&s->scrX, Trecv * rowBytes);
  cv.add(&s->scrScales, Trecv * scaleCols * 4);
  cv.add(&s->scrTopk, Trecv * KK * 4);
  cv.add(&s->scrW, Trecv * KK * 4);
  cv.add(&s->scrSrc, Trecv * 4);
  cv.add(&s->rankNL, (size_t)R * 4);
  if (s->fwdX == nullptr) {
    char* base = nullptr;
    CUDACHECK(cudaMalloc(&base, cv.total));
    s->devBytes += cv.total;
    comm->deviceBytes += cv.total;
    cv.assign(base);  // fwdX is the first part: freeState frees the allocation through it
  }
  {
    std::vector<int> nl(R);
    for (int r = 0; r < R; r++) nl[r] = s->pl.rankNode[r] << 16 | s->pl.rankLocal[r];
    CUDACHECK(cudaMemcpy(s->rankNL, nl.data(), sizeof(int) * R, cudaMemcpyHostToDevice));
  }
  if (s->seq == nullptr) CUDACHECK(cudaMalloc(&s->seq, 4 * sizeof(unsigned long long)));
  CUDACHECK(cudaMemset(s->seq, 0, 4 * sizeof(unsigned long long)));
  EPCHECK(epNetRegisterWindow(comm, s->win, s->lay.total, &s->winId));  // collective
  s->maxHidden = H;
  s->ready = true;
  EP_INFO(EP_LOG_HT | EP_LOG_ALLOC,
          "HT internode: %d nodes x %d ranks, Tcfg %d, hidden %d: window %lld bytes, forwarder/scratch %zu bytes", N, G,
          Tcfg, H, s->lay.total, cv.total);
  *out = s;
  return epSuccess;
}
