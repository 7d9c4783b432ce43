/*************************************************************************
 * epcomm: symmetric NVLink buffers (see nvl_buffer.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/nvlink/nvl_buffer.h"

#include <unistd.h>

#include <cstring>

#include <cuda_runtime.h>

#include "bootstrap/bootstrap.h"
#include "core/checks.h"
#include "core/comm.h"
#include "core/hash.h"

namespace {

// What each rank publishes about its buffer.
struct NvlBufferInfo {
  cudaIpcMemHandle_t ipc;
  void* ptr;  // valid only inside the owning process
  unsigned long long proc; /* epProcessToken() of the owning process */
  int cudaDev;
  unsigned long long bytes;
};

}  // namespace

epResult_t epNvlBufferAlloc(epComm* comm, size_t bytes, epNvlBuffer* buf) {
  EP_USAGE_CHECK(comm->cudaDev >= 0, "NVL buffer: rank %d has no CUDA device", comm->rank);
  EP_ARG_CHECK(bytes > 0, "NVL buffer: size must be > 0");
  epResult_t res = epSuccess;
  std::vector<NvlBufferInfo> info(comm->nranks);
  buf->bytes = bytes;
  buf->peer.assign(comm->nranks, nullptr);
  buf->ipcOpened.assign(comm->nranks, 0);
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  CUDACHECK(cudaMalloc(&buf->local, bytes));
  CUDACHECKGOTO(cudaMemset(buf->local, 0, bytes), res, fail);
  comm->deviceBytes += bytes;
  memset(&info[comm->rank], 0, sizeof(NvlBufferInfo));
  CUDACHECKGOTO(cudaIpcGetMemHandle(&info[comm->rank].ipc, buf->local), res, fail);
  info[comm->rank].ptr = buf->local;
  info[comm->rank].proc = epProcessToken();
  info[comm->rank].cudaDev = comm->cudaDev;
  info[comm->rank].bytes = bytes;
  EPCHECKGOTO(epBootstrapAllGather(comm->bootstrap, info.data(), sizeof(NvlBufferInfo)), res, fail);

  for (int r = 0; r < comm->nranks; r++) {
    if (r == comm->rank) {
      buf->peer[r] = buf->local;
      continue;
    }
    if (!comm->nvlinkPeer[r]) continue;
    if (info[r].bytes != bytes) {
      EP_WARN("NVL buffer: rank %d allocated %llu bytes, rank %d %zu: mismatched config across ranks", r,
              info[r].bytes, comm->rank, bytes);
      res = epInvalidUsage;
      goto fail;
    }
    if (info[r].proc == epProcessToken()) {
      // Same process (epCommInitAll): IPC handles cannot be opened here; use peer access.
      cudaError_t e = cudaDeviceEnablePeerAccess(info[r].cudaDev, 0);
      if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled) {
        EP_WARN("NVL buffer: cudaDeviceEnablePeerAccess(%d) failed: %s", info[r].cudaDev, cudaGetErrorString(e));
        res = epCudaError;
        goto fail;
      }
      (void)cudaGetLastError();
      buf->peer[r] = info[r].ptr;
    } else {
      CUDACHECKGOTO(cudaIpcOpenMemHandle(&buf->peer[r], info[r].ipc, cudaIpcMemLazyEnablePeerAccess), res, fail);
      buf->ipcOpened[r] = 1;
    }
  }
  CUDACHECKGOTO(cudaMalloc(&buf->devPeer, sizeof(void*) * comm->nranks), res, fail);
  comm->deviceBytes += sizeof(void*) * comm->nranks;
  CUDACHECKGOTO(cudaMemcpy(buf->devPeer, buf->peer.data(), sizeof(void*) * comm->nranks, cudaMemcpyHostToDevice),
                res, fail);
  CUDACHECKGOTO(cudaDeviceSynchronize(), res, fail);
  EPCHECKGOTO(epBootstrapBarrier(comm->bootstrap), res, fail);
  EP_INFO(EP_LOG_ALLOC, "NVL buffer: %zu bytes allocated (comm total %zu)", bytes, comm->deviceBytes.load());
  return epSuccess;
fail:
  epNvlBufferFree(comm, buf);
  return res;
}

epResult_t epNvlBufferFree(epComm* comm, epNvlBuffer* buf) {
  if (buf->local == nullptr) return epSuccess;
  for (size_t r = 0; r < buf->peer.size(); r++)
    if (buf->ipcOpened[r]) cudaIpcCloseMemHandle(buf->peer[r]);
  if (buf->devPeer) {
    cudaFree(buf->devPeer);
    comm->deviceBytes -= sizeof(void*) * comm->nranks;
  }
  cudaFree(buf->local);
  comm->deviceBytes -= buf->bytes;
  buf->local = nullptr;
  buf->devPeer = nullptr;
  buf->peer.clear();
  buf->ipcOpened.clear();
  return epSuccess;
}
