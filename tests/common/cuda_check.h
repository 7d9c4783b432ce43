/*************************************************************************
 * epcomm tests: CUDA/epcomm call checks for test and perf code.
 * SPDX-License-Identifier: Apache-2.0
 *
 * EP_TEST_CUDA(call) / EP_TEST_EP(call): print the failing call with file and
 * line, and `return epCudaError` / the failing epResult_t. For gtest bodies
 * use ASSERT_EQ(cudaSuccess, ...) instead; these are for plain functions.
 *************************************************************************/
#ifndef EP_TESTS_CUDA_CHECK_H_
#define EP_TESTS_CUDA_CHECK_H_

#include <cstdio>

#include <cuda_runtime_api.h>

#include "epcomm.h"

#define EP_TEST_CUDA(call)                                                                                  \
  do {                                                                                                      \
    cudaError_t e_ = (call);                                                                                \
    if (e_ != cudaSuccess) {                                                                                \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
      return epCudaError;                                                                                   \
    }                                                                                                       \
  } while (0)

#define EP_TEST_EP(call)                                                                                    \
  do {                                                                                                      \
    epResult_t r_ = (call);                                                                                 \
    if (r_ != epSuccess) {                                                                                  \
      fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call, epGetErrorString(r_),       \
              epGetLastError(nullptr));                                                                     \
      return r_;                                                                                            \
    }                                                                                                       \
  } while (0)

#endif  // EP_TESTS_CUDA_CHECK_H_
