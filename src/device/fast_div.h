/*************************************************************************
 * epcomm: division by a runtime divisor without a division instruction.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Why: a GPU has no integer divide; `n / d` with d known only at run time
 * compiles to ~25 dependent instructions. The LL receive path divided word
 * and unit indices that way in its hot loops (routing poll: two divisions per
 * routing word and poll round) and was instruction-bound: EP_LL_PROFILE=2
 * showed its routing pass ending ~5 us after the words had landed. The host
 * computes (m, s) once per call; the device then needs a multiply-high, an add
 * and a shift (round-up method of Granlund and Montgomery, with the add done in
 * 64 bits so it is exact for every 32-bit n and every divisor >= 1; the CPU
 * test FastDiv.* checks it).
 *************************************************************************/
#ifndef EP_DEVICE_FAST_DIV_H_
#define EP_DEVICE_FAST_DIV_H_

#include <cstdint>

#if defined(__CUDACC__)
#define EP_FD_HD __host__ __device__
#else
#define EP_FD_HD
#endif

namespace ep {
namespace dev {

struct FastDiv {
  uint32_t d = 1, m = 1, s = 0;

  FastDiv() = default;
  // Host side (a 64-bit division: not for device code).
  explicit FastDiv(uint32_t divisor) : d(divisor == 0 ? 1 : divisor) {
    s = 0;
    while ((1ull << s) < d) s++;
    m = (uint32_t)(((1ull << 32) * ((1ull << s) - d)) / d + 1);
  }
  EP_FD_HD inline uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(n, m);
#else
    const uint32_t hi = (uint32_t)(((uint64_t)n * m) >> 32);
#endif
    return (uint32_t)(((uint64_t)hi + n) >> s);
  }
  EP_FD_HD inline uint32_t mod(uint32_t n) const { return n - div(n) * d; }
};

}  // namespace dev
}  // namespace ep

#endif  // EP_DEVICE_FAST_DIV_H_
