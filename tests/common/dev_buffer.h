/*************************************************************************
 * epcomm tests: an owning device buffer with poison and guard helpers.
 * SPDX-License-Identifier: Apache-2.0
 *
 *   epTestDevBuf b;
 *   b.alloc(bytes, guardBytes);     // cudaMalloc(bytes + guardBytes), all 0xFF, completed
 *   b.poison(0xA5, stream);         // whole buffer incl. guard, async
 *   ... kernel writes b.p[0, bytes) ...
 *   b.download(&host);              // bytes + guard back to the host
 *   epTestCheckUntouched(host.data(), bytes, bytes + guard, 0xA5, ...)
 * Errors are returned as cudaError_t (tests ASSERT on them).
 *************************************************************************/
#ifndef EP_TESTS_DEV_BUFFER_H_
#define EP_TESTS_DEV_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

struct epTestDevBuf {
  void* p = nullptr;
  size_t bytes = 0; /* usable bytes */
  size_t guard = 0; /* extra bytes after them, for out-of-bounds detection */

  epTestDevBuf() = default;
  epTestDevBuf(const epTestDevBuf&) = delete;
  epTestDevBuf& operator=(const epTestDevBuf&) = delete;
  epTestDevBuf(epTestDevBuf&& o) noexcept { *this = static_cast<epTestDevBuf&&>(o); }
  epTestDevBuf& operator=(epTestDevBuf&& o) noexcept {
    if (this != &o) {
      free();
      p = o.p;
      bytes = o.bytes;
      guard = o.guard;
      o.p = nullptr;
      o.bytes = o.guard = 0;
    }
    return *this;
  }
  ~epTestDevBuf() { free(); }

  cudaError_t alloc(size_t n, size_t guardBytes = 0) {
    free();
    bytes = n;
    guard = guardBytes;
    size_t total = n + guardBytes;
    if (total == 0) return cudaSuccess;  // p stays NULL
    cudaError_t e = cudaMalloc(&p, total);
    if (e != cudaSuccess) {
      p = nullptr;
      return e;
    }
    e = cudaMemset(p, 0xFF, total);
    // cudaMemset runs on the legacy stream, which is not ordered with the
    // non-blocking streams the tests use: finish it before anyone poisons.
    return e == cudaSuccess ? cudaDeviceSynchronize() : e;
  }
  void free() {
    if (p) (void)cudaFree(p);
    p = nullptr;
    bytes = guard = 0;
  }
  size_t total() const { return bytes + guard; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
  cudaError_t poison(uint8_t byte, cudaStream_t s) { return p ? cudaMemsetAsync(p, byte, total(), s) : cudaSuccess; }
  template <typename T>
  cudaError_t upload(const std::vector<T>& v) {
    cudaError_t e = alloc(v.size() * sizeof(T));
    if (e == cudaSuccess && p) e = cudaMemcpy(p, v.data(), bytes, cudaMemcpyHostToDevice);
    return e;
  }
  /* Copies bytes + guard (the guard is checked by the caller). */
  template <typename T>
  cudaError_t download(std::vector<T>* v) const {
    v->assign((total() + sizeof(T) - 1) / sizeof(T), T());
    return p ? cudaMemcpy(v->data(), p, total(), cudaMemcpyDeviceToHost) : cudaSuccess;
  }
};

#endif  // EP_TESTS_DEV_BUFFER_H_
