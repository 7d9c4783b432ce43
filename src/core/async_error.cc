/*************************************************************************
 * epcomm: device error translation (see async_error.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/async_error.h"

#include <cstdio>

namespace {
const char* familyName(int f) {
  switch (f) {
    case 1: return "HT dispatch/combine";
    case 2: return "LL dispatch/combine";
    case 3: return "internode";
    case 4: return "layout/EPLB";
    default: return "device kernel";
  }
}
}  // namespace

epResult_t epDeviceStatusDescribe(const epDeviceStatus& s, char* msg, size_t n) {
  const char* fam = familyName(s.family);
  switch (s.kind) {
    case EP_DEVERR_NONE:
      if (n) msg[0] = '\0';
      return epSuccess;
    case EP_DEVERR_BAD_EXPERT_ID:
      snprintf(msg, n, "%s: expert id %lld out of range at token %d, top-k slot %d (valid: -1 for masked, 0..E-1)", fam,
               s.value, s.a, s.b);
      return epInvalidArgument;
    case EP_DEVERR_CAPACITY_OVERFLOW:
      snprintf(msg, n,
               "%s: capacity overflow: %lld rows needed but the buffer holds %d; nothing was written past it. HINT: "
               "raise the max-tokens config (EP_HT_MAX_TOKENS / EP_LL_MAX_TOKENS)",
               fam, s.value, s.a);
      return epInvalidUsage;
    case EP_DEVERR_TIMEOUT:
      snprintf(msg, n,
               "%s: device wait timed out on channel %d waiting for peer rank %d (awaited value %lld). HINT: a peer "
               "did not make the matching call; EP_TIMEOUT_MS sets the limit",
               fam, s.a, s.b, s.value);
      return epTimeout;
    case EP_DEVERR_BAD_HANDLE:
      snprintf(msg, n, "%s: the handle does not belong to this communicator or call (a=%d b=%d value=%lld)", fam, s.a,
               s.b, s.value);
      return epInvalidUsage;
    case EP_DEVERR_NODE_LIMIT:
      snprintf(msg, n, "%s: token %d routes to %lld nodes but the limit is %d", fam, s.a, s.value, s.b);
      return epInvalidArgument;
    case EP_DEVERR_PATH_MISMATCH:
      snprintf(msg, n,
               "%s: rank %d %s registered buffers for this call but rank %d %s: every rank must pass registered "
               "outputs (epCommRegister) or none, call by call; nothing was transferred. HINT: register the dispatch "
               "outputs and the combine input together on every rank (a rank with no rows takes the direct path "
               "whenever it has registrations), or set EP_HT_DIRECT=0 for the ring path everywhere",
               fam, s.a, s.value ? "used" : "did not use", s.b, s.value ? "did not" : "did");
      return epInvalidUsage;
    case EP_DEVERR_BAD_REGISTRATION:
      snprintf(msg, n, "%s: rank %d's registered buffer (slot %d) does not hold row %lld (registration missing or too "
               "small); the row was skipped", fam, s.a, s.b, s.value);
      return epInvalidUsage;
    case EP_DEVERR_LL_MODE_MISMATCH: {
      // Mode bits (mine in value & 0xff, theirs in the next byte). A dispatch
      // (ll_dispatch_common.cuh): 1 FP8, 2 dedup, 4 flagged lines; a combine
      // (bit 16 set, ll_combine.cu): 1 reduceOnSender, 4 flagged lines.
      const bool combine = (s.value >> 16) & 1;
      auto mode = [combine](long long m, char* b, size_t bn) {
        const char* proto = (m & 4) ? "lines" : "release";
        if (combine) snprintf(b, bn, "reduceOnSender=%d protocol=%s", (int)(m & 1), proto);
        else snprintf(b, bn, "fp8=%d dedup=%d protocol=%s", (int)(m & 1), (int)((m >> 1) & 1), proto);
      };
      char mine[64], theirs[64];
      mode(s.value & 0xff, mine, sizeof(mine));
      mode((s.value >> 8) & 0xff, theirs, sizeof(theirs));
      snprintf(msg, n,
               "%s: rank %d made this %s with %s but rank %d with %s; nothing was received from it. HINT: every "
               "rank must pass the same %s, call by call, and set the same EP_LL_LINES",
               fam, s.a, combine ? "combine" : "dispatch", mine, s.b, theirs,
               combine ? "reduceOnSender flag" : "useFp8 and dedup flags");
      return epInvalidUsage;
    }
    default:
      snprintf(msg, n, "%s: unknown device error kind %d (a=%d b=%d value=%lld)", fam, s.kind, s.a, s.b, s.value);
      return epInternalError;
  }
}
