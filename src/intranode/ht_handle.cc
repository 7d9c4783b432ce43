/*************************************************************************
 * epcomm: HT dispatch handle (see ht_handle.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "intranode/ht_handle.h"

#include <cstring>

#include <cuda_runtime.h>

#include "core/api.h"
#include "core/checks.h"
#include "core/comm.h"
#include "intranode/ht_state.h"
#include "internode/inter_api.h"

namespace {

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

void freeHandle(epHtHandle* h) {
  if (h->inter) epInterHandleFree(h->inter);
  if (h->devMem) (void)cudaFree(h->devMem);
  if (h->hostInfo) (void)cudaFreeHost(h->hostInfo);
  h->magic = 0;
  delete h;
}

}  // namespace

epResult_t epHtHandleCheck(epComm* comm, epHtHandle* h, const char* fn) {
  EP_ARG_CHECK(h != nullptr, "%s: handle is NULL", fn);
  EP_USAGE_CHECK(h->magic == EP_HT_HANDLE_MAGIC, "%s: handle is not a live epHtHandle_t (destroyed or corrupt)", fn);
  EP_USAGE_CHECK(h->commHash == comm->commHash && h->nranks == comm->nranks && h->rank == comm->rank,
                 "%s: the handle belongs to another communicator (hash %llx, rank %d/%d; this comm %llx, rank %d/%d)",
                 fn, (unsigned long long)h->commHash, h->rank, h->nranks, (unsigned long long)comm->commHash,
                 comm->rank, comm->nranks);
  return epSuccess;
}

EP_API epResult_t epHtHandleCreate(epComm_t comm, int maxTokens, epHtHandle_t* handle) {
  EPCHECK(epCommCheck(comm, "epHtHandleCreate"));
  EP_COMM_SCOPE(comm);
  EP_PTR_CHECK(handle, "epHtHandleCreate");
  *handle = nullptr;
  if (epInterWanted(comm)) return epInterHandleCreate(comm, maxTokens, handle);
  EPCHECK(epHtCheckIntranode(comm, "epHtHandleCreate"));
  EP_ARG_CHECK(maxTokens >= 1, "epHtHandleCreate: maxTokens must be >= 1 (got %d)", maxTokens);
  EP_ARG_CHECK(maxTokens <= comm->config.htMaxTokensPerRank,
               "epHtHandleCreate: maxTokens %d exceeds the configured maximum %d (htMaxTokensPerRank / "
               "EP_HT_MAX_TOKENS)",
               maxTokens, comm->config.htMaxTokensPerRank);
  const int R = comm->nranks;
  epHtHandle* h = new epHtHandle();
  h->commHash = comm->commHash;
  h->nranks = R;
  h->rank = comm->rank;
  h->cudaDev = comm->cudaDev;
  h->maxTokens = maxTokens;

  // One device allocation, carved; every piece 256-byte aligned.
  size_t off[11], total = 0;
  size_t sizes[11] = {(size_t)maxTokens * R,
                     (size_t)maxTokens * R * 4,
                     (size_t)R * EP_HT_MAX_CHANNELS * 4,
                     (size_t)R * EP_HT_MAX_CHANNELS * 4,
                     (size_t)R * EP_HT_MAX_CHANNELS * 4,
                     (size_t)(R + 1) * 4,
                     4,
                     (size_t)R * EP_HT_MAX_LOCAL_EXPERTS * 4,
                     (size_t)EP_HT_MAX_LOCAL_EXPERTS * 4,
                     4,
                     (size_t)EP_HT_MAX_NVL_RANKS * 4};
  for (int i = 0; i < 11; i++) {
    off[i] = total;
    total += alignUp(sizes[i], 256);
  }
  epResult_t res = epSuccess;
  char* base = nullptr;
  void* hostDev = nullptr;
  CUDACHECKGOTO(cudaSetDevice(comm->cudaDev), res, fail);
  CUDACHECKGOTO(cudaMalloc(&h->devMem, total), res, fail);
  CUDACHECKGOTO(cudaMemset(h->devMem, 0, total), res, fail);
  base = static_cast<char*>(h->devMem);
  h->dev.isTokenInRank = reinterpret_cast<uint8_t*>(base + off[0]);
  h->dev.slotPrefix = reinterpret_cast<int*>(base + off[1]);
  h->dev.sendChanCount = reinterpret_cast<int*>(base + off[2]);
  h->dev.recvChanCount = reinterpret_cast<int*>(base + off[3]);
  h->dev.recvChanPrefix = reinterpret_cast<int*>(base + off[4]);
  h->dev.rankPrefix = reinterpret_cast<int*>(base + off[5]);
  h->dev.numRecv = reinterpret_cast<int*>(base + off[6]);
  h->dev.expertCount = reinterpret_cast<int*>(base + off[7]);
  h->dev.expertAligned = reinterpret_cast<int*>(base + off[8]);
  h->dev.notifyTicket = reinterpret_cast<int*>(base + off[9]);
  h->dev.sendBase = reinterpret_cast<int*>(base + off[10]);
  CUDACHECKGOTO(cudaHostAlloc(reinterpret_cast<void**>(&h->hostInfo), sizeof(epHtHostInfo), cudaHostAllocMapped), res,
                fail);
  memset(h->hostInfo, 0, sizeof(epHtHostInfo));
  CUDACHECKGOTO(cudaHostGetDevicePointer(&hostDev, h->hostInfo, 0), res, fail);
  h->hostInfoDev = static_cast<epHtHostInfo*>(hostDev);
  EP_INFO(EP_LOG_HT | EP_LOG_ALLOC, "HT handle: %zu device bytes for %d tokens", total, maxTokens);
  *handle = h;
  return epSuccess;
fail:
  freeHandle(h);
  return res;
}

EP_API epResult_t epHtHandleDestroy(epHtHandle_t handle) {
  if (handle == nullptr) return epSuccess;
  EP_ARG_CHECK(handle->magic == EP_HT_HANDLE_MAGIC, "epHtHandleDestroy: not a live handle");
  int prev = -1;
  (void)cudaGetDevice(&prev);
  if (handle->cudaDev >= 0) (void)cudaSetDevice(handle->cudaDev);
  freeHandle(handle);
  if (prev >= 0) (void)cudaSetDevice(prev);
  return epSuccess;
}

EP_API epResult_t epHtHandleNumRecv(epHtHandle_t handle, int* numRecvTokens) {
  EP_PTR_CHECK(handle, "epHtHandleNumRecv");
  EP_PTR_CHECK(numRecvTokens, "epHtHandleNumRecv");
  EP_USAGE_CHECK(handle->magic == EP_HT_HANDLE_MAGIC, "epHtHandleNumRecv: not a live handle");
  *numRecvTokens = handle->hostNumRecv;
  return epSuccess;
}
