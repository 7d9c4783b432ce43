/*************************************************************************
 * epcomm: arithmetic shared by the EPLB/gating kernels and their host
 * references, written so that host and device give bitwise equal results.
 * SPDX-License-Identifier: Apache-2.0
 *
 * WHY: a routing decision flips when two scores are within an ulp, so a GPU
 * test that compares expert ids with a host reference is only exact if both
 * compute identical floats. CUDA's expf and glibc's expf differ by an ulp or
 * two, and nvcc contracts a*b+c into an FMA by default. Everything here is
 * built from correctly rounded IEEE operations (explicit fma, add, mul, div,
 * rint, ldexp) that nvcc does not contract (the __f*_rn intrinsics) and that
 * the host computes the same way (g++ does not contract on x86-64 without
 * -mfma; fmaf is exact in glibc).
 *************************************************************************/
#ifndef EP_EPLB_MATH_H_
#define EP_EPLB_MATH_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/hash.h"

#if defined(__CUDACC__)
#define EP_HD __host__ __device__ __forceinline__
#else
#define EP_HD inline
#endif

namespace ep {
namespace eplb {

EP_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  volatile float r = a + b;  // volatile: keep the rounding step even under -ffp-contract
  return r;
#endif
}
EP_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  volatile float r = a * b;
  return r;
#endif
}
EP_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  volatile float r = a / b;
  return r;
#endif
}
EP_HD float ffma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

/* exp(x) to about 2 ulp, identical on host and device: x = n*ln2 + r with
 * |r| <= ln2/2, a degree-7 polynomial for exp(r), then an exact scale by 2^n. */
EP_HD float expDet(float x) {
  if (x != x) return x;
  if (x > 88.72f) return INFINITY;
  if (x < -103.98f) return 0.0f;
  float n = rintf(fmul(x, 1.44269502162933349609375f));
  float r = ffma(-n, 0.693145751953125f, x);        // ln2, high part (exact product)
  r = ffma(-n, 1.428606765330187045e-06f, r);       // ln2, low part
  float p = 1.9875691500e-4f;
  p = ffma(p, r, 1.3981999507e-3f);
  p = ffma(p, r, 8.3334519073e-3f);
  p = ffma(p, r, 4.1665795894e-2f);
  p = ffma(p, r, 1.6666665459e-1f);
  p = ffma(p, r, 5.0000001201e-1f);
  float y = fadd(ffma(fmul(r, r), p, r), 1.0f);     // 1 + r + r^2 * p(r)
  return ldexpf(y, (int)n);
}

/* 1 / (1 + exp(-x)); NaN stays NaN. */
EP_HD float sigmoidDet(float x) { return fdiv(1.0f, fadd(1.0f, expDet(-x))); }

/* bf16 bits -> float (exact). */
EP_HD float bf16BitsToFloat(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

/* A 32-bit avalanche mix (good enough to spread tokens over replicas). */
EP_HD uint32_t mix32(uint32_t x) { return epHashMix32(x); }

/* The replica choice hash of (global token index, logical expert). */
EP_HD uint32_t replicaHash(long long token, int expert) {
  uint64_t t = (uint64_t)token;
  return mix32((uint32_t)t ^ mix32((uint32_t)(t >> 32) ^ ((uint32_t)expert * 0x9e3779b9U)));
}

/* "a is a better candidate than b": larger score, then lower index. Scores
 * are never NaN here (callers map NaN to -inf). */
EP_HD bool betterCandidate(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

}  // namespace eplb
}  // namespace ep

#endif  // EP_EPLB_MATH_H_
