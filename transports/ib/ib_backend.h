/*************************************************************************
 * epcomm: the verbs backend of the proxy (EP_NET=ib or auto with a NIC).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Per rank: the PCI-nearest active port (EP_IB_HCA filter), one PD, one CQ,
 * one RC QP per (remote-node peer, channel), connected through the bootstrap
 * allgather (epIbConnInfo records, ib_qp.h). Channels [0, nHt) carry HT
 * traffic (EP_IB_SL / EP_IB_TC), channels [nHt, nHt + nLl) LL traffic
 * (EP_IB_SL_LL / EP_IB_TC_LL). Same-node peers get no QP: their traffic goes
 * over NVLink.
 *
 * Windows are registered as MRs (ib_reg.h) and their (address, rkey) are
 * exchanged at registration. Signals: atomics (default) need nothing from
 * the receiver; EP_IB_SIGNAL=imm makes the receiver's proxy apply them when
 * the WRITE_WITH_IMM arrives (CPU atomic on host windows, a loopback RDMA
 * atomic on GPU windows). With imm, the sender's op completes when the
 * write is acknowledged; the signal is applied at the receiver right after.
 *
 * Errors: a failed work completion (retry exceeded, remote access error,
 * ...) is fatal for the communicator and names the peer rank and channel.
 *************************************************************************/
#ifndef EP_TRANSPORT_IB_BACKEND_H_
#define EP_TRANSPORT_IB_BACKEND_H_

#include <memory>
#include <string>

#include "epcomm.h"
#include "transports/ib/ibvwrap.h"
#include "transports/proxy/net_backend.h"

struct epComm;

/* epSuccess when a usable port exists; else epNotSupported with `why`. */
epResult_t epIbProbe(epComm* comm, std::string* why);
epResult_t epIbBackendCreate(epComm* comm, int nChannels, int nLlChannels, std::unique_ptr<epNetBackend>* out);

/* What epIbBackendCreate takes from the process (verbs table, sysfs, knobs);
 * unit tests pass a fake NIC and explicit modes instead. */
struct epIbBackendConfig {
  const epIbvFns* ibv = nullptr;  /* nullptr: epIbv() */
  std::string sysfsRoot = "/sys";
  int signalMode = -1;            /* -1: EP_IB_SIGNAL */
  int adaptiveRouting = -2;       /* -2: EP_IB_ADAPTIVE_ROUTING */
  int maxInflight = 0;            /* 0: EP_IB_MAX_INFLIGHT */
  uint32_t maxChunk = 0;          /* 0: EP_IB_CHUNK_BYTES, else the port maximum */
};
epResult_t epIbBackendCreateWith(epComm* comm, int nChannels, int nLlChannels, const epIbBackendConfig& cfg,
                                 std::unique_ptr<epNetBackend>* out);

/* Readable text for a work-completion status (verbs' own is not in our table). */
const char* epIbWcStatusName(int status);

#endif  // EP_TRANSPORT_IB_BACKEND_H_
