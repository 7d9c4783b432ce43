/*************************************************************************
 * epcomm: CUDA driver entry points without linking libcuda (see cu_driver.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/proxy/cu_driver.h"

#include <mutex>

#include <cuda_runtime.h>

#include "core/debug.h"

namespace {

template <typename Fn>
Fn resolve(const char* sym, unsigned version) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  cudaError_t e = cudaGetDriverEntryPointByVersion(sym, &fn, version, cudaEnableDefault, &q);
  if (e != cudaSuccess || q != cudaDriverEntryPointSuccess) {
    (void)cudaGetLastError();
    EP_INFO(EP_LOG_INIT, "CUDA driver entry point %s (v%u) not available", sym, version);
    return nullptr;
  }
  return reinterpret_cast<Fn>(fn);
}

}  // namespace

const epCuDriver* epCuDriverGet() {
  static epCuDriver drv;
  static std::once_flag once;
  std::call_once(once, [] {
    drv.memGetAddressRange = resolve<epCuMemGetAddressRange_t>("cuMemGetAddressRange", 3020);
    drv.memGetHandleForAddressRange =
        resolve<epCuMemGetHandleForAddressRange_t>("cuMemGetHandleForAddressRange", 11070);
    drv.deviceGetAttribute = resolve<epCuDeviceGetAttribute_t>("cuDeviceGetAttribute", 2000);
    drv.getErrorString = resolve<epCuGetErrorString_t>("cuGetErrorString", 6000);
    drv.moduleGetLoadingMode = resolve<epCuModuleGetLoadingMode_t>("cuModuleGetLoadingMode", 11070);
  });
  return &drv;
}

const char* epCuErrorString(CUresult r) {
  const epCuDriver* d = epCuDriverGet();
  const char* s = nullptr;
  if (d->getErrorString && d->getErrorString(r, &s) == CUDA_SUCCESS && s) return s;
  return "unknown CUDA driver error";
}
