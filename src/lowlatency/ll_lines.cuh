/*************************************************************************
 * epcomm LL: flagged 128-byte lines (EP_LL_LINES), the primitives shared by
 * the lines dispatch (ll_dispatch_lines.cuh) and the lines combine
 * (ll_combine.cu).
 * SPDX-License-Identifier: Apache-2.0
 *
 * A line is 128 bytes, 128-byte aligned: 7 payload units of 16 bytes and, in
 * the last 16 bytes, a flag unit that holds the epoch of the use that wrote
 * it. The 8 lanes 8g..8g+7 of a warp write line g of a store instruction
 * together (lane 8g+7 the flag unit), and a reader loads a whole line with one
 * instruction of 8 lanes the same way. The protocol relies on a platform
 * property: such a line store arrives in the peer's memory as a whole (a
 * reader never sees the new flag with old payload). NVLink on Hopper
 * delivers a warp's aligned 128-byte store as one write (NCCL's LL128
 * protocol relies on the same property), but it is not an architectural
 * guarantee: the LlLinesStress GPU test writes flagged lines at full rate from
 * every SM to every GPU while readers check every byte, and EP_LL_LINES=0
 * falls back to the release protocol (block-done flags).
 *
 * What it buys: the receiver copies a message as soon as its lines are there,
 * while the link is still busy. A release store at system scope completes
 * only once every earlier NVLink write of the GPU has drained, so
 * release-based flags can only complete at the end of the link phase.
 *************************************************************************/
#ifndef EP_LL_LINES_CUH_
#define EP_LL_LINES_CUH_

#include <cstdint>

#include "lowlatency/ll_common.cuh"

namespace ep {
namespace ll {

// One 16-byte unit of a line. volatile: the compiler keeps the vector store
// whole and in program order (no merging or splitting).
__device__ __forceinline__ void line_st(int4* p, const int4& v) {
  asm volatile("st.volatile.global.v4.s32 [%0], {%1,%2,%3,%4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}
// One 16-byte unit of a line, read coherently (never from L1).
__device__ __forceinline__ int4 line_ld(const int4* p) {
  int4 v;
  asm volatile("ld.volatile.global.v4.s32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}
__device__ __forceinline__ int4 flag_unit(uint32_t epoch) {
  return make_int4((int)epoch, (int)epoch, (int)epoch, (int)epoch);
}
// Every lane of the warp (all must call it): true when the line this lane
// loaded (its group of 8 lanes) carries `epoch` in its flag unit.
__device__ __forceinline__ bool line_ok(const int4& v, uint32_t epoch) {
  const int lane = threadIdx.x & 31;
  return (uint32_t)__shfl_sync(0xffffffffu, v.x, lane | 7) == epoch;
}
// Unit u (0..3 of an int4) of `v` held by lane `src`, for every lane.
__device__ __forceinline__ int4 shfl_unit(const int4& v, int src) {
  return make_int4(__shfl_sync(0xffffffffu, v.x, src), __shfl_sync(0xffffffffu, v.y, src),
                   __shfl_sync(0xffffffffu, v.z, src), __shfl_sync(0xffffffffu, v.w, src));
}
__device__ __forceinline__ int comp(const int4& v, int c) { return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w; }

// First look at lines [lb, le) of a slot (lane group g holds lines
// lb + g + 4r, r < N): their loads are issued and left in flight; returns the mask
// of the lane's lines in range. wait_lines then checks them.
template <int N>
__device__ __forceinline__ unsigned issue_lines(const int4* slot, int lb, int le, int4 (&v)[N]) {
  const int lane = threadIdx.x & 31, g = lane >> 3, i = lane & 7;
  unsigned need = 0;
#pragma unroll
  for (int r = 0; r < N; r++) {
    v[r] = make_int4(0, 0, 0, 0);
    if (lb + 4 * r + g < le) need |= 1u << r;
  }
#pragma unroll
  for (int r = 0; r < N; r++)
    if (need >> r & 1) v[r] = line_ld(slot + (size_t)(lb + 4 * r + g) * 8 + i);
  return need;
}

// Waits until every line of issue_lines' batch shows the epoch in its flag;
// false (warp-uniform) on a timeout. Lines not there at the first look are
// loaded whole again. (Polling only their flag units, then loading the lines
// whole once, measured no different: EP_LL_POLL_FLAGS, ll_notes.md round 6.)
// waitNs (EP_LL_PROFILE=2, else nullptr): the block's sum of warp wait time.
template <int N>
__device__ __forceinline__ bool wait_lines(const SetArgs& sa, const int4* slot, int lb, uint32_t epoch, int s,
                                           int4 (&v)[N], unsigned need, unsigned long long* waitNs) {
  const int lane = threadIdx.x & 31, g = lane >> 3, i = lane & 7;
#pragma unroll
  for (int r = 0; r < N; r++)
    if (line_ok(v[r], epoch)) need &= ~(1u << r);
  if (__all_sync(0xffffffffu, need == 0)) return true;
  dev::Deadline dl(sa.timeoutNs);
  const unsigned long long w0 = waitNs ? dev::globaltimer_ns() : 0;
  int spins = 0;
  while (true) {
    if (sa.pollNs) __nanosleep(sa.pollNs);
#pragma unroll
    for (int r = 0; r < N; r++)
      if (need >> r & 1) v[r] = line_ld(slot + (size_t)(lb + 4 * r + g) * 8 + i);
#pragma unroll
    for (int r = 0; r < N; r++)
      if (line_ok(v[r], epoch)) need &= ~(1u << r);
    if (__all_sync(0xffffffffu, need == 0)) break;
    if (++spins == 1024) {
      spins = 0;
      if (__any_sync(0xffffffffu, timed_out(sa.status))) return false;
      if (__any_sync(0xffffffffu, dl.expired())) {
        if (lane == 0) dev::record_error(sa.status, kFamilyLL, EP_DEVERR_TIMEOUT, kWaitData, s, (long long)epoch);
        return false;
      }
    }
  }
  if (waitNs && lane == 0) atomicAdd(waitNs, dev::globaltimer_ns() - w0);
  return true;
}

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_LINES_CUH_
