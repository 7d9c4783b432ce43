/*************************************************************************
 * epcomm: RC queue pairs: connection-info wire format and the attributes of
 * the INIT -> RTR -> RTS transitions, built from the EP_IB_* knobs.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Wire format of epIbConnInfo (EP_IB_CONN_BYTES = 40 bytes, little-endian,
 * exchanged through the bootstrap allgather; versioned so that a rank built
 * from another release is refused with a message instead of misread):
 *   off size field
 *     0   4  magic      0x42495045 ("EPIB")
 *     4   2  version    EP_IB_CONN_VERSION
 *     6   1  linkLayer  IBV_LINK_LAYER_INFINIBAND (1) / _ETHERNET (2)
 *     7   1  mtu        enum ibv_mtu (1..5) of the sender's port
 *     8   4  qpn        24-bit QP number
 *    12   4  psn        24-bit initial packet sequence number
 *    16   2  lid        port LID (InfiniBand)
 *    18   1  port       verbs port number
 *    19   1  flags      bit 0: adaptive routing, bit 1: write-with-imm signals
 *    20  16  gid        GID of the chosen index (RoCE / routed IB)
 *    36   4  rank       sender's rank (sanity check of the exchange)
 *************************************************************************/
#ifndef EP_TRANSPORT_IB_QP_H_
#define EP_TRANSPORT_IB_QP_H_

#include <cstdint>
#include <string>

#include "epcomm.h"
#include "transports/ib/ibvwrap.h"

#define EP_IB_CONN_MAGIC 0x42495045u
#define EP_IB_CONN_VERSION 1
#define EP_IB_CONN_BYTES 40
#define EP_IB_CONN_FLAG_AR 0x1
#define EP_IB_CONN_FLAG_IMM 0x2

struct epIbConnInfo {
  uint8_t linkLayer = 0;
  uint8_t mtu = 0;
  uint32_t qpn = 0;
  uint32_t psn = 0;
  uint16_t lid = 0;
  uint8_t port = 0;
  uint8_t flags = 0;
  uint8_t gid[16] = {0};
  int32_t rank = -1;
};

void epIbConnPack(const epIbConnInfo& in, uint8_t out[EP_IB_CONN_BYTES]);
/* Checks magic, version and field ranges; `why` says what was wrong. */
epResult_t epIbConnUnpack(const uint8_t in[EP_IB_CONN_BYTES], epIbConnInfo* out, std::string* why);

/* Everything the transitions need about the local end, resolved from knobs. */
struct epIbQpParams {
  int port = 1;
  int pkeyIndex = 0;      /* EP_IB_PKEY */
  int linkLayer = IBV_LINK_LAYER_INFINIBAND;
  int mtu = IBV_MTU_4096; /* port active MTU, or EP_IB_MTU */
  int gidIndex = 0;
  bool useGrh = false;    /* RoCE always; IB when EP_IB_GID_INDEX is set (routed fabrics) */
  int sl = 0;             /* EP_IB_SL or EP_IB_SL_LL */
  int tc = 0;             /* EP_IB_TC or EP_IB_TC_LL */
  bool congestionControl = false; /* EP_IB_CC: mark ECN-capable (ECT(0)) in the traffic class */
  int timeout = 20;       /* EP_IB_TIMEOUT */
  int retryCnt = 7;       /* EP_IB_RETRY_CNT */
  int rnrRetry = 7;
  int maxRdAtomic = 1;    /* outstanding RDMA atomics (signals), capped by the device */
};

/* Builds the params from the knobs for a port. `traffic`: 0 = HT, 1 = LL. */
epResult_t epIbQpParamsFromEnv(int port, int linkLayer, int activeMtu, int gidIndex, int devMaxRdAtomic,
                               int traffic, epIbQpParams* out, std::string* why);

/* The traffic class actually sent: EP_IB_TC, with ECT(0) set when EP_IB_CC=1. */
int epIbEffectiveTc(const epIbQpParams& p);

void epIbInitAttr(const epIbQpParams& p, struct ibv_qp_attr* attr, int* mask);
void epIbRtrAttr(const epIbQpParams& p, const epIbConnInfo& remote, uint8_t sgidIndex, struct ibv_qp_attr* attr,
                 int* mask);
void epIbRtsAttr(const epIbQpParams& p, uint32_t localPsn, struct ibv_qp_attr* attr, int* mask);

/* Creates an RC QP (sq_sig_all = 0; 8 bytes inline for SET signals). */
epResult_t epIbQpCreate(const epIbvFns* ibv, struct ibv_pd* pd, struct ibv_cq* sendCq, struct ibv_cq* recvCq,
                        int maxSendWr, int maxRecvWr, struct ibv_qp** qp);
/* INIT -> RTR -> RTS against `remote`. */
epResult_t epIbQpConnect(const epIbvFns* ibv, struct ibv_qp* qp, const epIbQpParams& p, uint32_t localPsn,
                         const epIbConnInfo& remote);

#endif  // EP_TRANSPORT_IB_QP_H_
