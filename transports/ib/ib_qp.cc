/*************************************************************************
 * epcomm: RC queue pairs (see ib_qp.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/ib/ib_qp.h"

#include <cerrno>
#include <cstring>

#include "core/debug.h"
#include "transports/ib/ib_params.h"

namespace {

void put16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
uint16_t get16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}

}  // namespace

void epIbConnPack(const epIbConnInfo& in, uint8_t out[EP_IB_CONN_BYTES]) {
  memset(out, 0, EP_IB_CONN_BYTES);
  put32(out + 0, EP_IB_CONN_MAGIC);
  put16(out + 4, EP_IB_CONN_VERSION);
  out[6] = in.linkLayer;
  out[7] = in.mtu;
  put32(out + 8, in.qpn);
  put32(out + 12, in.psn);
  put16(out + 16, in.lid);
  out[18] = in.port;
  out[19] = in.flags;
  memcpy(out + 20, in.gid, 16);
  put32(out + 36, (uint32_t)in.rank);
}

epResult_t epIbConnUnpack(const uint8_t in[EP_IB_CONN_BYTES], epIbConnInfo* out, std::string* why) {
  if (get32(in) != EP_IB_CONN_MAGIC) {
    *why = "bad magic (not an epcomm IB connection record)";
    return epInternalError;
  }
  if (get16(in + 4) != EP_IB_CONN_VERSION) {
    *why = "connection record version " + std::to_string(get16(in + 4)) + ", expected " +
           std::to_string(EP_IB_CONN_VERSION) + " (mixed epcomm versions across ranks?)";
    return epInvalidUsage;
  }
  epIbConnInfo c;
  c.linkLayer = in[6];
  c.mtu = in[7];
  c.qpn = get32(in + 8);
  c.psn = get32(in + 12);
  c.lid = get16(in + 16);
  c.port = in[18];
  c.flags = in[19];
  memcpy(c.gid, in + 20, 16);
  c.rank = (int32_t)get32(in + 36);
  if (c.linkLayer != IBV_LINK_LAYER_INFINIBAND && c.linkLayer != IBV_LINK_LAYER_ETHERNET) {
    *why = "unknown link layer " + std::to_string(c.linkLayer);
    return epInternalError;
  }
  if (c.mtu < IBV_MTU_256 || c.mtu > IBV_MTU_4096) {
    *why = "MTU enum " + std::to_string(c.mtu) + " out of range";
    return epInternalError;
  }
  if (c.qpn == 0 || c.qpn > 0xffffff || c.psn > 0xffffff) {
    *why = "QP number or PSN does not fit 24 bits";
    return epInternalError;
  }
  *out = c;
  return epSuccess;
}

epResult_t epIbQpParamsFromEnv(int port, int linkLayer, int activeMtu, int gidIndex, int devMaxRdAtomic, int traffic,
                               epIbQpParams* out, std::string* why) {
  epIbQpParams p;
  p.port = port;
  p.linkLayer = linkLayer;
  p.gidIndex = gidIndex;
  p.useGrh = linkLayer == IBV_LINK_LAYER_ETHERNET || epParamIbGidIndex() >= 0;
  p.pkeyIndex = (int)epParamIbPkey();
  int64_t sl = epParamIbSl(), tc = epParamIbTc();
  if (traffic == 1 && epParamIbSlLl() >= 0) sl = epParamIbSlLl();
  if (traffic == 1 && epParamIbTcLl() >= 0) tc = epParamIbTcLl();
  if (sl < 0 || sl > 15) {
    *why = "EP_IB_SL/EP_IB_SL_LL=" + std::to_string(sl) + " must be in [0, 15]";
    return epInvalidArgument;
  }
  if (tc < 0 || tc > 255) {
    *why = "EP_IB_TC/EP_IB_TC_LL=" + std::to_string(tc) + " must be in [0, 255]";
    return epInvalidArgument;
  }
  p.sl = (int)sl;
  p.tc = (int)tc;
  p.congestionControl = epParamIbCc() != 0;
  int64_t to = epParamIbTimeout(), rc = epParamIbRetryCnt();
  if (to < 1 || to > 31 || rc < 0 || rc > 7) {
    *why = "EP_IB_TIMEOUT must be in [1, 31] and EP_IB_RETRY_CNT in [0, 7]";
    return epInvalidArgument;
  }
  p.timeout = (int)to;
  p.retryCnt = (int)rc;
  int64_t mtuBytes = epParamIbMtu();
  p.mtu = activeMtu;
  if (mtuBytes != 0) {
    int e = 0;
    switch (mtuBytes) {
      case 256: e = IBV_MTU_256; break;
      case 512: e = IBV_MTU_512; break;
      case 1024: e = IBV_MTU_1024; break;
      case 2048: e = IBV_MTU_2048; break;
      case 4096: e = IBV_MTU_4096; break;
      default:
        *why = "EP_IB_MTU=" + std::to_string(mtuBytes) + " must be 256, 512, 1024, 2048 or 4096";
        return epInvalidArgument;
    }
    if (e < p.mtu) p.mtu = e;  // never above what the port runs
  }
  p.maxRdAtomic = devMaxRdAtomic > 0 ? (devMaxRdAtomic < 16 ? devMaxRdAtomic : 16) : 1;
  *out = p;
  return epSuccess;
}

int epIbEffectiveTc(const epIbQpParams& p) { return p.congestionControl ? (p.tc | 0x2) : p.tc; }

void epIbInitAttr(const epIbQpParams& p, struct ibv_qp_attr* a, int* mask) {
  memset(a, 0, sizeof(*a));
  a->qp_state = IBV_QPS_INIT;
  a->pkey_index = (uint16_t)p.pkeyIndex;
  a->port_num = (uint8_t)p.port;
  a->qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                       IBV_ACCESS_REMOTE_ATOMIC;
  *mask = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
}

void epIbRtrAttr(const epIbQpParams& p, const epIbConnInfo& r, uint8_t sgidIndex, struct ibv_qp_attr* a, int* mask) {
  memset(a, 0, sizeof(*a));
  a->qp_state = IBV_QPS_RTR;
  a->path_mtu = (enum ibv_mtu)(p.mtu < r.mtu ? p.mtu : r.mtu);
  a->dest_qp_num = r.qpn;
  a->rq_psn = r.psn;
  a->max_dest_rd_atomic = (uint8_t)p.maxRdAtomic;
  a->min_rnr_timer = 12;
  a->ah_attr.sl = (uint8_t)p.sl;
  a->ah_attr.port_num = (uint8_t)p.port;
  a->ah_attr.src_path_bits = 0;
  if (p.useGrh) {
    a->ah_attr.is_global = 1;
    memcpy(a->ah_attr.grh.dgid.raw, r.gid, 16);
    a->ah_attr.grh.sgid_index = sgidIndex;
    a->ah_attr.grh.hop_limit = 255;
    a->ah_attr.grh.flow_label = 0;
    a->ah_attr.grh.traffic_class = (uint8_t)epIbEffectiveTc(p);
  } else {
    a->ah_attr.is_global = 0;
    a->ah_attr.dlid = r.lid;
  }
  *mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
          IBV_QP_MIN_RNR_TIMER;
}

void epIbRtsAttr(const epIbQpParams& p, uint32_t localPsn, struct ibv_qp_attr* a, int* mask) {
  memset(a, 0, sizeof(*a));
  a->qp_state = IBV_QPS_RTS;
  a->timeout = (uint8_t)p.timeout;
  a->retry_cnt = (uint8_t)p.retryCnt;
  a->rnr_retry = (uint8_t)p.rnrRetry;
  a->sq_psn = localPsn;
  a->max_rd_atomic = (uint8_t)p.maxRdAtomic;
  *mask = IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC;
}

epResult_t epIbQpCreate(const epIbvFns* ibv, struct ibv_pd* pd, struct ibv_cq* sendCq, struct ibv_cq* recvCq,
                        int maxSendWr, int maxRecvWr, struct ibv_qp** qp) {
  struct ibv_qp_init_attr ia;
  memset(&ia, 0, sizeof(ia));
  ia.send_cq = sendCq;
  ia.recv_cq = recvCq;
  ia.qp_type = IBV_QPT_RC;
  ia.sq_sig_all = 0;  // only the last work request of an op asks for a completion
  ia.cap.max_send_wr = (uint32_t)maxSendWr;
  ia.cap.max_recv_wr = (uint32_t)maxRecvWr;
  ia.cap.max_send_sge = 1;
  ia.cap.max_recv_sge = 1;
  ia.cap.max_inline_data = 16;
  errno = 0;
  *qp = ibv->createQp(pd, &ia);
  if (*qp == nullptr) {
    EP_WARN("NET/IB: ibv_create_qp(RC, %d send / %d recv WRs) failed: %s", maxSendWr, maxRecvWr, strerror(errno));
    return epSystemError;
  }
  return epSuccess;
}

epResult_t epIbQpConnect(const epIbvFns* ibv, struct ibv_qp* qp, const epIbQpParams& p, uint32_t localPsn,
                         const epIbConnInfo& remote) {
  struct ibv_qp_attr a;
  int mask = 0, rc;
  epIbInitAttr(p, &a, &mask);
  if ((rc = ibv->modifyQp(qp, &a, mask)) != 0) {
    EP_WARN("NET/IB: QP to INIT failed (port %d, pkey index %d): %s", p.port, p.pkeyIndex, strerror(rc));
    return epSystemError;
  }
  epIbRtrAttr(p, remote, (uint8_t)p.gidIndex, &a, &mask);
  if ((rc = ibv->modifyQp(qp, &a, mask)) != 0) {
    EP_WARN("NET/IB: QP to RTR failed (peer rank %d qpn %u, sl %d, tc %d, gid index %d): %s", remote.rank,
            remote.qpn, p.sl, epIbEffectiveTc(p), p.gidIndex, strerror(rc));
    return epSystemError;
  }
  epIbRtsAttr(p, localPsn, &a, &mask);
  if ((rc = ibv->modifyQp(qp, &a, mask)) != 0) {
    EP_WARN("NET/IB: QP to RTS failed (peer rank %d, timeout %d, retry %d): %s", remote.rank, p.timeout, p.retryCnt,
            strerror(rc));
    return epSystemError;
  }
  return epSuccess;
}
