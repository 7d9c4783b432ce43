/*************************************************************************
 * epcomm: HT argument validation (see ht_args.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "intranode/ht_args.h"

#include <cstdint>

#include "core/checks.h"
#include "core/comm.h"
#include "intranode/ht_handle.h"
#include "intranode/ht_types.h"

namespace {
bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
}  // namespace

epResult_t epHtCheckDispatchInput(epComm* comm, const epDispatchInput_t* in, epHtHandle* h, bool needRouting,
                                  const char* fn, epHtRowShape* shape) {
  EP_DESC_CHECK(in, epDispatchInput_t, EP_DISPATCH_INPUT_INITIALIZER, fn);
  const int T = in->numTokens;
  EP_ARG_CHECK(T >= 0, "%s: numTokens %d < 0", fn, T);
  EP_ARG_CHECK(T <= comm->config.htMaxTokensPerRank,
               "%s: numTokens %d exceeds the configured maximum %d (htMaxTokensPerRank / EP_HT_MAX_TOKENS)", fn, T,
               comm->config.htMaxTokensPerRank);
  EP_ARG_CHECK(T <= h->maxTokens, "%s: numTokens %d exceeds the handle's maxTokens %d", fn, T, h->maxTokens);
  EP_ARG_CHECK(in->xType == epBfloat16 || in->xType == epFloat8E4M3,
               "%s: xType %d not supported (epBfloat16 or epFloat8E4M3)", fn, (int)in->xType);
  const bool fp8 = in->xType == epFloat8E4M3;
  EP_ARG_CHECK(in->hidden > 0, "%s: hidden %d must be > 0", fn, in->hidden);
  if (fp8) {
    EP_ARG_CHECK(in->hidden % 128 == 0, "%s: FP8 hidden %d must be a multiple of 128 (one scale per 128 channels)", fn,
                 in->hidden);
  } else {
    EP_ARG_CHECK(in->hidden % 8 == 0, "%s: BF16 hidden %d must be a multiple of 8 elements (16-byte vectors)", fn,
                 in->hidden);
  }
  EP_ARG_CHECK(T == 0 || in->x != nullptr, "%s: x is NULL", fn);
  EP_ARG_CHECK(aligned16(in->x), "%s: x must be 16-byte aligned", fn);
  int scaleCols = 0;
  if (fp8) {
    EP_ARG_CHECK(in->scaleFormat == epScaleFloat32 || in->scaleFormat == epScaleUE8M0,
                 "%s: FP8 rows need scaleFormat epScaleFloat32 or epScaleUE8M0 (got %d)", fn, (int)in->scaleFormat);
    EP_ARG_CHECK(T == 0 || in->xScales != nullptr, "%s: FP8 rows need xScales", fn);
    int groups = in->hidden / 128;
    scaleCols = in->scaleFormat == epScaleFloat32 ? groups : (groups + 3) / 4;
    EP_ARG_CHECK(in->scaleStrideToken >= 0 && in->scaleStrideCol >= 0, "%s: negative scale strides", fn);
  } else {
    EP_ARG_CHECK(in->scaleFormat == epScaleNone && in->xScales == nullptr,
                 "%s: BF16 rows take no scales (scaleFormat must be epScaleNone, xScales NULL)", fn);
  }
  EP_ARG_CHECK(in->numTopk >= 0 && in->numTopk <= EP_HT_MAX_TOPK, "%s: numTopk %d out of range [0, %d]", fn,
               in->numTopk, EP_HT_MAX_TOPK);
  if (in->topkIdx != nullptr) {
    EP_ARG_CHECK(in->numTopk >= 1, "%s: topkIdx given but numTopk is %d", fn, in->numTopk);
    EP_ARG_CHECK(in->topkIdxType == epInt32 || in->topkIdxType == epInt64, "%s: topkIdxType must be epInt32 or epInt64",
                 fn);
  }
  EP_ARG_CHECK(in->topkWeights == nullptr || in->numTopk >= 1, "%s: topkWeights given but numTopk is %d", fn,
               in->numTopk);
  EP_ARG_CHECK(in->expertAlignment >= 1, "%s: expertAlignment %d must be >= 1", fn, in->expertAlignment);
  EP_ARG_CHECK(in->numSms >= 0, "%s: numSms %d < 0", fn, in->numSms);
  if (needRouting || in->topkIdx != nullptr) {
    EP_ARG_CHECK(in->numExperts > 0, "%s: numExperts %d must be > 0", fn, in->numExperts);
    EP_ARG_CHECK(in->numExperts % comm->nranks == 0, "%s: numExperts %d is not divisible by the %d ranks", fn,
                 in->numExperts, comm->nranks);
    EP_ARG_CHECK(in->numExperts / comm->nranks <= EP_HT_MAX_LOCAL_EXPERTS,
                 "%s: %d experts per rank exceed the limit %d", fn, in->numExperts / comm->nranks,
                 EP_HT_MAX_LOCAL_EXPERTS);
  }
  if (needRouting) {
    EP_ARG_CHECK(T == 0 || in->topkIdx != nullptr || in->isTokenInRank != nullptr,
                 "%s: routing needs topkIdx or isTokenInRank", fn);
    EP_ARG_CHECK(T == 0 || in->topkIdx != nullptr || in->numTokensPerExpert != nullptr,
                 "%s: per-expert counts need topkIdx or numTokensPerExpert", fn);
  }
  if (shape) {
    shape->xBytes = in->hidden * (fp8 ? 1 : 2);
    shape->scaleCols = scaleCols;
    shape->sCol = in->scaleStrideCol > 0 ? in->scaleStrideCol : 1;
    shape->sTok = in->scaleStrideToken > 0 ? in->scaleStrideToken : (long long)scaleCols * shape->sCol;
  }
  return epSuccess;
}
