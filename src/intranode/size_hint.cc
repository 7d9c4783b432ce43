/*************************************************************************
 * epcomm: epGetBufferSizeHint — bytes of symmetric NVLink buffer that HT
 * intranode needs: the header (counts, flow-control counters) plus one ring
 * of EP_HT_HINT_RING_SLOTS slots per (channel, peer), a slot being the
 * largest dispatch or combine row with its metadata. The same formula sizes
 * the buffer when config.nvlBufferBytes is 0.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <algorithm>

#include "core/api.h"
#include "core/checks.h"
#include "intranode/ht_state.h"

EP_API epResult_t epGetBufferSizeHint(int nranks, int hidden, epDataType_t xType, int numTopk, int numSms,
                                      size_t* nvlBytes) {
  EP_PTR_CHECK(nvlBytes, "epGetBufferSizeHint");
  EP_ARG_CHECK(nranks >= 1 && nranks <= EP_HT_MAX_NVL_RANKS, "epGetBufferSizeHint: nranks %d out of [1, %d]", nranks,
               EP_HT_MAX_NVL_RANKS);
  EP_ARG_CHECK(hidden > 0 && hidden % 8 == 0, "epGetBufferSizeHint: hidden %d must be a positive multiple of 8", hidden);
  EP_ARG_CHECK(xType == epBfloat16 || xType == epFloat8E4M3, "epGetBufferSizeHint: xType must be BF16 or FP8 e4m3");
  EP_ARG_CHECK(numTopk >= 0 && numTopk <= EP_HT_MAX_TOPK, "epGetBufferSizeHint: numTopk %d out of [0, %d]", numTopk,
               EP_HT_MAX_TOPK);
  EP_ARG_CHECK(numSms >= 1, "epGetBufferSizeHint: numSms %d must be >= 1", numSms);
  const int channels = std::min(std::max(numSms, EP_HT_MIN_BUFFER_CHANNELS), EP_HT_MAX_CHANNELS);
  // Combine always moves BF16 rows, so the slot is at least the BF16 one.
  const size_t slot = (size_t)epHtMaxSlotBytes(hidden, xType, numTopk);
  const size_t ring = (EP_HT_HINT_RING_SLOTS * slot + 127) / 128 * 128;
  *nvlBytes = epHtHeaderBytes(nranks, channels) + (size_t)channels * nranks * ring;
  return epSuccess;
}
