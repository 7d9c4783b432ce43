/*************************************************************************
 * epcomm: RDMA memory registration (see ib_reg.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/ib/ib_reg.h"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "core/debug.h"
#include "transports/proxy/cu_driver.h"

namespace {
const int kAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
}

const char* epIbRegPathName(epIbRegPath p) {
  switch (p) {
    case EP_IB_REG_DMABUF: return "dmabuf";
    case EP_IB_REG_PEERMEM: return "peermem";
    default: return "host";
  }
}

epResult_t epIbChooseRegPath(bool isDevice, int dmabufKnob, const epIbRegCaps& caps, epIbRegPath* path,
                             std::string* why) {
  if (!isDevice) {
    *path = EP_IB_REG_HOST;
    return epSuccess;
  }
  const bool dmabuf = caps.nicDmabuf && caps.gpuDmabuf;
  if (dmabufKnob != 0 && dmabuf) {
    *path = EP_IB_REG_DMABUF;
    return epSuccess;
  }
  if (dmabufKnob == 1) {
    *why = std::string("EP_IB_DMABUF=1 but dmabuf is not usable (NIC ") + (caps.nicDmabuf ? "yes" : "no") +
           ", GPU " + (caps.gpuDmabuf ? "yes" : "no") + ")";
    return epNotSupported;
  }
  if (caps.peermem) {
    *path = EP_IB_REG_PEERMEM;
    return epSuccess;
  }
  *why = std::string("GPU memory cannot be registered: dmabuf ") +
         (dmabufKnob == 0 ? "disabled by EP_IB_DMABUF=0" : "unsupported") +
         " and the nvidia_peermem module is not loaded (modprobe nvidia_peermem)";
  return epNotSupported;
}

epResult_t epIbRegister(const epIbvFns* ibv, struct ibv_pd* pd, void* ptr, size_t bytes, epIbRegPath path,
                        struct ibv_mr** mr) {
  *mr = nullptr;
  if (path != EP_IB_REG_DMABUF) {
    errno = 0;
    *mr = ibv->regMr(pd, ptr, bytes, kAccess);
    if (*mr == nullptr) {
      EP_WARN("NET/IB: ibv_reg_mr(%p, %zu bytes, %s) failed: %s", ptr, bytes, epIbRegPathName(path), strerror(errno));
      return epSystemError;
    }
    return epSuccess;
  }
  // dmabuf exports whole pages: register the aligned range; iova = its address.
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  const uint64_t start = (uint64_t)(uintptr_t)ptr & ~(page - 1);
  const uint64_t end = ((uint64_t)(uintptr_t)ptr + bytes + page - 1) & ~(page - 1);
  const epCuDriver* drv = epCuDriverGet();
  int fd = -1;
  CUresult cr = drv->memGetHandleForAddressRange(&fd, (CUdeviceptr)start, (size_t)(end - start),
                                                  CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0);
  if (cr != CUDA_SUCCESS) {
    EP_WARN("NET/IB: cuMemGetHandleForAddressRange(%p, %llu bytes) failed: %s", (void*)(uintptr_t)start,
            (unsigned long long)(end - start), epCuErrorString(cr));
    return epCudaError;
  }
  errno = 0;
  *mr = ibv->regDmabufMr(pd, 0, (size_t)(end - start), start, fd, kAccess);
  int e = errno;
  close(fd);
  if (*mr == nullptr) {
    EP_WARN("NET/IB: ibv_reg_dmabuf_mr(%llu bytes) failed: %s", (unsigned long long)(end - start), strerror(e));
    return epSystemError;
  }
  return epSuccess;
}
