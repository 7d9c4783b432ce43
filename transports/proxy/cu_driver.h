/*************************************************************************
 * epcomm: the few CUDA driver calls the transports need, resolved through
 * cudaGetDriverEntryPointByVersion so that libepcomm never links libcuda.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Each getter returns nullptr when the driver lacks the symbol (old driver,
 * no GPU): callers treat that as "capability absent", never as a crash.
 *************************************************************************/
#ifndef EP_TRANSPORT_CU_DRIVER_H_
#define EP_TRANSPORT_CU_DRIVER_H_

#include <cuda.h>

typedef CUresult (*epCuMemGetAddressRange_t)(CUdeviceptr* base, size_t* size, CUdeviceptr ptr);
typedef CUresult (*epCuMemGetHandleForAddressRange_t)(void* handle, CUdeviceptr ptr, size_t size,
                                                      CUmemRangeHandleType type, unsigned long long flags);
typedef CUresult (*epCuDeviceGetAttribute_t)(int* value, CUdevice_attribute attr, CUdevice dev);
typedef CUresult (*epCuGetErrorString_t)(CUresult err, const char** str);
typedef CUresult (*epCuModuleGetLoadingMode_t)(CUmoduleLoadingMode* mode);

struct epCuDriver {
  epCuMemGetAddressRange_t memGetAddressRange;
  epCuMemGetHandleForAddressRange_t memGetHandleForAddressRange; /* CUDA >= 11.7 drivers */
  epCuDeviceGetAttribute_t deviceGetAttribute;
  epCuGetErrorString_t getErrorString;
  epCuModuleGetLoadingMode_t moduleGetLoadingMode; /* CUDA >= 11.7 drivers */
};

/* Resolved once (thread-safe); never null, members may be. */
const epCuDriver* epCuDriverGet();

/* Text for a CUresult ("CUDA_ERROR_..." or the number). */
const char* epCuErrorString(CUresult r);

#endif  // EP_TRANSPORT_CU_DRIVER_H_
