/*************************************************************************
 * epcomm: bounded device-side waiting and error recording.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every spin loop in a kernel goes through ep::dev::Deadline, so that a peer
 * that never arrives yields epTimeout (recorded in epDeviceStatus, naming the
 * channel and peer) instead of a hang. Kernels that time out or see bad input
 * record the first error and leave without further writes.
 *************************************************************************/
#ifndef EP_DEVICE_TIMEOUT_CUH_
#define EP_DEVICE_TIMEOUT_CUH_

#include "device/ptx.cuh"
#include "device/status.h"

namespace ep {
namespace dev {

struct Deadline {
  uint64_t end;
  __device__ __forceinline__ explicit Deadline(uint64_t timeoutNs) : end(globaltimer_ns() + timeoutNs) {}
  __device__ __forceinline__ bool expired() const { return globaltimer_ns() > end; }
};

// Records the first error only; later ones are dropped (the first is the cause).
// Out of line: it runs only on an error, and inlined at every wait and check
// it put hundreds of cold instructions between the hot ones of the LL kernels
// (their code runs with a cold instruction cache: ll_notes.md round 8).
static __device__ __noinline__ void record_error(epDeviceStatus* st, int family, int kind, int a, int b,
                                             long long value) {
  if (st == nullptr) return;
  if (atomicCAS(&st->kind, 0, kind) == 0) {
    st->family = family;
    st->a = a;
    st->b = b;
    st->value = value;
    __threadfence_system();
  }
}

// True once any block has recorded an error: lets waiting warps give up early.
__device__ __forceinline__ bool has_error(const epDeviceStatus* st) {
  return st != nullptr && ld_volatile(&st->kind) != 0;
}

}  // namespace dev
}  // namespace ep

#endif  // EP_DEVICE_TIMEOUT_CUH_
