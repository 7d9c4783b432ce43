/*************************************************************************
 * epcomm: emulated RDMA backend (see emu_backend.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/emulated/emu_backend.h"

#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <deque>
#include <map>
#include <vector>

#include <cuda_runtime.h>

#include "bootstrap/bootstrap.h"
#include "core/checks.h"
#include "core/comm.h"
#include "core/hash.h"
#include "transports/emulated/emu_signal.h"
#include "transports/ib/ib_params.h"
#include "transports/proxy/cu_driver.h"

namespace {

struct WinInfo {
  cudaIpcMemHandle_t ipc;
  uint64_t ptr;       /* window start, valid in the owner's process */
  uint64_t allocBase; /* start of the CUDA allocation holding it */
  uint64_t bytes;
  uint64_t proc;  // epProcessToken() of the owning process
  int32_t dev;
  int32_t isDevice;
  int32_t hasIpc;
};

/* This backend's proxy is a CUDA client (copies, event queries, signal
 * launches). Under lazy module loading, the first launch of any kernel makes
 * the driver synchronise the context, and CUDA calls from other threads wait
 * meanwhile: if an internode wait kernel spins on a peer's data at that moment,
 * every proxy stalls until EP_TIMEOUT_MS. epcomm preloads its own kernels; a
 * kernel the application launches for the first time while an internode call
 * is in flight can still trigger it. The verbs backend makes no CUDA calls
 * while it runs, so this concerns the emulated transport only. */
void warnIfLazyLoading() {
  static std::atomic<int> warned{0};
  const epCuDriver* drv = epCuDriverGet();
  CUmoduleLoadingMode mode = CU_MODULE_EAGER_LOADING;
  if (drv->moduleGetLoadingMode == nullptr || drv->moduleGetLoadingMode(&mode) != CUDA_SUCCESS) return;
  if (mode != CU_MODULE_LAZY_LOADING || warned.exchange(1) != 0) return;
  EP_WARN("Net(emulated): CUDA lazy module loading is on: a kernel first launched while an internode call is in "
          "flight stalls this transport's proxy (a CUDA client) until EP_TIMEOUT_MS. HINT: run with "
          "CUDA_MODULE_LOADING=EAGER, or make one warm-up step before overlapping new kernels with epcomm calls");
}

class EmuBackend : public epNetBackend {
 public:
  EmuBackend(epComm* comm, int nChannels) : comm_(comm), win_(EP_NET_MAX_WINDOWS), ch_(nChannels) {
    maxInflight_ = (int)epParamIbMaxInflight();
    if (maxInflight_ < 1) maxInflight_ = 1;
  }
  ~EmuBackend() override;
  epResult_t init();
  const char* name() const override { return "emulated"; }
  epResult_t registerWindow(int id, void* base, size_t bytes, bool isDevice) override;
  epResult_t deregisterWindow(int id) override;
  epResult_t post(int channel, const epNetOpFields& op, uint64_t ticket) override;
  epResult_t progress(epNetCompletionSink* sink) override;
  bool idle() const override {
    for (auto& c : ch_)
      if (!c.q.empty()) return false;
    return true;
  }

 private:
  struct Pending {
    uint64_t ticket;
    cudaEvent_t dataEv;
    cudaEvent_t sigEv = nullptr;
    bool hasSig;
    int state = 0;  // 0: data in flight, 1: signal in flight, 2: done
    epEmuSignal sig;
  };
  struct Chan {
    cudaStream_t copy = nullptr, sig = nullptr;
    std::deque<Pending> q;
    uint64_t* setVal = nullptr;     // host-pinned [maxInflight_]: values of SET signals in flight
    uint64_t* setValDev = nullptr;  // the same on this GPU: the peer copy reads it (device to device)
  };
  struct Win {
    bool live = false;
    std::vector<char*> peer;  // [nranks] window start as mapped here
    std::vector<std::pair<int, uint64_t>> opened;  // IPC mappings this window holds (rank, allocBase)
  };
  struct Mapping {
    void* ptr;
    int refs;
  };
  cudaEvent_t getEvent();
  void putEvent(cudaEvent_t e) { evPool_.push_back(e); }
  epResult_t openPeer(int r, const WinInfo& in, char** out);

