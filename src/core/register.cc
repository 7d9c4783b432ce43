/*************************************************************************
 * epcomm: user-buffer registration (see register.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/register.h"

#include <unistd.h>

#include <cstring>
#include <vector>

#include <cuda_runtime.h>

#include "bootstrap/bootstrap.h"
#include "core/api.h"
#include "core/hash.h"
#include "core/checks.h"
#include "core/comm.h"
#include "transports/proxy/cu_driver.h"

namespace {

// One mapping of a peer's allocation, shared by every registration of that
// peer inside the allocation (an IPC handle may be opened once per process).
struct RegMap {
  int peer = -1;
  cudaIpcMemHandle_t ipc;
  void* base = nullptr;
  int refs = 0;
};

struct RegEntry {
  bool used = false;
  char* ptr = nullptr;
  size_t bytes = 0;
  std::vector<char*> peerPtr; /* [nranks] */
  std::vector<int> peerMap;   /* [nranks] index into maps, -1: none (self, same process, no NVLink) */
};

// What each rank publishes about one registration.
struct RegInfo {
  int status;             /* epResult_t of the local checks */
  int slot;
  unsigned long long proc; /* epProcessToken() of the owning process */
  int cudaDev;
  int ipcOk;
  cudaIpcMemHandle_t ipc; /* of the allocation holding the region */
  unsigned long long offset; /* region start - allocation base */
  unsigned long long bytes;
  unsigned long long ptr; /* valid inside the owning process only */
};

}  // namespace

struct epRegistry {
  RegEntry entry[EP_REG_MAX_SLOTS];
  std::vector<RegMap> maps;
  char** devTable = nullptr; /* [EP_REG_MAX_SLOTS][nranks] */
  int live = 0;
};

