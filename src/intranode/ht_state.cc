/*************************************************************************
 * epcomm: HT intranode state (see ht_state.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "intranode/ht_state.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include "core/checks.h"
#include "core/comm.h"
#include "core/param.h"

namespace {

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

}  // namespace

size_t epHtDirectBytes(int nranks, int maxChannels) {
  return 2 * (size_t)nranks * sizeof(epHtDirectRec) + alignUp(2 * (size_t)nranks * EP_HT_COUNTER_STRIDE * 4, 128) +
         alignUp(2 * (size_t)nranks * maxChannels * 4, 128);
}

size_t epHtHeaderBytes(int nranks, int maxChannels) {
  size_t notifyInts = alignUp(1 + maxChannels + EP_HT_MAX_LOCAL_EXPERTS + EP_HT_MAX_NVL_RANKS, 32);
  size_t b = 0;
  b += 2 * (size_t)nranks * notifyInts * 4;                              // notify
  b = alignUp(b, 128) + alignUp(2 * (size_t)nranks * 4, 128);            // nflag
  b += 4 * alignUp((size_t)maxChannels * nranks * EP_HT_COUNTER_STRIDE * 4, 128);  // tail, head, sendPos, recvPos
  b += epHtDirectBytes(nranks, maxChannels);
  return alignUp(b, 4096);
}

int epHtMaxSlotBytes(int hidden, epDataType_t xType, int numTopk) {
  int elt = xType == epFloat8E4M3 ? 1 : 2;
  int scaleCols = xType == epFloat8E4M3 ? (hidden + 127) / 128 : 0;
  epHtSlotLayout d = epHtDispatchSlot(hidden * elt, scaleCols, numTopk, numTopk > 0, numTopk > 0);
  epHtSlotLayout c = epHtCombineSlot(hidden, numTopk, numTopk > 0);
  return std::max(d.slotBytes, c.slotBytes);
}

void epHtLayoutCompute(int nranks, int rank, int maxChannels, size_t bytes, epHtBufLayout* lay) {
  memset(lay, 0, sizeof(*lay));
  lay->nranks = nranks;
  lay->rank = rank;
  lay->maxChannels = maxChannels;
  lay->notifyInts = (int)alignUp(1 + maxChannels + EP_HT_MAX_LOCAL_EXPERTS + EP_HT_MAX_NVL_RANKS, 32);
  size_t off = 0;
  lay->notifyOff = off;
  off += 2 * (size_t)nranks * lay->notifyInts * 4;
  off = alignUp(off, 128);
  lay->nflagOff = off;
  off += alignUp(2 * (size_t)nranks * 4, 128);
  size_t counters = alignUp((size_t)maxChannels * nranks * EP_HT_COUNTER_STRIDE * 4, 128);
  lay->tailOff = off;
  off += counters;
  lay->headOff = off;
  off += counters;
  lay->sendPosOff = off;
  off += counters;
  lay->recvPosOff = off;
  off += counters;
  lay->drecOff = off;
  lay->dflagOff = lay->drecOff + 2 * (size_t)nranks * sizeof(epHtDirectRec);
  lay->ddoneOff = lay->dflagOff + alignUp(2 * (size_t)nranks * EP_HT_COUNTER_STRIDE * 4, 128);
  off += epHtDirectBytes(nranks, maxChannels);
  off = alignUp(off, 4096);
  lay->ringOff = off;
  size_t rings = (size_t)maxChannels * nranks;
  lay->ringBytes = bytes > off ? (long long)((bytes - off) / rings / 128 * 128) : 0;
  lay->totalBytes = bytes;
}

epResult_t epHtCheckIntranode(epComm* comm, const char* fn) {
  EP_USAGE_CHECK(comm->cudaDev >= 0, "%s: rank %d has no CUDA device", fn, comm->rank);
  if (comm->nNodes > 1 || comm->nranks > EP_HT_MAX_NVL_RANKS) {
    EP_WARN("%s: HT intranode kernels need all %d ranks in one NVLink domain of at most %d GPUs (nodes: %d)%s", fn,
            comm->nranks, EP_HT_MAX_NVL_RANKS, comm->nNodes,
            comm->nNodes > 1 ? ". HINT: multi-node communicators take the internode path (docs/internode.md)"
                             : "");
    return epNotSupported;
  }
  for (int r = 0; r < comm->nranks; r++) {
    if (!comm->nvlinkPeer[r]) {
      EP_WARN("%s: rank %d cannot reach rank %d over NVLink/P2P; HT intranode needs all pairs", fn, comm->rank, r);
      return epNotSupported;
    }
  }
  return epSuccess;
}

epResult_t epHtCheckNotCapturing(epComm* comm, cudaStream_t stream, const char* fn) {
  if (comm->cudaDev < 0) return epSuccess;  // epHtCheckIntranode / the internode checks report it
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  const cudaError_t e = cudaStreamIsCapturing(stream, &cs);
  if (e == cudaErrorStreamCaptureImplicit) {
    (void)cudaGetLastError();
    cs = cudaStreamCaptureStatusActive;  // the legacy stream while another stream captures globally
  } else if (e != cudaSuccess) {
    (void)cudaGetLastError();
    EP_WARN("%s: cannot query the stream: %s", fn, cudaGetErrorString(e));
    return epCudaError;
  }
  if (cs == cudaStreamCaptureStatusNone) return epSuccess;
  EP_WARN("%s: the stream is being captured into a CUDA graph, and HT calls on a multi-node communicator cannot "
          "be captured yet (not verified under graph replay). HINT: run them outside graphs; intranode HT and LL "
          "calls are capturable",
          fn);
  return epInvalidUsage;
}

// Developer tuning knobs (docs/env.md), read once per process.
EP_PARAM(HtDevPubEvery, "HT_DEV_PUB_EVERY", 2)
EP_PARAM(HtDevCpubEvery, "HT_DEV_CPUB_EVERY", 4)
EP_PARAM(HtDevLag8, "HT_DEV_LAG8", 0)
EP_PARAM(HtDevReadLag2, "HT_DEV_READ_LAG2", 0)
EP_PARAM(HtDevNprod, "HT_DEV_NPROD", 2)
EP_PARAM(HtDevNrecv, "HT_DEV_NRECV", 1)
EP_PARAM(HtDevProf, "HT_DEV_PROF", 0)

epHtTune epHtTuneGet(epHtState* st) {
  epHtTune t;
  t.pubEvery = (int)std::max<int64_t>(1, epParamHtDevPubEvery());
  t.cpubEvery = (int)std::max<int64_t>(1, epParamHtDevCpubEvery());
  t.lag8 = epParamHtDevLag8() != 0;
  t.readLag2 = epParamHtDevReadLag2() != 0;
  t.nProd = (int)std::min<int64_t>(4, std::max<int64_t>(1, epParamHtDevNprod()));
  t.nRecv = (int)std::min<int64_t>(2, std::max<int64_t>(1, epParamHtDevNrecv()));
  t.prof = nullptr;
  if (epParamHtDevProf() && st != nullptr) {
    if (st->prof == nullptr) {
      if (cudaMalloc(&st->prof, EP_HT_MAX_CHANNELS * 32 * 8) != cudaSuccess ||
          cudaMemset(st->prof, 0, EP_HT_MAX_CHANNELS * 32 * 8) != cudaSuccess) {
        (void)cudaGetLastError();
        st->prof = nullptr;
      }
    }
    t.prof = st->prof;
  }
  return t;
}

void epHtProfAfter(epComm* comm, epHtState* st, int which, int channels, cudaStream_t stream) {
  if (st->prof == nullptr) return;
  unsigned long long h[EP_HT_MAX_CHANNELS * 32];
  if (cudaStreamSynchronize(stream) != cudaSuccess ||
      cudaMemcpy(h, st->prof, sizeof(h), cudaMemcpyDeviceToHost) != cudaSuccess ||
      cudaMemset(st->prof, 0, sizeof(h)) != cudaSuccess) {
    (void)cudaGetLastError();
    return;
  }
  for (int i = 0; i < 32; i++) {
    double v = 0;
    for (int c = 0; c < channels; c++) v += (double)h[c * 32 + i];
    st->profSum[which][i] += v / channels;
  }
  if (++st->profCalls[which] % 20 != 0) return;
  int khz = 0;
  (void)cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, comm->cudaDev);
  const double us = 1000.0 / (khz > 0 ? khz : 1980000);  // cycles -> microseconds
  const int n = st->profCalls[which];
  static const char* names[32] = {"I.full", "I.space", "I.read", "I.lag", "I.total", "I.store", "P.empty", "P.total",
                                  "P.meta", "R.idle", "R.full", "R.read", "R.total", "R.deliver", "CS.load",
                                  "CS.space", "CS.read", "CS.lag", "CS.total", "CR.wait", "CR.total", "CR.sum",
                                  "", "", "#items", "#slots", "#idle", "#fullring"};
  char line[2048];
  int len = snprintf(line, sizeof(line), "[HTPROF rank %d %s C=%d calls=%d] per block per call:", comm->rank,
                     which ? "combine" : "dispatch", channels, n);
  for (int i = 0; i < 28; i++) {
    if (st->profSum[which][i] == 0 || names[i][0] == 0) continue;
    const double v = st->profSum[which][i] / n;
    len += snprintf(line + len, sizeof(line) - len, " %s=%.1f%s", names[i], i >= 24 ? v : v * us, i >= 24 ? "" : "us");
  }
  fprintf(stderr, "%s\n", line);
  for (int i = 0; i < 32; i++) st->profSum[which][i] = 0;
  st->profCalls[which] = 0;
}

int epHtChannels(epComm* comm, const epHtState* st, int numSms) {
  int c = numSms > 0 ? numSms : comm->config.numSms;
  c = std::min(c, st->lay.maxChannels);
  c = std::min(c, st->deviceSms);
  return std::max(c, 1);
}

epResult_t epHtStateGet(epComm* comm, int hidden, int numTopk, int channels, epHtState** out) {
  if (comm->ht != nullptr) {
    *out = comm->ht;
    return epSuccess;
  }
  EPCHECK(epHtCheckIntranode(comm, "HT"));
  epHtState* st = new epHtState();
  epResult_t res = epSuccess;
  int maxChannels = std::max({comm->config.numSms, channels, EP_HT_MIN_BUFFER_CHANNELS});
  maxChannels = std::min(maxChannels, EP_HT_MAX_CHANNELS);
  size_t bytes = (size_t)comm->config.nvlBufferBytes;
  CUDACHECKGOTO(cudaSetDevice(comm->cudaDev), res, fail);
  CUDACHECKGOTO(cudaDeviceGetAttribute(&st->smemOptin, cudaDevAttrMaxSharedMemoryPerBlockOptin, comm->cudaDev), res,
                fail);
  CUDACHECKGOTO(cudaDeviceGetAttribute(&st->deviceSms, cudaDevAttrMultiProcessorCount, comm->cudaDev), res, fail);
  if (bytes == 0) {
    // Sized for the first call's rows, as BF16 (the largest payload).
    int slot = epHtMaxSlotBytes(hidden, epBfloat16, numTopk);
    bytes = epHtHeaderBytes(comm->nranks, maxChannels) +
            (size_t)maxChannels * comm->nranks * alignUp((size_t)EP_HT_HINT_RING_SLOTS * slot, 128);
  }
  epHtLayoutCompute(comm->nranks, comm->rank, maxChannels, bytes, &st->lay);
  if (st->lay.ringBytes <= 0) {
    EP_WARN("HT: NVL buffer of %zu bytes is smaller than its %lld-byte header. HINT: use epGetBufferSizeHint", bytes,
            st->lay.ringOff);
    res = epInvalidArgument;
    goto fail;
  }
  EPCHECKGOTO(epHtStateAllocEpochs(comm, st), res, fail);
  EPCHECKGOTO(epNvlBufferAlloc(comm, bytes, &st->nvl), res, fail);
  memset(&st->peers, 0, sizeof(st->peers));
  for (int r = 0; r < comm->nranks; r++) st->peers.buf[r] = static_cast<char*>(st->nvl.peer[r]);
  comm->ht = st;
  epCommAddCleanup(comm, [](epComm* c) {
    epHtStateRelease(c, c->ht);
    c->ht = nullptr;
  });
  EP_INFO(EP_LOG_HT | EP_LOG_ALLOC, "HT: NVL buffer %zu bytes, %d channels x %d ranks rings of %lld bytes", bytes,
          maxChannels, comm->nranks, st->lay.ringBytes);
  *out = st;
  return epSuccess;
fail:
  epHtStateRelease(comm, st);
  return res;
}

epResult_t epHtStateAllocEpochs(epComm* comm, epHtState* st) {
  // Call epochs start at 0 on every rank (first call: 1), before any kernel of any stream.
  const size_t eb = sizeof(uint32_t) * EP_HT_EPOCH_KINDS * EP_HT_MAX_CHANNELS;
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  CUDACHECK(cudaMalloc(&st->epochDev, eb));
  comm->deviceBytes += eb;
  CUDACHECK(cudaMemset(st->epochDev, 0, eb));
  CUDACHECK(cudaDeviceSynchronize());
  return epSuccess;
}

void epHtStateRelease(epComm* comm, epHtState* st) {
  if (st == nullptr) return;
  if (st->nvl.local != nullptr) epNvlBufferFree(comm, &st->nvl);
  if (st->prof) (void)cudaFree(st->prof);
  if (st->epochDev) {
    (void)cudaFree(st->epochDev);
    comm->deviceBytes -= sizeof(uint32_t) * EP_HT_EPOCH_KINDS * EP_HT_MAX_CHANNELS;
  }
  delete st;
}
