/*************************************************************************
 * epcomm: GPUDirect RDMA capability probes (see ib_gdr.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/ib/ib_gdr.h"

#include <unistd.h>

#include <cerrno>

#include "core/debug.h"
#include "transports/proxy/cu_driver.h"

bool epIbNicDmabufSupported(const epIbvFns* ibv, struct ibv_pd* pd) {
  if (ibv == nullptr || ibv->regDmabufMr == nullptr || pd == nullptr) return false;
  errno = 0;
  struct ibv_mr* mr = ibv->regDmabufMr(pd, 0ull, 0, 0ull, -1, 0);
  if (mr != nullptr) {  // cannot happen with fd -1; do not leak it if a provider disagrees
    ibv->deregMr(mr);
    return true;
  }
  int e = errno;
  bool ok = !(e == EOPNOTSUPP || e == EPROTONOSUPPORT || e == ENOSYS);
  EP_INFO(EP_LOG_NET, "NET/IB: NIC dmabuf probe: errno %d -> %s", e, ok ? "supported" : "not supported");
  return ok;
}

bool epIbGpuDmabufSupported(int cudaDev) {
  const epCuDriver* d = epCuDriverGet();
  if (d->deviceGetAttribute == nullptr || d->memGetHandleForAddressRange == nullptr || cudaDev < 0) return false;
  int v = 0;
  if (d->deviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, (CUdevice)cudaDev) != CUDA_SUCCESS) return false;
  return v != 0;
}

bool epIbPeermemLoaded(const std::string& sysfsRoot) {
  const char* paths[] = {"/module/nvidia_peermem/version", "/kernel/mm/memory_peers/nv_mem/version",
                         "/kernel/mm/memory_peers/nv_mem_nc/version", "/module/nv_peer_mem/version"};
  for (const char* p : paths)
    if (access((sysfsRoot + p).c_str(), F_OK) == 0) return true;
  return false;
}
