/*************************************************************************
 * epcomm: communicator lifecycle and queries (public API).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Init, per rank: resolve the config -> bootstrap -> check the config is the
 * same everywhere -> publish identities and compute placement -> NVLink
 * reachability -> topology -> device status memory -> agree that every rank
 * succeeded. Works without a GPU or driver (cudaDev = -1) for everything that
 * does not touch device memory, so CPU tests build real communicators.
 *************************************************************************/
#include <unistd.h>

#include <cctype>
#include <cstdarg>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

#include "bootstrap/bootstrap.h"
#include "core/api.h"
#include "core/async_error.h"
#include "internode/inter_state.h"
#include "core/checks.h"
#include "core/comm.h"
#include "core/config.h"
#include "core/cuda_util.h"
#include "core/hash.h"
#include "core/placement.h"
#include "device/status.h"
#include "topo/topo.h"
#include "transports/proxy/net.h"

epResult_t epCommCheck(epComm_t comm, const char* fn) {
  if (comm == nullptr) {
    EP_WARN("%s: comm is NULL", fn);
    return epInvalidArgument;
  }
  if (comm->magic != EP_COMM_MAGIC) {
    EP_WARN("%s: comm %p is not a live communicator (destroyed, aborted or corrupted)", fn, (void*)comm);
    return epInvalidArgument;
  }
  return epSuccess;
}