namespace {

void unmapPeer(epRegistry* reg, int mapIdx) {
  if (mapIdx < 0) return;
  RegMap& m = reg->maps[mapIdx];
  if (--m.refs == 0) {
    (void)cudaIpcCloseMemHandle(m.base);
    (void)cudaGetLastError();
    m.base = nullptr;
    m.peer = -1;
  }
}

void releaseEntry(epRegistry* reg, RegEntry* e) {
  for (int m : e->peerMap) unmapPeer(reg, m);
  *e = RegEntry();
}

void destroyRegistry(epComm* comm) {
  epRegistry* reg = comm->reg;
  if (reg == nullptr) return;
  for (RegEntry& e : reg->entry)
    if (e.used) releaseEntry(reg, &e);
  if (reg->devTable) {
    (void)cudaFree(reg->devTable);
    comm->deviceBytes -= sizeof(char*) * EP_REG_MAX_SLOTS * comm->nranks;
  }
  delete reg;
  comm->reg = nullptr;
}

epResult_t getRegistry(epComm* comm, epRegistry** out) {
  if (comm->reg == nullptr) {
    epRegistry* reg = new epRegistry();
    const size_t tbl = sizeof(char*) * EP_REG_MAX_SLOTS * comm->nranks;
    cudaError_t e = cudaMalloc(&reg->devTable, tbl);
    if (e == cudaSuccess) e = cudaMemset(reg->devTable, 0, tbl);
    if (e != cudaSuccess) {
      EP_WARN("epCommRegister: cannot allocate the %zu-byte registration table: %s", tbl, cudaGetErrorString(e));
      if (reg->devTable) (void)cudaFree(reg->devTable);
      delete reg;
      return epCudaError;
    }
    comm->deviceBytes += tbl;
    comm->reg = reg;
    epCommAddCleanup(comm, destroyRegistry);
  }
  *out = comm->reg;
  return epSuccess;
}

int firstFreeSlot(const epRegistry* reg) {
  for (int s = 0; s < EP_REG_MAX_SLOTS; s++)
    if (!reg->entry[s].used) return s;
  return -1;
}

// Local checks of one region; fills `info` (status != epSuccess on failure, with a WARN).
void checkLocal(epComm* comm, epRegistry* reg, void* buff, size_t size, RegInfo* info) {
  memset(info, 0, sizeof(*info));
  info->status = epSuccess;
  info->proc = epProcessToken();
  info->cudaDev = comm->cudaDev;
  info->ptr = (unsigned long long)(uintptr_t)buff;
  info->bytes = size;
  info->slot = firstFreeSlot(reg);
  auto fail = [&](epResult_t r) { info->status = r; };
  if (buff == nullptr || size == 0) {
    EP_WARN("epCommRegister: %s", buff == nullptr ? "buff is NULL" : "size is 0");
    return fail(epInvalidArgument);
  }
  if (size > UINTPTR_MAX - (uintptr_t)buff) {
    EP_WARN("epCommRegister: [%p, +%zu) wraps around the address space", buff, size);
    return fail(epInvalidArgument);
  }
  if (info->slot < 0) {
    EP_WARN("epCommRegister: all %d registration slots are in use. HINT: deregister regions you no longer use",
            EP_REG_MAX_SLOTS);
    return fail(epInvalidUsage);
  }
  const char* p = static_cast<const char*>(buff);
  for (const RegEntry& e : reg->entry) {
    if (!e.used) continue;
    if (p < e.ptr + e.bytes && e.ptr < p + size) {
      EP_WARN("epCommRegister: [%p, +%zu) overlaps the registered region [%p, +%zu)", buff, size, (void*)e.ptr,
              e.bytes);
      return fail(epInvalidUsage);
    }
  }
  cudaPointerAttributes attr;
  cudaError_t ce = cudaPointerGetAttributes(&attr, buff);
  if (ce != cudaSuccess || attr.type != cudaMemoryTypeDevice || attr.device != comm->cudaDev) {
    (void)cudaGetLastError();
    EP_WARN("epCommRegister: %p is not device memory of this rank's GPU %d (type %d, device %d): host, managed or "
            "unknown memory cannot be registered",
            buff, comm->cudaDev, ce == cudaSuccess ? (int)attr.type : -1, ce == cudaSuccess ? attr.device : -1);
    return fail(epInvalidArgument);
  }
  const epCuDriver* drv = epCuDriverGet();
  if (drv->memGetAddressRange == nullptr) {
    EP_WARN("epCommRegister: the CUDA driver lacks cuMemGetAddressRange");
    return fail(epNotSupported);
  }
  CUdeviceptr base = 0;
  size_t allocBytes = 0;
  CUresult cr = drv->memGetAddressRange(&base, &allocBytes, (CUdeviceptr)(uintptr_t)buff);
  if (cr != CUDA_SUCCESS) {
    EP_WARN("epCommRegister: cuMemGetAddressRange(%p) failed: %s", buff, epCuErrorString(cr));
    return fail(epInvalidArgument);
  }
  const unsigned long long off = (unsigned long long)((uintptr_t)buff - (uintptr_t)base);
  if (off > allocBytes || size > allocBytes - off) {  // no wrap-around for a huge size
    EP_WARN("epCommRegister: [%p, +%zu) runs past the end of its allocation [%p, +%zu)", buff, size,
            (void*)(uintptr_t)base, allocBytes);
    return fail(epInvalidArgument);
  }
  info->offset = off;
  ce = cudaIpcGetMemHandle(&info->ipc, (void*)(uintptr_t)base);
  info->ipcOk = ce == cudaSuccess;
  if (!info->ipcOk) {
    // Refused even when every peer is in this process: memory IPC cannot
    // export (stream-ordered pools, cuMem/VMM) also needs its own access
    // grants (cudaMemPoolSetAccess / cuMemSetAccess) before a peer GPU may
    // touch it, which peer access does not give: a kernel would fault.
    (void)cudaGetLastError();
    EP_WARN("epCommRegister: the allocation holding %p cannot be exported with CUDA IPC (%s). HINT: allocate with "
            "cudaMalloc (stream-ordered pool, cuMem/VMM and managed allocations are not supported); unregistered "
            "buffers use the ring path",
            buff, cudaGetErrorString(ce));
    return fail(epNotSupported);
  }
}

// First non-success status over the ranks (and the rank that had it), else epSuccess.
epResult_t firstFailure(const std::vector<RegInfo>& all, int* who) {
  for (size_t r = 0; r < all.size(); r++) {
    if (all[r].status != epSuccess) {
      *who = (int)r;
      return (epResult_t)all[r].status;
    }
  }
  return epSuccess;
}

// Maps rank r's region (same process: its pointer; else its allocation, shared).
epResult_t mapPeer(epComm* comm, epRegistry* reg, int r, const RegInfo& info, char** ptr, int* mapIdx) {
  *mapIdx = -1;
  if (info.proc == epProcessToken()) {
    // Same GPU (two ranks on one device): nothing to enable.
    cudaError_t e = info.cudaDev == comm->cudaDev ? cudaSuccess : cudaDeviceEnablePeerAccess(info.cudaDev, 0);
    if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) {
      EP_WARN("epCommRegister: cudaDeviceEnablePeerAccess(%d) failed: %s", info.cudaDev, cudaGetErrorString(e));
      (void)cudaGetLastError();
      return epCudaError;
    }
    (void)cudaGetLastError();
    *ptr = reinterpret_cast<char*>((uintptr_t)info.ptr);
    return epSuccess;
  }
  int idx = -1, freeIdx = -1;
  for (size_t i = 0; i < reg->maps.size(); i++) {
    const RegMap& m = reg->maps[i];
    if (m.refs > 0 && m.peer == r && memcmp(&m.ipc, &info.ipc, sizeof(info.ipc)) == 0) idx = (int)i;
    if (m.refs == 0 && freeIdx < 0) freeIdx = (int)i;
  }
  if (idx < 0) {
    RegMap m;
    m.peer = r;
    m.ipc = info.ipc;
    cudaError_t e = cudaIpcOpenMemHandle(&m.base, info.ipc, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      EP_WARN("epCommRegister: cannot map rank %d's region (cudaIpcOpenMemHandle: %s)", r, cudaGetErrorString(e));
      return epCudaError;
    }
    if (freeIdx >= 0) {
      reg->maps[freeIdx] = m;
      idx = freeIdx;
    } else {
      reg->maps.push_back(m);
      idx = (int)reg->maps.size() - 1;
    }
  }
  reg->maps[idx].refs++;
  *mapIdx = idx;
  *ptr = static_cast<char*>(reg->maps[idx].base) + info.offset;
  return epSuccess;
}

