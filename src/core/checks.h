/*************************************************************************
 * epcomm: error-propagation macros, in NCCL's style.
 * SPDX-License-Identifier: Apache-2.0
 *
 * EPCHECK(x)                 return on failure, leaving an INFO breadcrumb
 * EPCHECKGOTO(x, res, label) store the failure in `res` and jump to a cleanup label
 * CUDACHECK / CUDACHECKGOTO  map a CUDA runtime failure to epCudaError with a WARN
 * SYSCHECK(call, name)       map a failed system call (-1) to epSystemError
 * EP_ARG_CHECK(cond, ...)    argument validation: epInvalidArgument with the message
 *************************************************************************/
#ifndef EP_CHECKS_H_
#define EP_CHECKS_H_

#include <cerrno>
#include <cstring>
#include <cuda_runtime_api.h>
#include "epcomm.h"
#include "core/debug.h"

#define EPCHECK(call)                                                      \
  do {                                                                     \
    epResult_t res_ = (call);                                              \
    if (res_ != epSuccess && res_ != epInProgress) {                       \
      EP_INFO(EP_LOG_ALL, "%s:%d -> %d", __FILE__, __LINE__, (int)res_);   \
      return res_;                                                         \
    }                                                                      \
  } while (0)

#define EPCHECKGOTO(call, res, label)                                      \
  do {                                                                     \
    res = (call);                                                          \
    if (res != epSuccess && res != epInProgress) {                         \
      EP_INFO(EP_LOG_ALL, "%s:%d -> %d", __FILE__, __LINE__, (int)res);    \
      goto label;                                                          \
    }                                                                      \
  } while (0)

#define CUDACHECK(call)                                                    \
  do {                                                                     \
    cudaError_t err_ = (call);                                             \
    if (err_ != cudaSuccess) {                                             \
      EP_WARN("CUDA failure '%s' (%s) at %s:%d", cudaGetErrorString(err_), \
              #call, __FILE__, __LINE__);                                  \
      return epCudaError;                                                  \
    }                                                                      \
  } while (0)

#define CUDACHECKGOTO(call, res, label)                                    \
  do {                                                                     \
    cudaError_t err_ = (call);                                             \
    if (err_ != cudaSuccess) {                                             \
      EP_WARN("CUDA failure '%s' (%s) at %s:%d", cudaGetErrorString(err_), \
              #call, __FILE__, __LINE__);                                  \
      res = epCudaError;                                                   \
      goto label;                                                          \
    }                                                                      \
  } while (0)

/* Check the last launch error without synchronising. */
#define CUDACHECK_LAUNCH() CUDACHECK(cudaGetLastError())

#define SYSCHECK(call, name)                                               \
  do {                                                                     \
    int ret_;                                                              \
    do { ret_ = (int)(call); } while (ret_ == -1 && errno == EINTR);       \
    if (ret_ == -1) {                                                      \
      EP_WARN("System call %s failed: %s", name, strerror(errno));         \
      return epSystemError;                                                \
    }                                                                      \
  } while (0)

#define EP_ARG_CHECK(cond, ...)                                            \
  do {                                                                     \
    if (!(cond)) {                                                         \
      EP_WARN(__VA_ARGS__);                                                \
      return epInvalidArgument;                                            \
    }                                                                      \
  } while (0)

#define EP_USAGE_CHECK(cond, ...)                                          \
  do {                                                                     \
    if (!(cond)) {                                                         \
      EP_WARN(__VA_ARGS__);                                                \
      return epInvalidUsage;                                               \
    }                                                                      \
  } while (0)

/* A public descriptor (a struct opening with `size`) must be non-NULL and come
 * from its initializer macro, which sets size = sizeof(Type). */
#define EP_DESC_CHECK(desc, Type, initializer, fn)                                                  \
  do {                                                                                             \
    EP_ARG_CHECK((desc) != nullptr, "%s: descriptor '%s' is NULL", fn, #desc);                     \
    EP_ARG_CHECK((desc)->size == sizeof(Type), "%s: descriptor '%s' size %zu != %zu: initialise it with %s", \
                 fn, #desc, (desc)->size, sizeof(Type), #initializer);                             \
  } while (0)

#define EP_PTR_CHECK(ptr, fn)                                              \
  EP_ARG_CHECK((ptr) != nullptr, "%s: argument '%s' is NULL", fn, #ptr)

#endif  // EP_CHECKS_H_
