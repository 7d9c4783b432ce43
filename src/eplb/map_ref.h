/*************************************************************************
 * epcomm: logical -> physical expert mapping: argument validation and the
 * host reference of epMapLogicalToPhysical (shared by the library and tests).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_EPLB_MAP_REF_H_
#define EP_EPLB_MAP_REF_H_

#include <cstdint>

#include "epcomm.h"

namespace ep {
namespace eplb {

constexpr int kMapMaxTopk = 64;

epResult_t validateMapDesc(const epExpertMapDesc_t* d, int numTokens, int topk, epDataType_t idType, const char* fn);

/* Host reference. ids/out: [T x K] int64 (may alias); log2phy [E x X], logcnt [E];
 * errorInfo: int[4] (code, token, slot, value), first error kept, may be null. */
void mapLogicalToPhysicalRef(const int64_t* ids, int64_t* out, int numTokens, int topk, const int* log2phy,
                             const int* logcnt, const epExpertMapDesc_t& d, int* errorInfo);

}  // namespace eplb
}  // namespace ep

#endif  // EP_EPLB_MAP_REF_H_