  epComm* comm_;
  int maxInflight_;
  std::vector<Win> win_;
  std::vector<Chan> ch_;
  std::vector<cudaEvent_t> evPool_;
  std::map<std::pair<int, uint64_t>, Mapping> ipc_;
};

EmuBackend::~EmuBackend() {
  if (comm_->cudaDev >= 0) cudaSetDevice(comm_->cudaDev);
  for (auto& c : ch_) {
    if (c.copy) cudaStreamSynchronize(c.copy);
    if (c.sig) cudaStreamSynchronize(c.sig);
    for (auto& p : c.q) {
      cudaEventDestroy(p.dataEv);
      if (p.sigEv) cudaEventDestroy(p.sigEv);
    }
    if (c.copy) cudaStreamDestroy(c.copy);
    if (c.sig) cudaStreamDestroy(c.sig);
    if (c.setVal) cudaFreeHost(c.setVal);
    if (c.setValDev) cudaFree(c.setValDev);
  }
  for (auto e : evPool_) cudaEventDestroy(e);
  for (auto& kv : ipc_) cudaIpcCloseMemHandle(kv.second.ptr);
}

epResult_t EmuBackend::init() {
  EP_USAGE_CHECK(comm_->cudaDev >= 0, "Net: the emulated transport needs a GPU on every rank (rank %d has none)",
                 comm_->rank);
  CUDACHECK(cudaSetDevice(comm_->cudaDev));
  CUDACHECK(epEmuPreloadSignalKernel());
  warnIfLazyLoading();
  for (auto& c : ch_) {
    CUDACHECK(cudaStreamCreateWithFlags(&c.copy, cudaStreamNonBlocking));
    CUDACHECK(cudaStreamCreateWithFlags(&c.sig, cudaStreamNonBlocking));
    CUDACHECK(cudaHostAlloc(reinterpret_cast<void**>(&c.setVal), sizeof(uint64_t) * maxInflight_,
                            cudaHostAllocDefault));
    CUDACHECK(cudaMalloc(reinterpret_cast<void**>(&c.setValDev), sizeof(uint64_t) * maxInflight_));
  }
  return epSuccess;
}

cudaEvent_t EmuBackend::getEvent() {
  if (!evPool_.empty()) {
    cudaEvent_t e = evPool_.back();
    evPool_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) return nullptr;
  return e;
}

epResult_t EmuBackend::openPeer(int r, const WinInfo& in, char** out) {
  auto key = std::make_pair(r, in.allocBase);
  auto it = ipc_.find(key);
  if (it == ipc_.end()) {
    void* p = nullptr;
    CUDACHECK(cudaIpcOpenMemHandle(&p, in.ipc, cudaIpcMemLazyEnablePeerAccess));
    it = ipc_.emplace(key, Mapping{p, 0}).first;
  }
  it->second.refs++;
  *out = static_cast<char*>(it->second.ptr) + (in.ptr - in.allocBase);
  return epSuccess;
}

