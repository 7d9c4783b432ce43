/*************************************************************************
 * epcomm tests: host conversions for the element types of the data path.
 * SPDX-License-Identifier: Apache-2.0
 *
 * They call the host paths of CUDA's own cuda_bf16.h / cuda_fp8.h, so a value
 * converted here is bitwise what __float2bfloat16_rn / __nv_fp8_e4m3(float)
 * give on the device (round to nearest even; FP8 saturates to +-448).
 *************************************************************************/
#ifndef EP_TESTS_DTYPE_H_
#define EP_TESTS_DTYPE_H_

#include <cstddef>
#include <cstdint>

#include "epcomm.h"

uint16_t epTestFloatToBf16(float f);      /* as __float2bfloat16_rn */
float epTestBf16ToFloat(uint16_t b);      /* exact */
uint8_t epTestFloatToFp8E4M3(float f);    /* as __nv_fp8_e4m3(f): RNE, satfinite */
float epTestFp8E4M3ToFloat(uint8_t b);    /* exact */
/* UE8M0 scale byte: value 2^(b-127); 255 is NaN. */
float epTestUe8m0ToFloat(uint8_t b);
/* Smallest power of two >= f (f > 0), as a UE8M0 byte (what a rounding quantiser uses). */
uint8_t epTestFloatToUe8m0Ceil(float f);

/* Bytes of one element; 0 for an unknown type. */
size_t epTestTypeBytes(epDataType_t t);
const char* epTestTypeName(epDataType_t t);

#endif  // EP_TESTS_DTYPE_H_
