/*************************************************************************
 * epcomm GPU tests (EPLB family): small helpers shared by eplb_*_test.cu.
 * Single-process tests: no communicator, the current CUDA device.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_TESTS_GPU_EPLB_GPU_UTIL_H_
#define EP_TESTS_GPU_EPLB_GPU_UTIL_H_

#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstring>
#include <vector>

#include "tests/common/world.h"

#define EPLB_REQUIRE_GPU()                                                                                        \
  do {                                                                                                            \
    if (epTestCudaDeviceCount() == 0)                                                                             \
      GTEST_SKIP() << "no CUDA device: cudaGetDeviceCount found none, so the EPLB kernel cannot run here";        \
  } while (0)

#define EPLB_CUDA_OK(call) ASSERT_EQ(cudaSuccess, (call)) << #call << ": " << cudaGetErrorString(cudaGetLastError())

/* Owning device buffer; poisoned with 0xA5 bytes on allocation so that an
 * output the kernel forgot to write is visible. */
template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    if (cudaMalloc(&p, sizeof(T) * (n ? n : 1)) != cudaSuccess) p = nullptr;
    if (p) cudaMemset(p, 0xA5, sizeof(T) * (n ? n : 1));
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  cudaError_t upload(const std::vector<T>& v) { return cudaMemcpy(p, v.data(), sizeof(T) * v.size(), cudaMemcpyHostToDevice); }
  std::vector<T> download() const {
    std::vector<T> v(n);
    if (n) cudaMemcpy(v.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost);
    return v;
  }
};

inline uint32_t floatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

#endif  // EP_TESTS_GPU_EPLB_GPU_UTIL_H_