epResult_t EmuBackend::registerWindow(int id, void* base, size_t bytes, bool isDevice) {
  const int n = comm_->nranks, me = comm_->rank;
  std::vector<WinInfo> all(n);
  WinInfo& mine = all[me];
  memset(&mine, 0, sizeof(mine));
  mine.ptr = (uint64_t)(uintptr_t)base;
  mine.allocBase = mine.ptr;
  mine.bytes = bytes;
  mine.proc = epProcessToken();
  mine.dev = comm_->cudaDev;
  mine.isDevice = isDevice;
  CUDACHECK(cudaSetDevice(comm_->cudaDev));
  if (isDevice) {
    // An IPC handle names a whole allocation: export its start and our offset.
    const epCuDriver* drv = epCuDriverGet();
    CUdeviceptr b = 0;
    size_t sz = 0;
    if (drv->memGetAddressRange && drv->memGetAddressRange(&b, &sz, (CUdeviceptr)mine.ptr) == CUDA_SUCCESS)
      mine.allocBase = (uint64_t)b;
    if (cudaIpcGetMemHandle(&mine.ipc, (void*)(uintptr_t)mine.allocBase) == cudaSuccess) mine.hasIpc = 1;
    (void)cudaGetLastError();
  }
  EPCHECK(epBootstrapAllGather(comm_->bootstrap, all.data(), sizeof(WinInfo)));
  Win& w = win_[id];
  w.peer.assign(n, nullptr);
  for (int r = 0; r < n; r++) {
    const WinInfo& in = all[r];
    if (r == me) {
      w.peer[r] = static_cast<char*>(base);
    } else if (comm_->rankNode[r] == comm_->node) {
      // Same (virtual) node: no RDMA path, as on IB (no QP); same-node traffic is NVLink's.
      // Not mapping it also keeps this backend from opening an IPC handle that the
      // NVLink buffers of this node already opened (symmetric buffers registered as windows).
      continue;
    } else if (in.proc == mine.proc) {
      // Same process (epCommInitAll): the pointer is valid here; copies need peer access.
      if (in.dev != comm_->cudaDev) {
        cudaError_t e = cudaDeviceEnablePeerAccess(in.dev, 0);
        if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) {
          EP_WARN("Net(emulated): cannot enable peer access %d -> %d: %s", comm_->cudaDev, in.dev,
                  cudaGetErrorString(e));
          return epCudaError;
        }
        (void)cudaGetLastError();
      }
      w.peer[r] = reinterpret_cast<char*>(in.ptr);
    } else {
      if (!in.isDevice || !in.hasIpc) {
        EP_WARN("Net(emulated): window %d of rank %d is not cudaMalloc device memory, so it cannot be mapped into "
                "another process (register device memory, or use epCommInitAll)", id, r);
        return epInvalidUsage;
      }
      EPCHECK(openPeer(r, in, &w.peer[r]));
      w.opened.push_back(std::make_pair(r, in.allocBase));
    }
  }
  w.live = true;
  return epSuccess;
}

epResult_t EmuBackend::deregisterWindow(int id) {
  Win& w = win_[id];
  for (auto& key : w.opened) {
    auto it = ipc_.find(key);
    if (it != ipc_.end() && --it->second.refs == 0) {
      cudaIpcCloseMemHandle(it->second.ptr);
      ipc_.erase(it);
    }
  }
  w = Win();
  return epSuccess;
}

