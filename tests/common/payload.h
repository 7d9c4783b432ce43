/*************************************************************************
 * epcomm tests: deterministic token rows (BF16, or FP8 e4m3 + scales).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Row t of rank r is a pure function of (seed, r, t): a receiver rebuilds the
 * exact bytes it must get from any source without exchanging data. Values
 * are random and never zero-filled, never NaN (so a poisoned 0xFF byte is
 * always caught), and FP8 values cover the whole e4m3 range.
 *
 * Scale layouts (per token):
 *  - epScaleFloat32: H/128 floats, one per 128 channels;
 *  - epScaleUE8M0:   ceil(H/512) int32 words, 4 exponent bytes per word,
 *                    byte j of word w scales channels [128(4w+j), 128(4w+j+1)).
 *************************************************************************/
#ifndef EP_TESTS_PAYLOAD_H_
#define EP_TESTS_PAYLOAD_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "epcomm.h"

struct epTestPayloadSpec {
  epDataType_t type = epBfloat16;         /* epBfloat16 or epFloat8E4M3 */
  epScaleFormat_t scaleFormat = epScaleNone;
  int hidden = 7168;
  uint64_t seed = 1;
};

/* Bytes of one row (2H or H) and of its scales (0 for BF16). */
size_t epTestRowBytes(const epTestPayloadSpec& p);
size_t epTestScaleBytes(const epTestPayloadSpec& p);
/* Scale elements per token (H/128 floats or ceil(H/512) int32 words). */
int epTestScaleCols(const epTestPayloadSpec& p);

/* Writes row `token` of `rank` (epTestRowBytes bytes) and, for FP8, its
 * scales (epTestScaleBytes bytes; `scales` may be NULL). */
void epTestTokenRow(const epTestPayloadSpec& p, int rank, int token, void* row, void* scales);

/* All rows of a rank: x [numTokens x rowBytes], scales [numTokens x scaleBytes] row-major. */
void epTestMakeTokens(const epTestPayloadSpec& p, int rank, int numTokens, std::vector<uint8_t>* x,
                      std::vector<uint8_t>* scales);

/* Re-lays a row-major [T x cols] scale matrix (4-byte elements) with the given
 * strides, as epDispatchInput_t.scaleStrideToken/scaleStrideCol describe it;
 * returns the elements the strided buffer needs. */
size_t epTestStrideScales(const std::vector<uint8_t>& rowMajor, int numTokens, int cols, long long strideToken,
                          long long strideCol, std::vector<uint8_t>* out);

#endif  // EP_TESTS_PAYLOAD_H_
