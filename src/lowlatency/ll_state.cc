/*************************************************************************
 * epcomm LL: buffer allocation, handles, clean (see ll_state.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "lowlatency/ll_state.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "bootstrap/bootstrap.h"
#include "core/api.h"
#include "core/checks.h"
#include "core/comm.h"
#include "core/param.h"
#include "lowlatency/ll_profile.h"

EP_PARAM(LlNumSms, "LL_NUM_SMS", 0)
EP_PARAM(LlFused, "LL_FUSED", 1)
EP_PARAM(LlProfile, "LL_PROFILE", 0)
EP_PARAM(LlRecvSplit, "LL_RECV_SPLIT", 4)
EP_PARAM(LlLines, "LL_LINES", 1)
EP_PARAM(LlSendSms, "LL_SEND_SMS", 64)
EP_PARAM(LlPublishSms, "LL_PUBLISH_SMS", 8)
EP_PARAM(LlDevSkip, "LL_DEV_SKIP", 0)
EP_PARAM(LlCoop, "LL_COOP", 1)
EP_PARAM(LlPollNs, "LL_POLL_NS", 200)

namespace {
// EP_LL_PROFILE=1: the phase sums; 2: also the per-block timelines (ll_profile.h).
size_t profAllocBytes(int M) { return epParamLlProfile() >= 2 ? ep::ll::tlBytes(M) : ep::ll::profBytes(M); }
// A block-count knob, clamped to [0, kMaxBlocks].
int blockKnob(int64_t v) { return (int)std::min<int64_t>(ep::ll::kMaxBlocks, std::max<int64_t>(0, v)); }
}  // namespace

bool epLlFused() { return epParamLlFused() != 0; }
int epLlRecvSplit() { return (int)std::min<int64_t>(8, std::max<int64_t>(1, epParamLlRecvSplit())); }
bool epLlCoop() { return epParamLlCoop() != 0; }
bool epLlLines(const epComm* comm) {
  // Every peer must be written with NVLink stores (one NVLink domain: a
  // 128-byte line arrives whole, see ll_lines.cuh); the routing pass reads
  // every source's M x K words per block, so it is kept to the rank counts it
  // was measured at.
  return epParamLlLines() != 0 && comm->ll->remote == nullptr && comm->nranks <= kLlLinesMaxRanks;
}
int epLlDevSkip() { return (int)(epParamLlDevSkip() & 7); }
int epLlPublishSms() { return blockKnob(epParamLlPublishSms()); }
int epLlSendSms() { return blockKnob(epParamLlSendSms()); }

using ep::ll::Layout;

namespace {

epResult_t checkShape(int M, int H, int R, int E, int K) {
  EP_ARG_CHECK(M > 0, "LL: llMaxTokensPerRank (EP_LL_MAX_TOKENS) must be > 0 to use LL mode, got %d", M);
  EP_ARG_CHECK(H > 0 && H % 128 == 0, "LL: llHidden must be a positive multiple of 128, got %d", H);
  EP_ARG_CHECK(E > 0 && E % R == 0, "LL: llNumExperts (%d) must be a positive multiple of the rank count (%d)", E, R);
  EP_ARG_CHECK(K >= 1 && K <= ep::ll::kMaxTopk, "LL: llMaxTopk must be in [1, %d], got %d", ep::ll::kMaxTopk, K);
  EP_ARG_CHECK(R <= ep::ll::kMaxRanks, "LL: at most %d ranks, got %d", ep::ll::kMaxRanks, R);
  EP_ARG_CHECK(M < (1 << ep::ll::kTokenBits), "LL: llMaxTokensPerRank must be < %d, got %d", 1 << ep::ll::kTokenBits,
               M);
  return epSuccess;
}

}  // namespace

EP_API epResult_t epGetLowLatencySizeHint(int maxTokensPerRank, int hidden, int nranks, int numExperts, int maxTopk,
                                          size_t* bytes) {
  EP_PTR_CHECK(bytes, "epGetLowLatencySizeHint");
  EP_ARG_CHECK(nranks >= 1, "epGetLowLatencySizeHint: nranks must be >= 1, got %d", nranks);
  EPCHECK(checkShape(maxTokensPerRank, hidden, nranks, numExperts, maxTopk));
  *bytes = ep::ll::makeLayout(nranks, maxTokensPerRank, hidden, numExperts, maxTopk).total;
  return epSuccess;
}

epResult_t epLlEnsureState(epComm* comm) {
  if (comm->ll) return epSuccess;
  const epResolvedConfig& c = comm->config;
  EP_USAGE_CHECK(comm->cudaDev >= 0, "LL: rank %d has no CUDA device", comm->rank);
  EPCHECK(checkShape(c.llMaxTokensPerRank, c.llHidden, comm->nranks, c.llNumExperts, c.llMaxTopk));
  size_t smem = ep::ll::dispatchSmemBytes(comm->nranks, c.llMaxTokensPerRank, c.llMaxTopk, c.llNumExperts);
  int maxSmem = 0;
  CUDACHECK(cudaDeviceGetAttribute(&maxSmem, cudaDevAttrMaxSharedMemoryPerBlockOptin, comm->cudaDev));
  if (smem + 1024 > (size_t)maxSmem) {
    EP_WARN("LL: routing metadata needs %zu bytes of shared memory (M=%d, K=%d, E=%d), more than the %d available",
            smem, c.llMaxTokensPerRank, c.llMaxTopk, c.llNumExperts, maxSmem);
    return epNotSupported;
  }

  epLlState* st = new epLlState();
  epResult_t res = epSuccess;
  st->layout = ep::ll::makeLayout(comm->nranks, c.llMaxTokensPerRank, c.llHidden, c.llNumExperts, c.llMaxTopk);
  CUDACHECKGOTO(cudaSetDevice(comm->cudaDev), res, fail);
  CUDACHECKGOTO(cudaDeviceGetAttribute(&st->deviceSms, cudaDevAttrMultiProcessorCount, comm->cudaDev), res, fail);
  EPCHECKGOTO(epNvlBufferAlloc(comm, st->layout.total, &st->buf), res, fail);
  if (epLlNeedsRemote(comm)) EPCHECKGOTO(epLlRemoteSetup(comm, st), res, fail);  // peers on other nodes
  st->ctlSize = ep::ll::ctlBytes(st->deviceSms);
  CUDACHECKGOTO(cudaMalloc(&st->ctl, st->ctlSize), res, fail);
  CUDACHECKGOTO(cudaMemset(st->ctl, 0, st->ctlSize), res, fail);
#ifdef EP_LL_NO_PROFILE
  if (epParamLlProfile())
    EP_WARN("EP_LL_PROFILE=%lld ignored: this build has the LL stamps compiled out (build with make LL_PROFILE=1)",
         (long long)epParamLlProfile());
#else
  if (epParamLlProfile()) {
    CUDACHECKGOTO(cudaMalloc(&st->prof, profAllocBytes(st->layout.M)), res, fail);
    CUDACHECKGOTO(cudaMemset(st->prof, 0, profAllocBytes(st->layout.M)), res, fail);
  }
#endif
  CUDACHECKGOTO(cudaDeviceSynchronize(), res, fail);
  comm->deviceBytes += st->ctlSize;
  comm->ll = st;
  epCommAddCleanup(comm, [](epComm* cm) { epLlFreeState(cm); });
  EP_INFO(EP_LOG_LL, "LL: buffer %zu bytes per rank (M=%d H=%d E=%d K=%d), %d SMs", st->layout.total,
          c.llMaxTokensPerRank, c.llHidden, c.llNumExperts, c.llMaxTopk, st->deviceSms);
  return epSuccess;
fail:
  epLlRemoteFree(comm, st);
  if (st->prof) cudaFree(st->prof);
  if (st->ctl) cudaFree(st->ctl);
  epNvlBufferFree(comm, &st->buf);
  delete st;
  return res;
}

namespace {

// EP_LL_PROFILE=2: one fused dispatch bucket's timeline: per stamp, the mean /
// min / max over the sending and the receiving blocks of each block's mean
// (us since the call's first block start) and the latest-ending block.
void printTimeline(int rank, int sel, int T, const unsigned long long* b) {
  using namespace ep::ll;
  if (b[0] == 0) return;
  const double n = (double)b[0];
  const int nsend = (int)b[2], grid = (int)b[3];
  // nullptr: a stamp no longer written (ll_profile.h).
  static const char* names[kTlStamps] = {"start",  "acks",    "sends",  "release", "rows",   "end",
                                         nullptr,  "counts",  "pollwait", "published", nullptr, nullptr,
                                         "u1rows", "u1lines", "u1done", "w0done"};
  static const char* recvNames[4] = {"u1flags", "u1header", "u1rows", "u1scales"};  // sel 2: stamps 12-15
  static const char* sels[ep::ll::kTlSels] = {"release", "lines", "release-recv"};
  int lastB = 0;
  for (int blk = 0; blk < grid; blk++)
    if (b[kTlSums + blk * kTlStamps + 5] > b[kTlSums + lastB * kTlStamps + 5]) lastB = blk;
  fprintf(stderr, "[rank %d] EP_LL_TIMELINE %s T=%d calls=%llu grid=%d senders=%d lastblock=%d(vb %d) end %.2f us "
          "first-start %llu ns\n", rank, sels[sel], T, b[0], grid, nsend, lastB,
          lastB == 0 ? grid - 1 : lastB - 1, b[kTlSums + lastB * kTlStamps + 5] / n / 1e3, b[1] % 1000000000ull);
  // Per block (vb order): which blocks end late, and why. Release receive (sel 2): rows known, then warp P-1's
  // first unit (flags, header, row stores, scales), end; fused calls: start, acks, routing published, counts
  // known, rows known, end.
  std::string line;
  for (int vb = 0; vb < grid; vb++) {
    const int blk = vb == grid - 1 ? 0 : vb + 1;
    const unsigned long long* x = b + kTlSums + (size_t)blk * kTlStamps;
    static const int kRecv[6] = {4, 12, 13, 14, 15, 5}, kFused[10] = {0, 1, 9, 7, 4, 12, 13, 14, 15, 5};
    const int* st = sel == 2 ? kRecv : kFused;
    const int ns = sel == 2 ? 6 : 10;
    line += " " + std::to_string(vb) + ":";
    for (int i = 0; i < ns; i++) {
      char buf[16];
      snprintf(buf, sizeof(buf), "%s%.1f", i ? "/" : "", x[st[i]] / n / 1e3);
      line += buf;
    }
  }
  fprintf(stderr, "[rank %d] EP_LL_TIMELINE   per block vb:%s (us):%s\n", rank,
          sel == 2 ? "rows/u1flags/u1header/u1rows/u1scales/end"
                   : "start/acks/published/counts/rows/u1rows/u1lines/u1done/w0done/end",
          line.c_str());
  for (int g = 0; g < 2; g++) {
    std::string line;
    for (int s = 0; s < kTlStamps; s++) {
      const char* name = sel == 2 && s >= 12 ? recvNames[s - 12] : names[s];
      if (name == nullptr) continue;
      double sum = 0, lo = 1e30, hi = -1e30;
      int cnt = 0;
      for (int blk = 0; blk < grid; blk++) {
        const int vb = blk == 0 ? grid - 1 : blk - 1;
        if ((vb < nsend) != (g == 0)) continue;
        const double v = b[kTlSums + blk * kTlStamps + s] / n / 1e3;
        sum += v;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        cnt++;
      }
      if (cnt == 0) continue;
      char buf[96];
      snprintf(buf, sizeof(buf), " %s %.2f/%.2f/%.2f", name, sum / cnt, lo, hi);
      line += buf;
    }
    fprintf(stderr, "[rank %d] EP_LL_TIMELINE   %s (mean/min/max us):%s\n", rank, g == 0 ? "senders" : "receivers",
            line.c_str());
  }
}

// EP_LL_PROFILE: one line per bucket that saw calls (mean stamps since block 0 started, in us).
void printProfile(epComm* comm, epLlState* st) {
  const int M = st->layout.M;
  std::vector<unsigned long long> h(profAllocBytes(M) / sizeof(unsigned long long));
  if (cudaMemcpy(h.data(), st->prof, profAllocBytes(M), cudaMemcpyDeviceToHost) != cudaSuccess) return;
  static const char* kinds[] = {"dispatch dedup", "dispatch plain", "combine reduce", "combine plain",
                                "dispatch lines"};
  static const char* phases[] = {"send", "recv", "send+recv"};
  for (int k = 0; k < ep::ll::kProfKinds; k++)
    for (int ph = 1; ph <= ep::ll::kProfPhases; ph++)
      for (int T = 0; T <= M; T++) {
        const unsigned long long* b = h.data() + ep::ll::profBucket(k, ph, T, M);
        if (b[0] == 0) continue;
        double n = (double)b[0];
        fprintf(stderr,
                "[rank %d] EP_LL_PROFILE %s %s T=%d calls=%llu block0 us: setup %.2f stores %.2f release %.2f "
                "ready %.2f end %.2f | mean block %.2f | span %.2f (launch skew %.2f, tail %.2f, block0 starts "
                "+%.2f, block0 prologue %.2f; lines counts known %.2f)\n",
                comm->rank, kinds[k], phases[ph - 1], T, b[0], b[1] / n / 1e3, b[2] / n / 1e3, b[3] / n / 1e3,
                b[4] / n / 1e3, b[5] / n / 1e3, b[7] ? (double)b[6] / (double)b[7] / 1e3 : 0.0, b[8] / n / 1e3,
                b[9] / n / 1e3, b[10] / n / 1e3, b[11] / n / 1e3, b[18] / n / 1e3, b[20] / n / 1e3);
      }
  if (epParamLlProfile() >= 2)
    for (int sel = 0; sel < ep::ll::kTlSels; sel++)
      for (int T = 0; T <= M; T++) printTimeline(comm->rank, sel, T, h.data() + ep::ll::tlBucket(sel, T, M));
}

}  // namespace

unsigned long long* epLlTimelineSlot(epComm* comm, int kind, int phases, int T) {
  epLlState* st = comm->ll;
  if (st->prof == nullptr || epParamLlProfile() < 2) return nullptr;
  int sel = -1;
  if (phases == 3 && (kind == 0 || kind == 4)) sel = kind == 4 ? 1 : 0;
  if (phases == 2 && kind == 0) sel = 2;  // a release-protocol dedup dispatch's receive phase alone
  return sel < 0 ? nullptr : st->prof + ep::ll::tlBucket(sel, T, st->layout.M);
}

unsigned long long* epLlProfSlot(epComm* comm, int kind, int phases, int T) {
  epLlState* st = comm->ll;
  if (st->prof == nullptr) return nullptr;
  return st->prof + ep::ll::profBucket(kind, phases, T, st->layout.M);
}

void epLlFreeState(epComm* comm) {
  epLlState* st = comm->ll;
  if (st == nullptr) return;
  if (st->prof) {
    printProfile(comm, st);
    cudaFree(st->prof);
  }
  for (epLlHandle* h : st->handles) {
    if (h->srcT) cudaFree(h->srcT);
    comm->deviceBytes -= h->bytes;
    // The struct stays until epLowLatencyHandleDestroy; it no longer names a comm.
    h->srcT = nullptr;
    h->comm = nullptr;
  }
  for (int b = 0; b < 2; b++)
    if (st->zeroCopy[b]) {
      cudaFree(st->zeroCopy[b]);
      comm->deviceBytes -= st->zeroCopyBytes;
    }
  if (st->ctl) {
    cudaFree(st->ctl);
    comm->deviceBytes -= st->ctlSize;
  }
  epLlRemoteFree(comm, st);
  epNvlBufferFree(comm, &st->buf);
  delete st;
  comm->ll = nullptr;
}

ep::ll::SetArgs epLlSetArgs(epComm* comm, int b) {
  epLlState* st = comm->ll;
  const Layout& l = st->layout;
  ep::ll::SetArgs sa;
  // Remote peers: their "buffer" here is a local mirror that the send phase ships (ll_remote.h).
  sa.ps.peer = reinterpret_cast<char* const*>(st->remote ? st->remote->devPeer : st->buf.devPeer);
  sa.ps.local = static_cast<char*>(st->buf.local);
  sa.ps.rank = comm->rank;
  sa.set = b;
  sa.nb = st->deviceSms;
  sa.setBytes = l.setBytes;
  sa.sigOff = l.sigOff(b);
  sa.infoOff = l.infoOff(b);
  sa.hdrOff = l.hdrOff(b);
  sa.dataOff = l.dataOff(b);
  sa.routeOff = l.routeOff(b);
  sa.lineOff = l.lineOff(b);
  sa.lineStride = l.lineStride;
  sa.infoStride = l.infoStride;
  sa.ctl = st->ctl;
  sa.prof = nullptr;
  sa.tl = nullptr;
  sa.status = comm->devStatusDev;
  sa.timeoutNs = epCommWaitTimeoutNs(comm);
  sa.rm = st->remote ? st->remote->args : ep::ll::RemoteArgs{};
  sa.pollNs = (unsigned)std::min<int64_t>(100000, std::max<int64_t>(0, epParamLlPollNs()));
  return sa;
}

int epLlBlocks(epComm* comm, int numSms) {
  int n = numSms > 0 ? numSms : (int)epParamLlNumSms();
  int maxBlocks = std::min(comm->ll->deviceSms, ep::ll::kMaxBlocks);
  if (n <= 0 || n > maxBlocks) n = maxBlocks;
  return std::max(1, n);
}

EP_API epResult_t epLowLatencyHandleCreate(epComm_t comm, epLlHandle_t* handle) {
  EPCHECK(epCommCheck(comm, "epLowLatencyHandleCreate"));
  EP_COMM_SCOPE(comm);
  EP_PTR_CHECK(handle, "epLowLatencyHandleCreate");
  *handle = nullptr;
  EPCHECK(epLlEnsureState(comm));
  epLlState* st = comm->ll;
  const Layout& l = st->layout;
  epLlHandle* h = new epLlHandle();
  size_t rmk = (size_t)l.R * l.M * l.K;
  h->bytes = sizeof(int) * (size_t)l.R + ep::ll::alignUp(sizeof(int) * rmk, 16) + sizeof(float) * rmk;
  h->bytes = ep::ll::alignUp(h->bytes + 16, 256);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, h->bytes);
  if (e != cudaSuccess) {
    EP_WARN("epLowLatencyHandleCreate: cudaMalloc(%zu) failed: %s", h->bytes, cudaGetErrorString(e));
    delete h;
    return epCudaError;
  }
  char* base = static_cast<char*>(p);
  h->srcT = reinterpret_cast<int*>(base);
  h->flatRow = reinterpret_cast<int*>(base + ep::ll::alignUp(sizeof(int) * (size_t)l.R, 16));
  h->w = reinterpret_cast<float*>(reinterpret_cast<char*>(h->flatRow) + ep::ll::alignUp(sizeof(int) * rmk, 16));
  h->comm = comm;
  comm->deviceBytes += h->bytes;
  st->handles.push_back(h);
  *handle = h;
  return epSuccess;
}

EP_API epResult_t epLowLatencyHandleDestroy(epLlHandle_t handle) {
  if (handle == nullptr) return epSuccess;
  EP_ARG_CHECK(handle->magic == EP_LL_HANDLE_MAGIC, "epLowLatencyHandleDestroy: %p is not a live LL handle",
               (void*)handle);
  epComm* comm = handle->comm;
  if (comm && comm->ll) {
    auto& v = comm->ll->handles;
    v.erase(std::remove(v.begin(), v.end(), handle), v.end());
    comm->deviceBytes -= handle->bytes;
  }
  if (handle->srcT) cudaFree(handle->srcT);
  handle->magic = 0;
  delete handle;
  return epSuccess;
}

EP_API epResult_t epLowLatencyGetNextCombineBuffer(epComm_t comm, void** buffer, size_t* bytes) {
  EPCHECK(epCommCheck(comm, "epLowLatencyGetNextCombineBuffer"));
  EP_COMM_SCOPE(comm);
  EP_PTR_CHECK(buffer, "epLowLatencyGetNextCombineBuffer");
  EP_USAGE_CHECK(comm->ll != nullptr, "epLowLatencyGetNextCombineBuffer: create an LL handle first");
  epLlState* st = comm->ll;
  const Layout& l = st->layout;
  if (st->zeroCopy[0] == nullptr) {
    st->zeroCopyBytes = (size_t)l.E * l.M * l.H * 2;  // L*R*M*H BF16 = E*M*H*2 bytes
    for (int b = 0; b < 2; b++) {
      CUDACHECK(cudaMalloc(&st->zeroCopy[b], st->zeroCopyBytes));
      comm->deviceBytes += st->zeroCopyBytes;
    }
  }
  *buffer = st->zeroCopy[st->seq & 1];
  if (bytes) *bytes = st->zeroCopyBytes;
  return epSuccess;
}

EP_API epResult_t epLowLatencyClean(epComm_t comm, cudaStream_t stream) {
  EPCHECK(epCommCheck(comm, "epLowLatencyClean"));
  EP_COMM_SCOPE(comm);
  EPCHECK(epLlEnsureState(comm));
  epLlState* st = comm->ll;
  CUDACHECK(cudaStreamSynchronize(stream));
  CUDACHECK(cudaDeviceSynchronize());
  if (st->remote) EPCHECK(epLlRemoteDrain(comm));  // our puts to other nodes have landed
  // Nobody may still write into our buffer while we zero it, nor start the
  // next call before everyone has zeroed.
  EPCHECK(epBootstrapBarrier(comm->bootstrap));
  if (st->remote) EPCHECK(epLlRemoteZero(comm, st));
  for (int b = 0; b < 2; b++)
    CUDACHECK(cudaMemset(static_cast<char*>(st->buf.local) + st->layout.sigOff(b), 0, st->layout.ctrlBytes));
  CUDACHECK(cudaMemset(st->ctl, 0, st->ctlSize));
  CUDACHECK(cudaDeviceSynchronize());
  EPCHECK(epBootstrapBarrier(comm->bootstrap));
  st->seq = 0;
  for (int b = 0; b < 2; b++) {
    if (st->pending[b].handle) st->pending[b].handle->recvPending = false;
    st->pending[b] = epLlPending();
  }
  return epSuccess;
}
