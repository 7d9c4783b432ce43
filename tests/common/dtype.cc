/*************************************************************************
 * epcomm tests: host conversions through CUDA's own headers.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/dtype.h"

#include <cmath>
#include <cstring>

#include <cuda_bf16.h>
#include <cuda_fp8.h>

uint16_t epTestFloatToBf16(float f) {
  __nv_bfloat16 b = __float2bfloat16_rn(f);
  uint16_t u;
  memcpy(&u, &b, sizeof(u));
  return u;
}

float epTestBf16ToFloat(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

uint8_t epTestFloatToFp8E4M3(float f) { return (uint8_t)__nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E4M3); }

float epTestFp8E4M3ToFloat(uint8_t b) {
  __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)b, __NV_E4M3);
  return __half2float(__half(h));
}

float epTestUe8m0ToFloat(uint8_t b) {
  if (b == 255) return NAN;
  return std::ldexp(1.0f, (int)b - 127);
}

uint8_t epTestFloatToUe8m0Ceil(float f) {
  if (!(f > 0.0f)) return 0;
  int e;
  float m = std::frexp(f, &e);  // f = m * 2^e, m in [0.5, 1)
  int p = (m == 0.5f) ? e - 1 : e;  // exact powers of two stay
  int b = p + 127;
  return (uint8_t)(b < 0 ? 0 : (b > 254 ? 254 : b));
}

size_t epTestTypeBytes(epDataType_t t) {
  switch (t) {
    case epInt32: return 4;
    case epInt64: return 8;
    case epFloat32: return 4;
    case epBfloat16: return 2;
    case epFloat8E4M3: return 1;
    case epUint8: return 1;
    default: return 0;
  }
}

const char* epTestTypeName(epDataType_t t) {
  switch (t) {
    case epInt32: return "int32";
    case epInt64: return "int64";
    case epFloat32: return "float32";
    case epBfloat16: return "bf16";
    case epFloat8E4M3: return "fp8e4m3";
    case epUint8: return "uint8";
    default: return "?";
  }
}
