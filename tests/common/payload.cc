/*************************************************************************
 * epcomm tests: deterministic token rows.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/payload.h"

#include <cmath>
#include <cstring>

#include "tests/common/dtype.h"
#include "tests/common/rng.h"

size_t epTestRowBytes(const epTestPayloadSpec& p) {
  return (size_t)p.hidden * (p.type == epFloat8E4M3 ? 1 : 2);
}

int epTestScaleCols(const epTestPayloadSpec& p) {
  if (p.type != epFloat8E4M3) return 0;
  if (p.scaleFormat == epScaleUE8M0) return (p.hidden / 128 + 3) / 4;
  return p.hidden / 128;
}

size_t epTestScaleBytes(const epTestPayloadSpec& p) { return (size_t)epTestScaleCols(p) * 4; }

void epTestTokenRow(const epTestPayloadSpec& p, int rank, int token, void* row, void* scales) {
  const int H = p.hidden;
  epTestRng rows(p.seed, EP_RNG_ROWS, (uint64_t)rank);
  const uint64_t base = (uint64_t)token * (uint64_t)H;
  if (p.type == epFloat8E4M3) {
    uint8_t* o = (uint8_t*)row;
    for (int h = 0; h < H; h++) {
      // Uniform over [-480, 480): every finite e4m3 magnitude and saturation appear.
      double u = rows.uniform(base + h);
      o[h] = epTestFloatToFp8E4M3((float)((u - 0.5) * 960.0));
    }
    if (!scales) return;
    epTestRng sr(p.seed, EP_RNG_SCALES, (uint64_t)rank);
    const int groups = H / 128;
    const uint64_t sb = (uint64_t)token * (uint64_t)(groups + 4);
    if (p.scaleFormat == epScaleUE8M0) {
      uint8_t* s = (uint8_t*)scales;
      int words = epTestScaleCols(p);
      memset(s, 127, (size_t)words * 4);  // padding bytes: 2^0
      for (int g = 0; g < groups; g++) s[g] = (uint8_t)(112 + sr.below(sb + g, 32));  // 2^-15 .. 2^16
    } else {
      float* s = (float*)scales;
      for (int g = 0; g < groups; g++) s[g] = (float)std::ldexp(1.0 + sr.uniform(sb + g), (int)sr.below(sb + groups + g % 4, 20) - 14);
    }
    return;
  }
  uint16_t* o = (uint16_t*)row;
  for (int h = 0; h < H; h++) {
    // Sum of two uniforms times 4, shifted: triangular on (-4, 4); exact zeros are rare and harmless.
    uint64_t b = rows.bits(base + h);
    double u1 = (double)(b >> 40) * (1.0 / 16777216.0), u2 = (double)((b >> 16) & 0xffffff) * (1.0 / 16777216.0);
    o[h] = epTestFloatToBf16((float)((u1 + u2 - 1.0) * 4.0));
  }
}

void epTestMakeTokens(const epTestPayloadSpec& p, int rank, int numTokens, std::vector<uint8_t>* x,
                      std::vector<uint8_t>* scales) {
  const size_t rb = epTestRowBytes(p), sb = epTestScaleBytes(p);
  x->assign((size_t)numTokens * rb, 0);
  if (scales) scales->assign((size_t)numTokens * sb, 0);
  for (int t = 0; t < numTokens; t++)
    epTestTokenRow(p, rank, t, x->data() + (size_t)t * rb, scales && sb ? scales->data() + (size_t)t * sb : nullptr);
}

size_t epTestStrideScales(const std::vector<uint8_t>& rowMajor, int numTokens, int cols, long long strideToken,
                          long long strideCol, std::vector<uint8_t>* out) {
  if (strideToken == 0) strideToken = cols;
  if (strideCol == 0) strideCol = 1;
  size_t elems = 0;
  if (numTokens > 0 && cols > 0) elems = (size_t)((numTokens - 1) * strideToken + (cols - 1) * strideCol + 1);
  out->assign(elems * 4, 0);
  for (int t = 0; t < numTokens; t++)
    for (int c = 0; c < cols; c++)
      memcpy(out->data() + (size_t)(t * strideToken + c * strideCol) * 4, rowMajor.data() + ((size_t)t * cols + c) * 4, 4);
  return elems;
}
