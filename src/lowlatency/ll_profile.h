/*************************************************************************
 * epcomm LL: EP_LL_PROFILE=1 phase timing (debug knob, not for production).
 * SPDX-License-Identifier: Apache-2.0
 *
 * The LL kernels sum %globaltimer phase stamps of block 0 into a device
 * array, one bucket per (call kind, phases, token count); the sums are
 * printed (rank-prefixed, one line per bucket) when the communicator's LL
 * state is freed. Lets one run show where a call's time goes.
 *************************************************************************/
#ifndef EP_LL_PROFILE_H_
#define EP_LL_PROFILE_H_

#include <cstddef>

namespace ep {
namespace ll {

constexpr int kProfSlots = 8;  // calls, 5 stamps of block 0, sum of all blocks' durations, blocks
constexpr int kProfKinds = 4;  // dispatch dedup, dispatch plain, combine reduce, combine plain
constexpr int kProfPhases = 3; // send, recv, send+recv

static inline size_t profBucket(int kind, int phases, int T, int M) {
  return (((size_t)kind * kProfPhases + (size_t)(phases - 1)) * (size_t)(M + 1) + (size_t)T) * kProfSlots;
}
static inline size_t profBytes(int M) { return sizeof(unsigned long long) * profBucket(kProfKinds, 1, 0, M); }

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_PROFILE_H_