epResult_t EmuBackend::post(int channel, const epNetOpFields& f, uint64_t ticket) {
  Chan& c = ch_[channel];
  if (epNetOpHasSignal(f.op) && win_[f.sigWin].peer[f.peer] == nullptr) {
    EP_WARN("Net(emulated): op for rank %d, which is on this rank's node: same-node traffic goes over NVLink",
            f.peer);
    return epInvalidUsage;
  }
  if (epNetOpHasData(f.op) && win_[f.dstWin].peer[f.peer] == nullptr) {
    EP_WARN("Net(emulated): put to rank %d, which is on this rank's node: same-node traffic goes over NVLink",
            f.peer);
    return epInvalidUsage;
  }
  if ((int)c.q.size() >= maxInflight_) return epInProgress;
  if (epNetOpHasData(f.op) && f.bytes > 0) {
    char* dst = win_[f.dstWin].peer[f.peer] + f.dstOff;
    const char* src = win_[f.srcWin].peer[comm_->rank] + f.srcOff;
    CUDACHECK(cudaMemcpyAsync(dst, src, f.bytes, cudaMemcpyDefault, c.copy));
  }
  Pending p;
  p.ticket = ticket;
  p.dataEv = getEvent();
  if (p.dataEv == nullptr) {
    EP_WARN("Net(emulated): cudaEventCreate failed");
    return epCudaError;
  }
  p.hasSig = epNetOpHasSignal(f.op);
  if (p.hasSig) {
    p.sig.word = reinterpret_cast<uint64_t*>(win_[f.sigWin].peer[f.peer] + 8ull * f.sigSlot);
    p.sig.op = (int32_t)f.sigOp;
    p.sig.value = f.sigOp == EP_NET_SIG_SET ? (int64_t)(uint32_t)f.sigValue : (int64_t)f.sigValue;
  }
  if (p.hasSig && f.sigOp == EP_NET_SIG_SET) {
    // A SET is an 8-byte write: the copy engine does it, on the copy stream
    // right behind the data (stream order = RDMA order), with no kernel. LL
    // over RDMA relies on that: its kernels may hold every SM of this GPU
    // while they wait for the very signals a signal kernel would have to
    // apply. In-flight ops of a channel have distinct ticket % maxInflight_,
    // so the source value stays untouched until its copy has run.
    // Host value -> this GPU -> the peer word: the last step is a peer copy like the data's.
    const uint64_t i = ticket % (uint64_t)maxInflight_;
    c.setVal[i] = (uint64_t)p.sig.value;
    CUDACHECK(cudaMemcpyAsync(&c.setValDev[i], &c.setVal[i], sizeof(uint64_t), cudaMemcpyHostToDevice, c.copy));
    CUDACHECK(cudaMemcpyAsync(p.sig.word, &c.setValDev[i], sizeof(uint64_t), cudaMemcpyDefault, c.copy));
    p.hasSig = false;  // applied by the copy stream: done when the event below completes
  }
  CUDACHECK(cudaEventRecord(p.dataEv, c.copy));
  c.q.push_back(p);
  return epSuccess;
}

epResult_t EmuBackend::progress(epNetCompletionSink* sink) {
  for (size_t ci = 0; ci < ch_.size(); ci++) {
    Chan& c = ch_[ci];
    // 1. Ops whose data landed, in order: stop at the first still in flight.
    epEmuSignalBatch batch;
    batch.n = 0;
    std::vector<Pending*> signalled;
    for (auto& p : c.q) {
      if (p.state != 0) continue;
      cudaError_t e = cudaEventQuery(p.dataEv);
      if (e == cudaErrorNotReady) break;
      if (e != cudaSuccess) {
        EP_WARN("Net(emulated): copy on channel %zu failed: %s", ci, cudaGetErrorString(e));
        return epCudaError;
      }
      if (!p.hasSig) {
        p.state = 2;
        continue;
      }
      batch.s[batch.n++] = p.sig;
      signalled.push_back(&p);
      p.state = 1;
      if (batch.n == EP_EMU_SIGNAL_BATCH) break;
    }
    // 2. Their signals, in the same order, after the data.
    if (batch.n > 0) {
      CUDACHECK(epEmuLaunchSignals(batch, c.sig));
      for (Pending* p : signalled) {
        p->sigEv = getEvent();
        if (p->sigEv == nullptr) return epCudaError;
        CUDACHECK(cudaEventRecord(p->sigEv, c.sig));
      }
    }
    // 3. Retire finished ops from the front.
    while (!c.q.empty()) {
      Pending& p = c.q.front();
      if (p.state == 0) break;
      if (p.state == 1) {
        cudaError_t e = cudaEventQuery(p.sigEv);
        if (e == cudaErrorNotReady) break;
        if (e != cudaSuccess) {
          EP_WARN("Net(emulated): signal on channel %zu failed: %s", ci, cudaGetErrorString(e));
          return epCudaError;
        }
        putEvent(p.sigEv);
      }
      putEvent(p.dataEv);
      uint64_t t = p.ticket;
      c.q.pop_front();
      sink->complete((int)ci, t);
    }
  }
  return epSuccess;
}

}  // namespace

epResult_t epEmuBackendCreate(epComm* comm, int nChannels, std::unique_ptr<epNetBackend>* out) {
  std::unique_ptr<EmuBackend> b(new EmuBackend(comm, nChannels));
  EPCHECK(b->init());
  *out = std::move(b);
  return epSuccess;
}
