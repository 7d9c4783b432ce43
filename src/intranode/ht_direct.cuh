/*************************************************************************
 * epcomm: HT intranode — the per-call handshake of the two data paths.
 *
 * Every dispatch and combine call has an epoch (same sequence on every
 * rank). At the start of its kernel a rank publishes, into each peer's
 * buffer, dflag[kind][me] = epoch * 2 + direct, where `direct` says it passed
 * registered buffers (direct path) rather than unregistered ones (ring path).
 * On the direct path the flag also publishes drec[kind][me], the rank's
 * registered (slot, offset) of each buffer for this call: being written at
 * kernel start, in stream order, it says "my previous consumers of these
 * buffers are done, write (dispatch) or read (combine) them now".
 *
 * Every block waits for every peer's flag of this epoch before it moves
 * data. A peer on the other path is detected there (EP_DEVERR_PATH_MISMATCH)
 * and the call ends without moving anything, on every rank.
 *
 * A flag (or done word) showing a LATER epoch also counts as arrived: on the
 * ring path a peer can finish call e and start e+1 before a block of ours
 * that had nothing to exchange with it looked at its flag. On the direct
 * path that cannot happen (the peer's kernel waits for our done words), so
 * a record is never overwritten before every reader of it has read it.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_INTRANODE_HT_DIRECT_CUH_
#define EP_INTRANODE_HT_DIRECT_CUH_

#include "intranode/ht_device.cuh"

namespace ep {
namespace ht {

constexpr int kWaitPath = 5;  // a peer's path flag (start of a call)
constexpr int kWaitDone = 6;  // a peer's done word (end of a direct call)

// 31-bit epochs: `got` is at or after `e`.
__device__ __forceinline__ bool epoch_reached(uint32_t got, uint32_t e) {
  return ((got - e) & 0x7fffffffu) < 0x40000000u;
}

__device__ __forceinline__ int* dflag_at(const Buf& b, char* base, int kind, int src) {
  return reinterpret_cast<int*>(base + b.lay.dflagOff) + ((size_t)kind * b.lay.nranks + src) * EP_HT_COUNTER_STRIDE;
}
__device__ __forceinline__ epHtDirectRec* drec_at(const Buf& b, char* base, int kind, int src) {
  return reinterpret_cast<epHtDirectRec*>(base + b.lay.drecOff) + (size_t)kind * b.lay.nranks + src;
}
__device__ __forceinline__ int* ddone_at(const Buf& b, char* base, int kind, int src, int c) {
  return reinterpret_cast<int*>(base + b.lay.ddoneOff) + ((size_t)kind * b.lay.nranks + src) * b.lay.maxChannels + c;
}

// Thread `peer` of block 0: writes our record (direct path) into peer's
// buffer, then the flag with release semantics (the record is visible first).
__device__ __forceinline__ void path_publish(const Buf& b, int kind, uint32_t e, int direct, int peer,
                                             const epHtDirectRec* rec) {
  if (rec) {
    const int4* s = reinterpret_cast<const int4*>(rec);
    int4* d = reinterpret_cast<int4*>(drec_at(b, b.peers.buf[peer], kind, b.me()));
#pragma unroll
    for (int i = 0; i < (int)(sizeof(epHtDirectRec) / 16); i++) d[i] = s[i];
  }
  st_release_sys(dflag_at(b, b.peers.buf[peer], kind, b.me()), (int)(e * 2u + (uint32_t)direct));
}

// Thread `peer` of any block: waits until `peer` started call e, and checks
// that it took the same path. False (error recorded, abortFlag set) on a
// mismatch, a timeout or another warp's abort.
__device__ __forceinline__ bool path_wait(const Buf& b, int kind, uint32_t e, int direct, int peer, Spin& spin,
                                          int* abortFlag, epDeviceStatus* st, int c) {
  const int* f = dflag_at(b, b.local(), kind, peer);
  while (true) {
    const uint32_t v = (uint32_t)ld_acquire_sys(f);
    const uint32_t got = v >> 1;
    if (v != 0 && epoch_reached(got, e)) {
      if (got == e && (int)(v & 1u) != direct) {
        record_error(st, kFamilyHt, EP_DEVERR_PATH_MISMATCH, b.me(), peer, direct);
        *reinterpret_cast<volatile int*>(abortFlag) = 1;
        return false;
      }
      return true;
    }
    if (spin.tick(abortFlag, st, c, peer, kWaitPath)) return false;
  }
}

// The path handshake of a ring-path kernel: block 0 publishes, every block
// waits for all peers. Call with every thread of the block after abortFlag is
// initialised; returns false (for every thread) when the call must end.
__device__ __forceinline__ bool ring_path_handshake(const Buf& b, int kind, uint32_t e, int* abortFlag,
                                                    epDeviceStatus* st, unsigned long long timeoutNs) {
  const int R = b.R();
  if (blockIdx.x == 0 && threadIdx.x < R) path_publish(b, kind, e, 0, threadIdx.x, nullptr);
  if (threadIdx.x < R) {
    Spin spin(timeoutNs);
    (void)path_wait(b, kind, e, 0, threadIdx.x, spin, abortFlag, st, blockIdx.x);
  }
  __syncthreads();
  return *reinterpret_cast<volatile int*>(abortFlag) == 0;
}

// Thread `peer`: waits until peer's channel c is done with us for call e.
__device__ __forceinline__ bool done_wait(const Buf& b, int kind, uint32_t e, int peer, int c, Spin& spin,
                                          int* abortFlag, epDeviceStatus* st) {
  const int* f = ddone_at(b, b.local(), kind, peer, c);
  while (true) {
    const uint32_t v = (uint32_t)ld_acquire_sys(f);
    if (v != 0 && epoch_reached(v, e)) return true;
    if (spin.tick(abortFlag, st, c, peer, kWaitDone)) return false;
  }
}

// Row of channel c's first token in rank r's received rows: r's rank prefix
// for us (from its record) plus the rows our earlier channels send to r.
// Direct dispatch writes there and direct combine reads back from there.
__device__ __forceinline__ int chan_row_base(const int* sendChanCount, int r, int c, int rankPrefix) {
  int base = rankPrefix;
  for (int k = 0; k < c; k++) base += sendChanCount[r * EP_HT_MAX_CHANNELS + k];
  return base;
}

}  // namespace ht
}  // namespace ep

#endif  // EP_INTRANODE_HT_DIRECT_CUH_
