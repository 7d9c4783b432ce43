/*************************************************************************
 * epcomm: one-sided put/signal interface used by kernels that write into
 * peers' symmetric buffers (LL today).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every rank owns one symmetric buffer of the same layout; a peer is named by
 * its rank and a byte offset into ITS buffer. Two ways to move data:
 *  - direct(r): the peer's buffer is mapped here (NVLink/P2P), so a kernel may
 *    store into ptr(r, off) from registers -- the fast path;
 *  - put_warp(r, off, src, bytes): ship bytes from local memory. Over NVLink
 *    it is a warp copy; a remote-node transport (RDMA proxy) replaces it with
 *    a queued put from registered memory, so kernels that stage through their
 *    own symmetric buffer and call put_warp need no rewrite.
 * Ordering: data stores / puts, then fence_before_signal() in every thread
 * that wrote (or a CTA barrier after it), then signal_add / signal_set, which
 * are release operations at system scope. A receiver polls the signal word in
 * its own buffer with an acquire load and reads the data after it.
 *************************************************************************/
#ifndef EP_DEVICE_PUT_SIGNAL_CUH_
#define EP_DEVICE_PUT_SIGNAL_CUH_

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#include "device/ptx.cuh"
#endif

namespace ep {
namespace dev {

struct PutSignal {
  char* const* peer;  // device array [nranks]: each rank's buffer as mapped here; nullptr if not mapped
  char* local;        // this rank's own buffer
  int rank;

#ifdef __CUDACC__  // host code (launch glue) only fills the fields above
  __device__ __forceinline__ bool direct(int r) const { return peer[r] != nullptr; }

  template <typename T>
  __device__ __forceinline__ T* ptr(int r, size_t off) const {
    return reinterpret_cast<T*>(peer[r] + off);
  }
  template <typename T>
  __device__ __forceinline__ T* local_ptr(size_t off) const {
    return reinterpret_cast<T*>(local + off);
  }

  // Warp-cooperative put of `bytes` (multiple of 16, 16-byte aligned) from
  // local memory `src` to offset `off` of rank r's buffer.
  __device__ __forceinline__ void put_warp(int r, size_t off, const void* src, size_t bytes, int lane) const {
    int4* dst = ptr<int4>(r, off);
    const int4* s = reinterpret_cast<const int4*>(src);
    int n = (int)(bytes / 16);
    warp_copy<4>(dst, s, n, lane, [](const int4* p) { return ld_volatile(p); },
                 [](int4* p, const int4& v) { st_na(p, v); });
  }

  // Makes this thread's earlier stores and puts visible at system scope before
  // the signals that follow (each writing thread runs it, then a barrier).
  __device__ __forceinline__ void fence_before_signal() const { fence_acq_rel_sys(); }

  // Adds v to the int at offset `off` of rank r's buffer (release).
  __device__ __forceinline__ void signal_add(int r, size_t off, int v) const { red_add_release_sys(ptr<int>(r, off), v); }
  // Stores v into the int at offset `off` of rank r's buffer (release).
  __device__ __forceinline__ void signal_set(int r, size_t off, int v) const { st_release_sys(ptr<int>(r, off), v); }
#endif
};

}  // namespace dev
}  // namespace ep

#endif  // EP_DEVICE_PUT_SIGNAL_CUH_