epResult_t uploadRow(epComm* comm, epRegistry* reg, int slot, const std::vector<char*>& row) {
  CUDACHECK(cudaMemcpy(reg->devTable + (size_t)slot * comm->nranks, row.data(), sizeof(char*) * comm->nranks,
                       cudaMemcpyHostToDevice));
  return epSuccess;
}

}  // namespace

bool epRegLookup(epComm* comm, const void* ptr, size_t bytes, int* slot, long long* offset) {
  if (comm->reg == nullptr || ptr == nullptr) return false;
  const char* p = static_cast<const char*>(ptr);
  for (int s = 0; s < EP_REG_MAX_SLOTS; s++) {
    const RegEntry& e = comm->reg->entry[s];
    if (!e.used || p < e.ptr || p >= e.ptr + e.bytes) continue;
    if ((size_t)(e.ptr + e.bytes - p) < bytes) return false;
    *slot = s;
    *offset = (long long)(p - e.ptr);
    return true;
  }
  return false;
}

size_t epRegBytesAfter(epComm* comm, const void* ptr) {
  int slot;
  long long off;
  if (!epRegLookup(comm, ptr, 1, &slot, &off)) return 0;
  return comm->reg->entry[slot].bytes - (size_t)off;
}

char* const* epRegDevTable(epComm* comm) { return comm->reg ? comm->reg->devTable : nullptr; }

int epRegCount(epComm* comm) { return comm->reg ? comm->reg->live : 0; }