void epCommSetAsyncError(epComm* comm, epResult_t code, const char* fmt, ...) {
  char msg[EP_LAST_ERROR_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  std::lock_guard<std::mutex> lock(comm->asyncMutex);
  if (comm->hostAsyncError != epSuccess) return;
  comm->hostAsyncError = code;
  comm->hostAsyncMsg = msg;
}

namespace {

/* Frees everything init may have created; safe on a partly built comm. */
void commFree(epComm* comm) {
  // Kernel families first, newest first: they may still use what follows.
  for (auto it = comm->cleanups.rbegin(); it != comm->cleanups.rend(); ++it) (*it)(comm);
  comm->cleanups.clear();
  if (comm->devStatus) {
    if (cudaFreeHost(comm->devStatus) != cudaSuccess) (void)cudaGetLastError();
    comm->devStatus = nullptr;
    comm->devStatusDev = nullptr;
  }
  epTopoFree(comm->topo);
  comm->topo = nullptr;
  epBootstrapDestroy(comm->bootstrap);
  comm->bootstrap = nullptr;
  comm->magic = 0;  // a stale pointer now fails epCommCheck (while the memory is not reused)
  delete comm;
}

epResult_t publishIdentity(epComm* comm, std::vector<epRankIdentity>* ids) {
  ids->resize(comm->nranks);
  epRankIdentity& me = (*ids)[comm->rank];
  memset(&me, 0, sizeof(me));
  me.hostHash = epHostHash();
  me.procToken = epProcessToken();
  me.cudaDev = comm->cudaDev;
  gethostname(me.hostName, sizeof(me.hostName) - 1);
  if (comm->cudaDev >= 0) EPCHECK(epCudaBusId(comm->cudaDev, me.busId, sizeof(me.busId)));
  return epBootstrapAllGather(comm->bootstrap, ids->data(), sizeof(epRankIdentity));
}

epResult_t computePlacement(epComm* comm, const std::vector<epRankIdentity>& ids) {
  epPlacement p;
  EPCHECK(epPlacementCompute(ids, comm->config.emulateNodes, &p));
  int n = comm->nranks;
  comm->rankNode = p.rankNode;
  comm->rankLocal = p.rankLocal;
  comm->node = p.rankNode[comm->rank];
  comm->nNodes = p.nNodes;
  comm->localRank = p.rankLocal[comm->rank];
  comm->localRanks = p.nodeSize[comm->node];
  comm->rankCudaDev.resize(n);
  comm->rankHostHash.resize(n);
  comm->rankProc.resize(n);
  comm->rankBusId.resize(n);
  comm->nodeRanks.assign(comm->localRanks, -1);
  for (int r = 0; r < n; r++) {
    comm->rankCudaDev[r] = ids[r].cudaDev;
    comm->rankHostHash[r] = ids[r].hostHash;
    comm->rankProc[r] = ids[r].procToken;
    comm->rankBusId[r] = ids[r].busId;
    if (p.rankNode[r] == comm->node) comm->nodeRanks[p.rankLocal[r]] = r;
  }
  // NVLink/P2P reachability: same (virtual) node and either the same GPU or
  // CUDA peer access. Peers are matched by PCI bus id, not ordinal, because
  // processes may see different CUDA_VISIBLE_DEVICES orders.
  comm->nvlinkPeer.assign(n, 0);
  comm->nvlinkPeer[comm->rank] = 1;
  for (int r = 0; r < n; r++) {
    if (r == comm->rank || p.rankNode[r] != comm->node) continue;
    if (comm->cudaDev < 0 || ids[r].cudaDev < 0) continue;
    if (strcmp(ids[r].busId, ids[comm->rank].busId) == 0) {
      comm->nvlinkPeer[r] = 1;
      continue;
    }
    int can = 0;
    if (epCudaPeerReachable(comm->cudaDev, ids[r].busId, &can) != epSuccess) can = 0;
    comm->nvlinkPeer[r] = can;
  }
  return epSuccess;
}

epResult_t allocDeviceStatus(epComm* comm) {
  if (comm->cudaDev < 0) return epSuccess;
  void* p = nullptr;
  CUDACHECK(cudaHostAlloc(&p, sizeof(epDeviceStatus), cudaHostAllocMapped));
  memset(p, 0, sizeof(epDeviceStatus));
  comm->devStatus = static_cast<epDeviceStatus*>(p);
  void* d = nullptr;
  CUDACHECK(cudaHostGetDevicePointer(&d, p, 0));
  comm->devStatusDev = static_cast<epDeviceStatus*>(d);
  return epSuccess;
}

/* Every rank reports whether its local steps worked, so that one rank's
 * failure fails all of them now instead of a timeout later. */
epResult_t agreeOnInit(epComm* comm, epResult_t mine) {
  std::vector<int32_t> st(comm->nranks);
  st[comm->rank] = (int32_t)mine;
  EPCHECK(epBootstrapAllGather(comm->bootstrap, st.data(), sizeof(int32_t)));
  if (mine != epSuccess) return mine;
  for (int r = 0; r < comm->nranks; r++) {
    if (st[r] != epSuccess) {
      EP_WARN("Init: rank %d failed to initialise (%s)", r, epGetErrorString((epResult_t)st[r]));
      return epRemoteError;
    }
  }
  return epSuccess;
}

epResult_t initRank(epComm_t* out, int nranks, const epUniqueId* id, int rank, const epResolvedConfig& cfg,
                    int cudaDev) {
  epLogScope scope(rank, cudaDev, nullptr);
  epComm* comm = new epComm();
  comm->rank = rank;
  comm->nranks = nranks;
  comm->cudaDev = cudaDev;
  comm->config = cfg;
  epResult_t res = epSuccess, local = epSuccess;
  std::vector<epRankIdentity> ids;
  EPCHECKGOTO(epBootstrapInit(id, rank, nranks, cfg.bootstrapTimeoutMs, &comm->bootstrap), res, fail);
  comm->commHash = epHashMix(epBootstrapMagic(comm->bootstrap) ^ (uint64_t)nranks);
  EPCHECKGOTO(epConfigCheckAcrossRanks(comm), res, fail);
  EPCHECKGOTO(publishIdentity(comm, &ids), res, fail);
  // From here on a failure is local to this rank until agreeOnInit shares it.
  local = computePlacement(comm, ids);
  if (local == epSuccess) local = epTopoCommInit(comm);
  if (local == epSuccess) local = allocDeviceStatus(comm);
  EPCHECKGOTO(agreeOnInit(comm, local), res, fail);
  EP_INFO(EP_LOG_INIT, "Init: rank %d/%d cudaDev %d node %d/%d local %d/%d commHash %016llx%s%s", rank, nranks,
          cudaDev, comm->node, comm->nNodes, comm->localRank, comm->localRanks, (unsigned long long)comm->commHash,
          cfg.commName.empty() ? "" : " name ", cfg.commName.c_str());
  *out = comm;
  return epSuccess;
fail:
  commFree(comm);
  return res;
}

}  // namespace

/* ---------------------------------------------------------------- public API */

EP_API epResult_t epGetUniqueId(epUniqueId* uniqueId) {
  EP_PTR_CHECK(uniqueId, "epGetUniqueId");
  return epBootstrapGetUniqueId(uniqueId);
}

EP_API epResult_t epCommInitRank(epComm_t* newcomm, int nranks, epUniqueId commId, int rank,
                                 const epConfig_t* config) {
  EP_PTR_CHECK(newcomm, "epCommInitRank");
  *newcomm = nullptr;
  EP_ARG_CHECK(nranks >= 1, "epCommInitRank: nranks must be >= 1, got %d", nranks);
  EP_ARG_CHECK(rank >= 0 && rank < nranks, "epCommInitRank: rank %d out of range [0, %d)", rank, nranks);
  epResolvedConfig cfg;
  EPCHECK(epConfigResolve(config, &cfg));
  return initRank(newcomm, nranks, &commId, rank, cfg, epCudaCurrentDevice());
}

EP_API epResult_t epCommInitAll(epComm_t* comms, int ndev, const int* devlist, const epConfig_t* config) {
  EP_PTR_CHECK(comms, "epCommInitAll");
  EP_ARG_CHECK(ndev >= 1, "epCommInitAll: ndev must be >= 1, got %d", ndev);
  for (int i = 0; i < ndev; i++) comms[i] = nullptr;
  epResolvedConfig cfg;
  EPCHECK(epConfigResolve(config, &cfg));
  int visible = epCudaDeviceCount();
  std::vector<int> devs(ndev);
  for (int i = 0; i < ndev; i++) {
    if (devlist) {
      EP_ARG_CHECK(devlist[i] >= 0 && devlist[i] < visible, "epCommInitAll: devlist[%d] = %d but %d CUDA device(s) are visible",
                   i, devlist[i], visible);
      devs[i] = devlist[i];
    } else {
      // Without a GPU every rank is a CPU-only rank (tests); with GPUs, 0..ndev-1.
      EP_ARG_CHECK(visible == 0 || ndev <= visible, "epCommInitAll: ndev %d > %d visible CUDA devices", ndev, visible);
      devs[i] = visible == 0 ? -1 : i;
    }
  }
  epUniqueId id;
  EPCHECK(epBootstrapGetLocalUniqueId(&id));
  std::vector<epResult_t> res(ndev, epSuccess);
  std::vector<std::string> why(ndev);  // each rank's error text lives in its thread: bring it back
  std::vector<std::thread> threads;
  for (int i = 0; i < ndev; i++) {
    threads.emplace_back([&, i] {
      if (devs[i] >= 0 && cudaSetDevice(devs[i]) != cudaSuccess) {
        (void)cudaGetLastError();
        epLogScope scope(i, devs[i], nullptr);
        EP_WARN("epCommInitAll: cudaSetDevice(%d) failed", devs[i]);
        res[i] = epCudaError;
        return;
      }
      res[i] = initRank(&comms[i], ndev, &id, i, cfg, devs[i]);
      if (res[i] != epSuccess) why[i] = epThreadLastError();
    });
  }
  for (auto& t : threads) t.join();
  epResult_t first = epSuccess;
  for (int i = 0; i < ndev; i++)
    if (res[i] != epSuccess && first == epSuccess) {
      first = res[i];
      EP_WARN("epCommInitAll: rank %d (device %d) failed: %s", i, devs[i], why[i].c_str());
    }
  if (first != epSuccess) {
    for (int i = 0; i < ndev; i++)
      if (comms[i]) {
        epBootstrapAbort(comms[i]->bootstrap);
        commFree(comms[i]);
        comms[i] = nullptr;
      }
  }
  return first;
}

EP_API epResult_t epCommDestroy(epComm_t comm) {
  EPCHECK(epCommCheck(comm, "epCommDestroy"));
  epResult_t res;
  {
    EP_COMM_SCOPE(comm);
    // No peer may still be reading our shared buffers when the cleanups free them.
    // When every rank lives in this process (epCommInitAll) the caller destroys
    // them one after the other from one thread, and none runs anything while it
    // does: a barrier there would only wait for the timeout.
    bool oneProcess = true;
    for (uint64_t p : comm->rankProc) oneProcess &= (p == epProcessToken());
    // Remote ops this rank's proxy still holds (the last LL acknowledgements,
    // which nobody waits for) must land before the barrier: after it the
    // peers free the windows they target.
    if (comm->net != nullptr && !comm->aborted) {
      const epResult_t d = epNetDrain(comm);
      if (d != epSuccess) EP_WARN("epCommDestroy: draining the network proxy failed; closing anyway");
    }
    res = oneProcess ? epSuccess : epBootstrapBarrier(comm->bootstrap);
    if (res != epSuccess) {
      std::string why = comm->lastError;
      EP_WARN("epCommDestroy: the closing barrier failed (%s); local resources freed anyway", why.c_str());
    }
  }
  commFree(comm);
  return res;
}

EP_API epResult_t epCommAbort(epComm_t comm) {
  EPCHECK(epCommCheck(comm, "epCommAbort"));
  {
    EP_COMM_SCOPE(comm);
    comm->aborted = 1;
    epBootstrapAbort(comm->bootstrap);
    EP_INFO(EP_LOG_INIT, "epCommAbort: rank %d aborting", comm->rank);
  }
  commFree(comm);
  return epSuccess;
}

#define EP_QUERY(fnName, Type, arg, expr)                      \
  EP_API epResult_t fnName(epComm_t comm, Type* arg) {         \
    EPCHECK(epCommCheck(comm, #fnName));                       \
    EP_COMM_SCOPE(comm);                                       \
    EP_PTR_CHECK(arg, #fnName);                                \
    *arg = (expr);                                             \
    return epSuccess;                                          \
  }

EP_QUERY(epCommUserRank, int, rank, comm->rank)
EP_QUERY(epCommCount, int, count, comm->nranks)
EP_QUERY(epCommCuDevice, int, device, comm->cudaDev)
EP_QUERY(epCommLocalRank, int, localRank, comm->localRank)
EP_QUERY(epCommLocalSize, int, localSize, comm->localRanks)
EP_QUERY(epCommNodeIndex, int, node, comm->node)
EP_QUERY(epCommNodeCount, int, nodes, comm->nNodes)
EP_QUERY(epCommMemoryUsage, size_t, bytes, comm->deviceBytes.load())

EP_API epResult_t epCommNvlinkPeers(epComm_t comm, int* isNvlinkPeer, int nranks) {
  EPCHECK(epCommCheck(comm, "epCommNvlinkPeers"));
  EP_COMM_SCOPE(comm);
  EP_PTR_CHECK(isNvlinkPeer, "epCommNvlinkPeers");
  EP_ARG_CHECK(nranks == comm->nranks, "epCommNvlinkPeers: nranks %d != communicator size %d", nranks, comm->nranks);
  for (int r = 0; r < nranks; r++) isNvlinkPeer[r] = comm->nvlinkPeer[r];
  return epSuccess;
}

EP_API epResult_t epCommGetAsyncError(epComm_t comm, epResult_t* asyncError) {
  EPCHECK(epCommCheck(comm, "epCommGetAsyncError"));
  EP_COMM_SCOPE(comm);
  EP_PTR_CHECK(asyncError, "epCommGetAsyncError");
  *asyncError = epSuccess;
  if (comm->devStatus) {
    // Host-mapped memory written by kernels: read through volatile, clear the
    // context first and `kind` last so a new error is never half-cleared.
    volatile epDeviceStatus* vs = comm->devStatus;
    if (vs->kind != EP_DEVERR_NONE) {
      epDeviceStatus s;
      s.kind = vs->kind;
      s.a = vs->a;
      s.b = vs->b;
      s.value = vs->value;
      s.family = vs->family;
      if (comm->inter) epInterMapDeviceStatus(comm, &s);  // node-comm ranks -> this comm's ranks
      char msg[512];
      *asyncError = epDeviceStatusDescribe(s, msg, sizeof(msg));
      EP_WARN("%s", msg);
      vs->a = vs->b = 0;
      vs->value = 0;
      vs->family = 0;
      __sync_synchronize();
      vs->kind = EP_DEVERR_NONE;
      return epSuccess;
    }
  }
  std::lock_guard<std::mutex> lock(comm->asyncMutex);
  if (comm->hostAsyncError != epSuccess) {
    *asyncError = comm->hostAsyncError;
    EP_WARN("%s", comm->hostAsyncMsg.c_str());
    comm->hostAsyncError = epSuccess;
    comm->hostAsyncMsg.clear();
  }
  return epSuccess;
}
