/*************************************************************************
 * epcomm LL over RDMA: peers that are not NVLink-reachable (another node,
 * real or emulated) are reached through the network proxy.
 * SPDX-License-Identifier: Apache-2.0
 *
 * The LL kernels keep writing every remote byte exactly as for an NVLink
 * peer, through PutSignal::ptr(r, off) -- but for a remote r the pointer
 * leads into a local MIRROR of r's LL buffer (same layout, same offsets).
 * After a send phase, the last block of the grid ships, per remote peer, the
 * ranges this rank wrote into its mirror to the same offsets of the peer's
 * LL buffer (RDMA writes through the proxy), then SETs a 64-bit word of the
 * peer's remote-signal block to the use's epoch; the transport makes that
 * signal visible only after the data. So:
 *   dispatch -> info words [me], headers [me][0, T), messages [me][0, T)
 *               (x K without dedup), then DATA[set][me] = epoch
 *   combine  -> reduced rows [me][0, T_s), or each expert row [t][k] this
 *               rank produced (separate puts: other ranks own the slots in
 *               between), then DATA[set][me] = epoch
 *   acks     -> ACK[set][me] = completed receives of the set (SET as well)
 * Receivers of a remote source wait for DATA >= epoch (64-bit, written by
 * the proxy) instead of the 32-bit data counter, and senders wait for a
 * remote peer's ACK word; everything else (tagged info words, header epochs,
 * slot addressing, the NVLink path itself) is unchanged. Only SET signals
 * are used: the verbs backend writes them as 8-byte RDMA writes and the
 * emulated one with the copy engine, so no GPU atomics and no SM are needed
 * at the receiver or the sender's GPU while LL kernels occupy every SM.
 *
 * Single-node communicators never build any of this (RemoteArgs::on = 0):
 * the kernels then take exactly the NVLink path.
 *************************************************************************/
#ifndef EP_LL_REMOTE_H_
#define EP_LL_REMOTE_H_

#include <cstddef>
#include <cstdint>

#include "epcomm.h"
#include "transports/proxy/net_device.h"

#ifdef __CUDACC__
#define EP_LL_REMOTE_HD __host__ __device__ inline
#else
#define EP_LL_REMOTE_HD inline
#endif

namespace ep {
namespace ll {

// Kinds of 64-bit words in the remote-signal block: [set][kind][source rank].
enum RemoteSig : int { kRemoteData = 0, kRemoteAck = 1 };

// What LL kernels need to reach remote peers (by value in SetArgs).
struct RemoteArgs {
  int on;                // 0: no remote peer, nothing below is used
  int R;
  const int* mirrorOf;   // device [R]: index of r's mirror, -1 for an NVLink peer
  uint64_t* sig;         // this rank's remote-signal block [2][2][R] (written by peers' proxies)
  unsigned* shipCtr;     // device [2]: blocks of the current send phase done, per set
  size_t mirrorStride;   // bytes of one mirror (= the LL buffer)
  int llWin, mirrorWin, sigWin;
  int chBase, nCh;       // the LL channels of the proxy
  epNetDevice net;
};

// Slot (8-byte index into the remote-signal window) of word (set, kind, r).
EP_LL_REMOTE_HD size_t remoteSigSlot(int R, int set, int kind, int r) { return ((size_t)set * 2 + kind) * R + r; }

// The byte ranges of a peer's LL buffer (offsets of one set) that a send
// phase of rank `me` writes, hence ships: the kernels' store addresses all
// fall inside them (unit-tested against ll_layout.h).
struct RmRange {
  size_t off, bytes;
};
// Dispatch: the info words of source me.
EP_LL_REMOTE_HD RmRange rmDispatchInfo(size_t infoOff, size_t infoStride, int me) {
  return RmRange{infoOff + (size_t)me * infoStride, infoStride};
}
// Dispatch: headers [me][0, T) (hdrBytes = sizeof(DispatchHdr)).
EP_LL_REMOTE_HD RmRange rmDispatchHdr(size_t hdrOff, size_t hdrBytes, int me, int M, int T) {
  return RmRange{hdrOff + (size_t)me * M * hdrBytes, (size_t)T * hdrBytes};
}
// Dispatch: messages [me][0, T) x per (1 with dedup, else K).
EP_LL_REMOTE_HD RmRange rmDispatchData(size_t dataOff, int me, int M, int T, int per, size_t msgStride) {
  return RmRange{dataOff + (size_t)me * M * per * msgStride, (size_t)T * per * msgStride};
}
// Combine, reduced on the sender: rows [me][0, Ts) of source s (Ts its tokens).
EP_LL_REMOTE_HD RmRange rmCombineReduced(size_t dataOff, int me, int M, int Ts, size_t row) {
  return RmRange{dataOff + (size_t)me * M * row, (size_t)Ts * row};
}
// Combine, per expert: the row of pick k of the source's token t.
EP_LL_REMOTE_HD RmRange rmCombineRow(size_t dataOff, int t, int K, int k, size_t row) {
  return RmRange{dataOff + ((size_t)t * K + k) * row, row};
}

}  // namespace ll
}  // namespace ep

struct epComm;
struct epLlState;

/* Host side, owned by epLlState::remote. */
struct epLlRemote {
  int nRemote = 0;
  char* mirror = nullptr;    /* nRemote mirrors of layout.total bytes */
  uint64_t* sig = nullptr;   /* [2][2][R] */
  unsigned* shipCtr = nullptr;
  int* mirrorOf = nullptr;   /* device [R] */
  void** devPeer = nullptr;  /* device [R]: NVLink peers' buffers, mirrors for remote peers */
  int llWin = -1, mirrorWin = -1, sigWin = -1;
  size_t bytes = 0;
  ep::ll::RemoteArgs args{};
};

/* True when some rank of `comm` is not NVLink-reachable from this one. */
bool epLlNeedsRemote(const epComm* comm);
/* Builds st->remote (collective: network init and window registration). */
epResult_t epLlRemoteSetup(epComm* comm, epLlState* st);
/* Frees st->remote (local; destroy has synchronised the ranks). */
void epLlRemoteFree(epComm* comm, epLlState* st);
/* epLowLatencyClean: before its first barrier, every op this rank posted has
 * landed (the caller synchronised the device); after it, the remote-signal
 * words, ship counters and mirrors' control parts are zeroed. */
epResult_t epLlRemoteDrain(epComm* comm);
epResult_t epLlRemoteZero(epComm* comm, epLlState* st);

#endif  // EP_LL_REMOTE_H_