EP_API epResult_t epCommRegister(epComm_t comm, void* buff, size_t size, void** handle) {
  EPCHECK(epCommCheck(comm, "epCommRegister"));
  EP_COMM_SCOPE(comm);
  if (handle != nullptr) *handle = nullptr;
  const int R = comm->nranks, me = comm->rank;
  std::vector<RegInfo> all(R);
  // A local problem becomes this rank's status in the exchange below, never
  // an early return: the peers would wait in the exchange for a rank that
  // left (until the bootstrap timeout) instead of failing with it.
  epRegistry* reg = nullptr;
  epResult_t pre = epSuccess;
  cudaError_t ce = cudaSuccess;
  if (handle == nullptr) {
    EP_WARN("epCommRegister: argument 'handle' is NULL");
    pre = epInvalidArgument;
  } else if (comm->cudaDev < 0) {
    EP_WARN("epCommRegister: rank %d has no CUDA device", comm->rank);
    pre = epInvalidUsage;
  } else if ((ce = cudaSetDevice(comm->cudaDev)) != cudaSuccess) {
    (void)cudaGetLastError();
    EP_WARN("epCommRegister: cudaSetDevice(%d) failed: %s", comm->cudaDev, cudaGetErrorString(ce));
    pre = epCudaError;
  } else {
    pre = getRegistry(comm, &reg);
  }
  if (pre == epSuccess) {
    checkLocal(comm, reg, buff, size, &all[me]);
  } else {
    memset(&all[me], 0, sizeof(RegInfo));
    all[me].status = pre;
    all[me].slot = -1;
  }
  // Everyone learns every rank's outcome, so all fail together (never a rank
  // that waits for peers that gave up).
  EPCHECK(epBootstrapAllGather(comm->bootstrap, all.data(), sizeof(RegInfo)));
  int who = -1;
  epResult_t res = firstFailure(all, &who);
  if (res != epSuccess) {
    // A rank that failed itself keeps its own message; the others name the first rank that failed.
    if (all[me].status == epSuccess) EP_WARN("epCommRegister: rank %d could not register its region (see its log)", who);
    return res;
  }
  for (int r = 0; r < R; r++) {
    if (all[r].slot != all[me].slot) {
      EP_WARN("epCommRegister: rank %d registers into slot %d, rank %d into slot %d: registrations and "
              "deregistrations must happen in the same order on every rank",
              r, all[r].slot, me, all[me].slot);
      return epInvalidUsage;
    }
  }
  const int slot = all[me].slot;
  RegEntry e;
  e.ptr = static_cast<char*>(buff);
  e.bytes = size;
  e.peerPtr.assign(R, nullptr);
  e.peerMap.assign(R, -1);
  RegInfo mine = all[me];
  mine.status = epSuccess;
  for (int r = 0; r < R && mine.status == epSuccess; r++) {
    if (r == me) {
      e.peerPtr[r] = e.ptr;
    } else if (comm->nvlinkPeer[r]) {
      mine.status = mapPeer(comm, reg, r, all[r], &e.peerPtr[r], &e.peerMap[r]);
    }
  }
  if (mine.status == epSuccess) mine.status = uploadRow(comm, reg, slot, e.peerPtr);
  // Second round: every rank mapped every peer (or all back out).
  std::vector<RegInfo> done(R);
  done[me] = mine;
  res = epBootstrapAllGather(comm->bootstrap, done.data(), sizeof(RegInfo));
  if (res == epSuccess) res = firstFailure(done, &who);
  if (res != epSuccess) {
    if (who >= 0 && done[me].status == epSuccess)
      EP_WARN("epCommRegister: rank %d could not map its peers' regions (see its log)", who);
    for (int m : e.peerMap) unmapPeer(reg, m);
    std::vector<char*> zero(R, nullptr);
    (void)uploadRow(comm, reg, slot, zero);
    return res;
  }
  e.used = true;
  reg->entry[slot] = e;
  reg->live++;
  *handle = &reg->entry[slot];
  EP_INFO(EP_LOG_ALLOC, "registered [%p, +%zu) as slot %d (%d live)", buff, size, slot, reg->live);
  return epSuccess;
}

EP_API epResult_t epCommDeregister(epComm_t comm, void* handle) {
  EPCHECK(epCommCheck(comm, "epCommDeregister"));
  EP_COMM_SCOPE(comm);
  epRegistry* reg = comm->reg;
  int slot = -1;
  if (reg != nullptr && handle != nullptr) {
    for (int s = 0; s < EP_REG_MAX_SLOTS; s++)
      if (handle == &reg->entry[s] && reg->entry[s].used) slot = s;
  }
  // Work still queued may use the mappings (ours of the peers' regions, and
  // the peers' of ours): every rank drains its device BEFORE the exchange, so
  // once the exchange completes no kernel anywhere touches the region and the
  // caller may free it.
  epResult_t res = epSuccess;
  if (slot >= 0 && comm->cudaDev >= 0) {
    cudaError_t e = cudaSetDevice(comm->cudaDev);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      EP_WARN("epCommDeregister: draining GPU %d failed: %s", comm->cudaDev, cudaGetErrorString(e));
      res = epCudaError;
    }
  }
  // Collective like the registration: every rank learns whether all handles were valid.
  std::vector<int> slots(comm->nranks, -1);
  slots[comm->rank] = slot;
  if (slot < 0) EP_WARN("epCommDeregister: %p is not a live registration handle of this communicator", handle);
  EPCHECK(epBootstrapAllGather(comm->bootstrap, slots.data(), sizeof(int)));
  for (int r = 0; r < comm->nranks; r++) {
    if (slots[r] != slot) {
      EP_WARN("epCommDeregister: rank %d deregisters slot %d, rank %d slot %d: deregister the same registration, "
              "in the same order, on every rank",
              r, slots[r], comm->rank, slot);
      return slot < 0 ? epInvalidArgument : epInvalidUsage;
    }
  }
  if (slot < 0) return epInvalidArgument;
  // The slot is freed on every rank whatever happens below (a rank that kept
  // it would disagree with its peers about every later slot).
  std::vector<char*> zero(comm->nranks, nullptr);
  if (res == epSuccess) res = uploadRow(comm, reg, slot, zero);
  releaseEntry(reg, &reg->entry[slot]);
  reg->live--;
  if (res != epSuccess) return res;
  EP_INFO(EP_LOG_ALLOC, "deregistered slot %d (%d live)", slot, reg->live);
  return epSuccess;
}
