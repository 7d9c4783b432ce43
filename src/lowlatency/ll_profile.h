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

// Slots of a bucket: 0 calls, 1-5 stamps of block 0, 6 sum of all blocks' durations, 7 blocks,
// 8 sum of call spans (last block end - first block start), 9 sum of (mean block start - first
// start), 10 sum of (last end - mean block end), 11 sum of (block 0 start - first start);
// 12-17 per-call scratch (max of ~start, max end, sum of starts, sum of ends, blocks arrived,
// block 0 start), folded into 8-11 by the last block of the call and reset; 18 sum of block 0's
// prologue (first instruction -> first stamp).
// 19 unused (the T words of the receivers' former routing pass), 20 sum of block 0's lines stamp
// "counts known" (row bases).
constexpr int kProfSlots = 21;
constexpr int kProfKinds = 5;  // dispatch dedup, dispatch plain, combine reduce, combine plain, dispatch lines
constexpr int kProfPhases = 3; // send, recv, send+recv

static inline size_t profBucket(int kind, int phases, int T, int M) {
  return (((size_t)kind * kProfPhases + (size_t)(phases - 1)) * (size_t)(M + 1) + (size_t)T) * kProfSlots;
}
static inline size_t profBytes(int M) { return sizeof(unsigned long long) * profBucket(kProfKinds, 1, 0, M); }

// EP_LL_PROFILE=2 adds a per-block timeline of dispatch calls (sel 0: fused,
// release protocol; 1: fused, lines; 2: the release protocol's receive phase
// alone, i.e. epLowLatencyRecv of a hooked dedup dispatch in BF16 or with
// EP_LL_LINES=0: hooked FP8 calls use lines), one bucket per T, after
// the phase sums. Why:
// block 0's stamps and the span do not say which blocks end late or when each
// source's routing lands. Per block, summed over calls, relative to the
// call's first block start (ns): kTlStamps stamps (ll_common.cuh, Prof).
// Stamps 6, 10 and 11 belonged to the receivers' former routing pass (removed
// by the sender-ranked routing, session 6): no longer written or printed.
constexpr int kTlStamps = 16;  // 0 start, 1 acks, 2 sends issued, 3 release, 4 rows known, 5 end,
                               // 7 counts (row bases) known, 8 poll-wait ns (a duration), 9 routing published,
                               // 12-15 warp 0's first unit: rows worked out, lines there, stores issued; warp 0 done
                               // (sel 2, warp P-1's first unit: flags seen, header there, row stores issued, scales stored)
constexpr int kTlBlocks = 256;
constexpr int kTlHead = 4;     // calls, last call's first start (absolute ns), sending blocks, grid
constexpr size_t kTlSums = kTlHead, kTlScratch = kTlSums + (size_t)kTlBlocks * kTlStamps,
                 kTlSlots = kTlScratch + (size_t)kTlBlocks * kTlStamps;
static inline size_t tlBucket(int sel, int T, int M) {
  return profBucket(kProfKinds, 1, 0, M) + ((size_t)sel * (M + 1) + (size_t)T) * kTlSlots;
}
constexpr int kTlSels = 3;
static inline size_t tlBytes(int M) { return sizeof(unsigned long long) * tlBucket(kTlSels, 0, M); }

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_PROFILE_H_
