/*************************************************************************
 * epcomm LL: device helpers shared by the dispatch and combine kernels.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_LL_COMMON_CUH_
#define EP_LL_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "device/put_signal.cuh"
#include "device/timeout.cuh"
#include "lowlatency/ll_kernels.h"
#include "lowlatency/ll_layout.h"

namespace ep {
namespace ll {

constexpr int kFamilyLL = 2;
// What a timeout waited for (epDeviceStatus.a).
enum WaitWhat : int { kWaitAck = 1, kWaitMeta = 2, kWaitData = 3 };

__device__ __forceinline__ long long load_topk(const void* topk, int topk64, int i) {
  return topk64 ? reinterpret_cast<const long long*>(topk)[i] : (long long)reinterpret_cast<const int*>(topk)[i];
}

// True once some wait of this communicator has timed out (another block's,
// or an earlier call's that was not cleaned): waiting on is pointless then.
// Other recorded errors (a bad expert id) do not stop the protocol: that slot
// is treated as masked on both sides. Reads host-mapped memory: only on the
// slow path of a wait.
__device__ __forceinline__ bool timed_out(const epDeviceStatus* st) {
  return st != nullptr && dev::ld_volatile(&st->kind) == EP_DEVERR_TIMEOUT;
}

// Polls the int at `p` (local memory, written by peers) until (int)(v - target) >= 0
// (wrap-safe "v >= target"). Returns false on timeout (recorded) or when
// another wait already timed out.
__device__ __forceinline__ bool wait_reach(const int* p, uint32_t target, const SetArgs& sa, int what, int peer) {
  dev::Deadline dl(sa.timeoutNs);
  int spins = 0;
  while (true) {
    uint32_t v = (uint32_t)dev::ld_acquire_sys(p);
    if ((int)(v - target) >= 0) return true;
    if (++spins == 1024) {
      spins = 0;
      if (timed_out(sa.status)) return false;
      if (dl.expired()) {
        dev::record_error(sa.status, kFamilyLL, EP_DEVERR_TIMEOUT, what, peer, (long long)target);
        return false;
      }
    }
  }
}
// Polls until the int at `p` equals `target` exactly (epoch flags).
__device__ __forceinline__ bool wait_equal(const int* p, uint32_t target, const SetArgs& sa, int what, int peer) {
  dev::Deadline dl(sa.timeoutNs);
  int spins = 0;
  while (true) {
    if ((uint32_t)dev::ld_acquire_sys(p) == target) return true;
    if (++spins == 1024) {
      spins = 0;
      if (timed_out(sa.status)) return false;
      if (dl.expired()) {
        dev::record_error(sa.status, kFamilyLL, EP_DEVERR_TIMEOUT, what, peer, (long long)target);
        return false;
      }
    }
  }
}

// Before writing into peers' copies of set b, wait until every peer has
// consumed what the previous operation on set b left there (ack >= epoch-1).
// Threads 0..R-1 each wait for one peer. Ends with __syncthreads.
__device__ __forceinline__ bool wait_acks(const SetArgs& sa, int R, uint32_t epoch, int* sFail) {
  for (int d = threadIdx.x; d < R; d += blockDim.x) {
    const int* p = sa.ps.local_ptr<int>(sa.sigOff + sizeof(int) * (2 * (size_t)R + d));
    if (!wait_reach(p, epoch - 1, sa, kWaitAck, d)) *sFail = 1;
  }
  __syncthreads();
  return *sFail == 0;
}

// Last-block detection: every block calls it after its work; returns true in
// exactly one block (all threads), which then runs the epilogue. The fence
// orders this block's reads of the receive buffers before the count.
__device__ __forceinline__ bool last_block(Ctl* ctl, int set, int* sFlag) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    int old = atomicAdd(&ctl->done[set], 1);
    *sFlag = (old == (int)gridDim.x - 1);
    if (*sFlag) ctl->done[set] = 0;
  }
  __syncthreads();
  return *sFlag != 0;
}

__device__ __forceinline__ float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

// 8 BF16 (one int4) -> 8 floats.
__device__ __forceinline__ void unpack8(const int4& v, float* f) {
  f[0] = bf16_lo((uint32_t)v.x); f[1] = bf16_hi((uint32_t)v.x);
  f[2] = bf16_lo((uint32_t)v.y); f[3] = bf16_hi((uint32_t)v.y);
  f[4] = bf16_lo((uint32_t)v.z); f[5] = bf16_hi((uint32_t)v.z);
  f[6] = bf16_lo((uint32_t)v.w); f[7] = bf16_hi((uint32_t)v.w);
}
__device__ __forceinline__ int4 pack8(const float* f) {
  int4 v;
  v.x = (int)pack_bf16x2(f[0], f[1]);
  v.y = (int)pack_bf16x2(f[2], f[3]);
  v.z = (int)pack_bf16x2(f[4], f[5]);
  v.w = (int)pack_bf16x2(f[6], f[7]);
  return v;
}

// Smallest power of two >= f (f a positive normal float), exactly.
__device__ __forceinline__ float pow2_ceil(float f) {
  uint32_t b = __float_as_uint(f);
  if (b & 0x7fffffu) b = (b & 0xff800000u) + 0x800000u;
  return __uint_as_float(b);
}

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_COMMON_CUH_
