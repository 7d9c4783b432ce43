/*************************************************************************
 * epcomm: the communicator object behind the opaque epComm_t.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Owned by src/core/comm.cc. Kernel families keep their own state behind the
 * `ht`, `ll` and `net` pointers, created on first use; the family registers a
 * cleanup (epCommAddCleanup) that epCommDestroy runs, newest first, after a
 * barrier so that no peer still touches shared buffers (no barrier when every
 * rank lives in this process, i.e. epCommInitAll: those are destroyed one by
 * one from one thread). The core therefore has no link-time dependency on any
 * kernel family.
 *
 * What init guarantees to kernel families: bootstrap connected; config
 * resolved and identical on all ranks; placement vectors filled; nvlinkPeer;
 * topo (never null: this rank's NUMA node, CPU set and assigned NICs, see
 * topo/topo.h); devStatus/devStatusDev when the rank has a GPU. Report errors
 * found by a host thread with epCommSetAsyncError, by a kernel through
 * devStatusDev (device/status.h); epCommGetAsyncError reports both.
 *************************************************************************/
#ifndef EP_COMM_H_
#define EP_COMM_H_

#include <atomic>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "epcomm.h"
#include "core/debug.h"

struct epBootstrap;
struct epTopoSystem;
struct epHtState;
struct epLlState;
struct epNetState;
struct epInterState;
struct epDeviceStatus;
struct epRegistry;

/* The config after applying env vars and defaults: every field is concrete. */
struct epResolvedConfig {
  int timeoutMs;
  int bootstrapTimeoutMs;
  int numSms;
  int htMaxTokensPerRank;
  long long nvlBufferBytes;
  int llMaxTokensPerRank;
  int llHidden;
  int llNumExperts;
  int llMaxTopk;
  std::string net;  // "", "ib" or "emulated"
  int emulateNodes;
  std::string commName;
};

#define EP_COMM_MAGIC 0x65706331u /* "epc1": catches use of a destroyed or foreign pointer */

struct epComm {
  uint32_t magic = EP_COMM_MAGIC;
  uint64_t commHash = 0; /* the same on every rank of one communicator; tags handles */

  int rank = -1;
  int nranks = 0;
  int cudaDev = -1; /* -1: this rank has no GPU (CPU tests) */

  /* Placement: nodes are hosts, or virtual nodes when EP_EMULATE_NODES > 1. */
  int node = 0;
  int nNodes = 1;
  int localRank = 0;
  int localRanks = 1;
  std::vector<int> rankNode;      /* [nranks] node of each rank */
  std::vector<int> rankLocal;     /* [nranks] local index of each rank in its node */
  std::vector<int> rankCudaDev;   /* [nranks] CUDA ordinal of each rank (on its host) */
  std::vector<uint64_t> rankHostHash; /* [nranks] identity of the physical host */
  std::vector<uint64_t> rankProc; /* [nranks] epProcessToken(): equal => same process (epCommInitAll) */
  std::vector<int> nvlinkPeer;    /* [nranks] 1 if reachable by NVLink/P2P loads and stores */
  std::vector<int> nodeRanks;     /* [localRanks] the ranks of this rank's node, by local rank */
  std::vector<std::string> rankBusId; /* [nranks] PCI bus id of each rank's GPU ("" without GPU) */

  epResolvedConfig config;
  epBootstrap* bootstrap = nullptr;
  epTopoSystem* topo = nullptr;

  /* Device-side error reporting (bad expert ids, timeouts): host-mapped memory
   * that kernels write and epCommGetAsyncError reads. nullptr without a GPU. */
  epDeviceStatus* devStatus = nullptr;
  epDeviceStatus* devStatusDev = nullptr; /* the same memory, as a device pointer for kernels */

  /* Host-side asynchronous errors (proxy/progress threads): the first one
   * wins and epCommGetAsyncError reports and clears it. Use epCommSetAsyncError. */
  std::mutex asyncMutex;
  epResult_t hostAsyncError = epSuccess;
  std::string hostAsyncMsg;

  /* Kernel-family state, created on first use. */
  epHtState* ht = nullptr;
  epLlState* ll = nullptr;
  epNetState* net = nullptr;
  epInterState* inter = nullptr; /* HT internode (src/internode), on multi-node comms */
  epRegistry* reg = nullptr;     /* user-buffer registrations (src/core/register.cc) */

  /* Run by epCommDestroy/epCommAbort, last registered first. */
  std::vector<std::function<void(epComm*)>> cleanups;

  std::atomic<size_t> deviceBytes{0}; /* device memory allocated by this comm */
  std::atomic<int> aborted{0};

  char lastError[EP_LAST_ERROR_BYTES] = {0};
};

/* Validates that `comm` is a live communicator (not null, not destroyed). */
epResult_t epCommCheck(epComm_t comm, const char* fn);

/* Records an asynchronous host-side error (thread-safe; keeps the first one). */
void epCommSetAsyncError(epComm* comm, epResult_t code, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

/* Registers a cleanup for epCommDestroy (not thread-safe: call from API entry points). */
inline void epCommAddCleanup(epComm* comm, std::function<void(epComm*)> fn) { comm->cleanups.push_back(std::move(fn)); }

/* EP_TIMEOUT_MS (config.timeoutMs, >= 1) in nanoseconds: the bound of every
 * device-side wait (kernels compare it with %globaltimer). */
inline unsigned long long epCommWaitTimeoutNs(const epComm* comm) {
  return (unsigned long long)comm->config.timeoutMs * 1000000ull;
}

/* Install the comm as the logging context of the current API call. */
#define EP_COMM_SCOPE(comm) epLogScope epScope_((comm)->rank, (comm)->cudaDev, (comm)->lastError)

#endif  // EP_COMM_H_
