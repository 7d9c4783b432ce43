/*************************************************************************
 * epcomm: verbs backend (see ib_backend.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/ib/ib_backend.h"

#include <arpa/inet.h>

#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <unordered_map>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "core/checks.h"
#include "core/comm.h"
#include "core/cuda_util.h"
#include "topo/topo.h"
#include "transports/ib/ib_devices.h"
#include "transports/ib/ib_gdr.h"
#include "transports/ib/ib_gid.h"
#include "transports/ib/ib_params.h"
#include "transports/ib/ib_post.h"
#include "transports/ib/ib_qp.h"
#include "transports/ib/ib_reg.h"

const char* epIbWcStatusName(int s) {
  switch (s) {
    case IBV_WC_SUCCESS: return "success";
    case IBV_WC_LOC_LEN_ERR: return "local length error";
    case IBV_WC_LOC_QP_OP_ERR: return "local QP operation error";
    case IBV_WC_LOC_PROT_ERR: return "local protection error (bad lkey?)";
    case IBV_WC_WR_FLUSH_ERR: return "flushed (QP in error state)";
    case IBV_WC_REM_INV_REQ_ERR: return "remote invalid request";
    case IBV_WC_REM_ACCESS_ERR: return "remote access error (bad rkey or address)";
    case IBV_WC_REM_OP_ERR: return "remote operation error";
    case IBV_WC_RETRY_EXC_ERR: return "transport retry counter exceeded (peer dead or unreachable)";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "RNR retry counter exceeded (no receive posted at the peer)";
    case IBV_WC_REM_ABORT_ERR: return "remote aborted";
    case IBV_WC_FATAL_ERR: return "fatal error";
    case IBV_WC_RESP_TIMEOUT_ERR: return "response timeout";
    case IBV_WC_GENERAL_ERR: return "general error";
    default: return "other error";
  }
}

namespace {

const uint32_t kLoopId = 0xffffffffu;  // wr_id high bits of loopback (signal apply) work requests

int signalModeFromEnv(std::string* why) {
  const char* s = epGetEnv("EP_IB_SIGNAL");
  if (s == nullptr || strcmp(s, "atomic") == 0) return EP_IB_SIGNAL_ATOMIC;
  if (strcmp(s, "imm") == 0) return EP_IB_SIGNAL_IMM;
  *why = std::string("EP_IB_SIGNAL='") + s + "' must be atomic or imm";
  return -1;
}

/* Window record exchanged at registration. */
struct WinWire {
  uint64_t addr;
  uint64_t bytes;
  uint32_t rkey;
  uint32_t pad;
};

class IbBackend : public epNetBackend {
 public:
  IbBackend(epComm* comm, int nHt, int nLl, const epIbBackendConfig& cfg)
      : comm_(comm), cfg_(cfg), ibv_(cfg.ibv ? cfg.ibv : epIbv()), nHt_(nHt), nCh_(nHt + nLl),
        keys_(EP_NET_MAX_WINDOWS), mrs_(EP_NET_MAX_WINDOWS, nullptr) {}
  ~IbBackend() override;
  epResult_t init();
  const char* name() const override { return "ib"; }
  epResult_t registerWindow(int id, void* base, size_t bytes, bool isDevice) override;
  epResult_t deregisterWindow(int id) override;
  epResult_t post(int channel, const epNetOpFields& op, uint64_t ticket) override;
  epResult_t progress(epNetCompletionSink* sink) override;
  bool idle() const override;

 private:
  struct Apply {
    uint32_t win, slot, op;
    int32_t value;
  };
  epResult_t openDevice();
  epResult_t createQps();
  epResult_t connectQps();
  epResult_t postRecvs(struct ibv_qp* qp, int n);
  epResult_t applySignal(const Apply& a);
  epResult_t drainApplies();
  int qpIndex(int peer, int ch) const { return peer * nCh_ + ch; }

  epComm* comm_;
  epIbBackendConfig cfg_;
  const epIbvFns* ibv_;
  int nHt_, nCh_;
  epIbPort port_;
  struct ibv_context* ctx_ = nullptr;
  struct ibv_pd* pd_ = nullptr;
  struct ibv_cq* cq_ = nullptr;
  int gidIndex_ = 0;
  uint8_t gid_[16] = {0};
  int devMaxRdAtomic_ = 1;
  int devMaxCqe_ = 0;
  epIbRegCaps caps_;
  epIbSendOptions sopt_;
  std::vector<epIbWinKeys> keys_;
  std::vector<struct ibv_mr*> mrs_;
  std::vector<bool> winIsDevice_ = std::vector<bool>(EP_NET_MAX_WINDOWS, false);
  uint64_t* scratch_ = nullptr;
  struct ibv_mr* scratchMr_ = nullptr;
  std::vector<struct ibv_qp*> qps_;  // [peer * nCh + ch], null where no QP
  std::vector<uint32_t> psn_;
  std::vector<std::unique_ptr<epIbQpSender>> senders_;
  std::unordered_map<uint32_t, int> qpnIndex_;
  // imm receive side
  struct ibv_qp* loopQp_ = nullptr;
  int loopInflight_ = 0;
  std::deque<Apply> applies_;
  int recvDepth_ = 0;
};

IbBackend::~IbBackend() {
  senders_.clear();
  for (auto qp : qps_)
    if (qp) ibv_->destroyQp(qp);
  if (loopQp_) ibv_->destroyQp(loopQp_);
  for (auto mr : mrs_)
    if (mr) ibv_->deregMr(mr);
  if (scratchMr_) ibv_->deregMr(scratchMr_);
  free(scratch_);
  if (cq_) ibv_->destroyCq(cq_);
  if (pd_) ibv_->deallocPd(pd_);
  if (ctx_) ibv_->closeDevice(ctx_);
}

epResult_t IbBackend::openDevice() {
  std::string why;
  epNameFilter filter = epNameFilter::parse(epGetEnv("EP_IB_HCA"));
  std::vector<epIbPort> ports;
  if (epIbListPorts(ibv_, filter, cfg_.sysfsRoot, &ports, &why) != epSuccess) {
    EP_WARN("NET/IB: %s", why.c_str());
    return epNotSupported;
  }
  char busId[64] = "";
  if (comm_->cudaDev >= 0) epCudaBusId(comm_->cudaDev, busId, sizeof(busId));
  // The topology's assignment first (PCI-nearest, ties spread over the node's GPUs); our own
  // sysfs distance when the topology has no NIC for this rank (or names a port we cannot use).
  int pick = -1;
  const char* how = "topology";
  if (comm_->topo && comm_->topo->machine && !comm_->topo->nics.empty()) {
    const std::string& want = comm_->topo->machine->nics[comm_->topo->nics[0]].name;
    for (size_t i = 0; i < ports.size() && pick < 0; i++)
      if (ports[i].dev == want) pick = (int)i;
  }
  if (pick < 0) {
    pick = epIbChoosePort(ports, epIbGpuPciPath(cfg_.sysfsRoot, busId), comm_->localRank);
    how = "PCI distance";
  }
  port_ = ports[pick];
  EP_INFO(EP_LOG_NET, "NET/IB: %s:%d chosen by %s", port_.dev.c_str(), port_.port, how);
  int n = 0;
  struct ibv_device** list = ibv_->getDeviceList(&n);
  if (list == nullptr || port_.devIndex >= n) {
    EP_WARN("NET/IB: device list changed while opening %s", port_.dev.c_str());
    if (list) ibv_->freeDeviceList(list);
    return epSystemError;
  }
  ctx_ = ibv_->openDevice(list[port_.devIndex]);
  ibv_->freeDeviceList(list);
  if (ctx_ == nullptr) {
    EP_WARN("NET/IB: cannot open %s", port_.dev.c_str());
    return epSystemError;
  }
  struct ibv_device_attr dattr;
  memset(&dattr, 0, sizeof(dattr));
  if (ibv_->queryDevice(ctx_, &dattr) != 0) {
    EP_WARN("NET/IB: ibv_query_device(%s) failed", port_.dev.c_str());
    return epSystemError;
  }
  devMaxRdAtomic_ = dattr.max_qp_rd_atom < dattr.max_qp_init_rd_atom ? dattr.max_qp_rd_atom : dattr.max_qp_init_rd_atom;
  devMaxCqe_ = dattr.max_cqe;
  pd_ = ibv_->allocPd(ctx_);
  if (pd_ == nullptr) {
    EP_WARN("NET/IB: ibv_alloc_pd(%s) failed", port_.dev.c_str());
    return epSystemError;
  }
  std::vector<epIbGidEntry> gids;
  EPCHECK(epIbReadGids(ibv_, ctx_, cfg_.sysfsRoot, port_.dev, port_.port, port_.gidTblLen, &gids));
  if (epIbChooseGid(gids, port_.linkLayer, (int)epParamIbGidIndex(), (int)epParamIbRoceVersion(), &gidIndex_, &why) !=
      epSuccess) {
    EP_WARN("NET/IB: %s:%d: %s", port_.dev.c_str(), port_.port, why.c_str());
    return epNotSupported;
  }
  for (auto& g : gids)
    if (g.index == gidIndex_) memcpy(gid_, g.raw, 16);
  caps_.nicDmabuf = epIbNicDmabufSupported(ibv_, pd_);
  caps_.gpuDmabuf = epIbGpuDmabufSupported(comm_->cudaDev);
  caps_.peermem = epIbPeermemLoaded(cfg_.sysfsRoot);
  EP_INFO(EP_LOG_NET, "NET/IB: rank %d GPU %s -> %s:%d (%s, gid index %d %s), dmabuf NIC %d GPU %d, peermem %d",
          comm_->rank, busId, port_.dev.c_str(), port_.port,
          port_.linkLayer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "IB", gidIndex_, epIbGidString(gid_).c_str(),
          caps_.nicDmabuf, caps_.gpuDmabuf, caps_.peermem);
  return epSuccess;
}

epResult_t IbBackend::postRecvs(struct ibv_qp* qp, int n) {
  for (int i = 0; i < n; i++) {
    struct ibv_recv_wr wr, *bad = nullptr;
    memset(&wr, 0, sizeof(wr));
    wr.num_sge = 0;  // WRITE_WITH_IMM consumes a receive but places no data in it
    int rc = ibv_->postRecv(qp, &wr, &bad);
    if (rc != 0) {
      EP_WARN("NET/IB: ibv_post_recv failed: %s", strerror(rc));
      return epSystemError;
    }
  }
  return epSuccess;
}

epResult_t IbBackend::createQps() {
  const int n = comm_->nranks;
  int nQps = 0;
  for (int p = 0; p < n; p++)
    if (comm_->rankNode[p] != comm_->node) nQps += nCh_;
  // A CQ overflow is fatal in verbs: size it for every completion that can be outstanding.
  const bool imm = sopt_.signalMode == EP_IB_SIGNAL_IMM;
  int perQp = sopt_.maxInflight + (imm ? 2 * sopt_.maxInflight : 0);
  int cqe = nQps * perQp + (imm ? sopt_.maxInflight : 0) + 16;
  if (devMaxCqe_ > 0 && cqe > devMaxCqe_) {
    int fit = (devMaxCqe_ - 16) / ((nQps + 1) * (imm ? 3 : 1));
    EP_INFO(EP_LOG_NET, "NET/IB: %d QPs x %d in flight exceed the CQ limit %d: in-flight limit lowered to %d", nQps,
            sopt_.maxInflight, devMaxCqe_, fit);
    if (fit < 2) {
      EP_WARN("NET/IB: %d QPs do not fit one CQ of %d entries: use fewer channels", nQps, devMaxCqe_);
      return epNotSupported;
    }
    sopt_.maxInflight = fit;
    perQp = fit * (imm ? 3 : 1);
    cqe = nQps * perQp + (imm ? fit : 0) + 16;
  }
  // Receives: a WRITE_WITH_IMM that finds none is retried by the NIC (rnr_retry 7 = forever), which
  // stalls the QP; twice the in-flight limit leaves the receiving proxy time to repost.
  recvDepth_ = imm ? 2 * sopt_.maxInflight : 0;
  cq_ = ibv_->createCq(ctx_, cqe, nullptr, nullptr, 0);
  if (cq_ == nullptr) {
    EP_WARN("NET/IB: ibv_create_cq(%d) failed", cqe);
    return epSystemError;
  }
  scratch_ = static_cast<uint64_t*>(aligned_alloc(64, 64));
  scratchMr_ = scratch_ ? ibv_->regMr(pd_, scratch_, 64, IBV_ACCESS_LOCAL_WRITE) : nullptr;
  if (scratchMr_ == nullptr) {
    EP_WARN("NET/IB: cannot register the atomic scratch buffer");
    return epSystemError;
  }
  qps_.assign((size_t)n * nCh_, nullptr);
  psn_.assign((size_t)n * nCh_, 0);
  senders_.resize((size_t)n * nCh_);
  std::mt19937 rng((uint32_t)(comm_->commHash ^ (uint64_t)comm_->rank * 0x9e3779b97f4a7c15ull));
  for (int p = 0; p < n; p++) {
    if (comm_->rankNode[p] == comm_->node) continue;
    for (int c = 0; c < nCh_; c++) {
      int i = qpIndex(p, c);
      EPCHECK(epIbQpCreate(ibv_, pd_, cq_, cq_, sopt_.maxInflight, recvDepth_ > 0 ? recvDepth_ : 1, &qps_[i]));
      psn_[i] = rng() & 0xffffff;
      qpnIndex_[qps_[i]->qp_num] = i;
      senders_[i].reset(new epIbQpSender(ibv_, qps_[i], (uint32_t)i, p, c, sopt_, &keys_,
                                         (uint64_t)(uintptr_t)scratch_, scratchMr_->lkey));
    }
  }
  if (imm) EPCHECK(epIbQpCreate(ibv_, pd_, cq_, cq_, sopt_.maxInflight, 1, &loopQp_));
  return epSuccess;
}

epResult_t IbBackend::connectQps() {
  const int n = comm_->nranks, me = comm_->rank;
  const size_t perRank = (size_t)n * nCh_ * EP_IB_CONN_BYTES;
  std::vector<uint8_t> all(perRank * n, 0);
  uint8_t* mine = all.data() + perRank * me;
  epIbConnInfo info;
  info.linkLayer = (uint8_t)port_.linkLayer;
  info.mtu = (uint8_t)port_.activeMtu;
  info.lid = port_.lid;
  info.port = (uint8_t)port_.port;
  info.flags = (uint8_t)((sopt_.adaptiveRouting ? EP_IB_CONN_FLAG_AR : 0) |
                         (sopt_.signalMode == EP_IB_SIGNAL_IMM ? EP_IB_CONN_FLAG_IMM : 0));
  memcpy(info.gid, gid_, 16);
  info.rank = me;
  for (int p = 0; p < n; p++)
    for (int c = 0; c < nCh_; c++) {
      int i = qpIndex(p, c);
      if (!qps_[i]) continue;
      info.qpn = qps_[i]->qp_num;
      info.psn = psn_[i];
      epIbConnPack(info, mine + (size_t)i * EP_IB_CONN_BYTES);
    }
  EPCHECK(epBootstrapAllGather(comm_->bootstrap, all.data(), perRank));
  for (int p = 0; p < n; p++)
    for (int c = 0; c < nCh_; c++) {
      int i = qpIndex(p, c);
      if (!qps_[i]) continue;
      // Rank p's record for its QP towards (me, c).
      const uint8_t* rec = all.data() + perRank * p + (size_t)qpIndex(me, c) * EP_IB_CONN_BYTES;
      epIbConnInfo remote;
      std::string why;
      if (epIbConnUnpack(rec, &remote, &why) != epSuccess || remote.rank != p) {
        EP_WARN("NET/IB: connection record of rank %d channel %d unusable: %s", p, c,
                why.empty() ? "rank mismatch" : why.c_str());
        return epInvalidUsage;
      }
      if ((remote.flags & EP_IB_CONN_FLAG_IMM) != (info.flags & EP_IB_CONN_FLAG_IMM)) {
        EP_WARN("NET/IB: EP_IB_SIGNAL differs between rank %d and rank %d: set it the same everywhere", me, p);
        return epInvalidUsage;
      }
      if (remote.linkLayer != info.linkLayer) {
        EP_WARN("NET/IB: rank %d uses %s, rank %d %s: the ports cannot talk", me,
                info.linkLayer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "IB", p,
                remote.linkLayer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "IB");
        return epInvalidUsage;
      }
      epIbQpParams qp;
      std::string perr;
      if (epIbQpParamsFromEnv(port_.port, port_.linkLayer, port_.activeMtu, gidIndex_, devMaxRdAtomic_,
                              c >= nHt_ ? 1 : 0, &qp, &perr) != epSuccess) {
        EP_WARN("NET/IB: %s", perr.c_str());
        return epInvalidArgument;
      }
      EPCHECK(epIbQpConnect(ibv_, qps_[i], qp, psn_[i], remote));
      if (recvDepth_ > 0) EPCHECK(postRecvs(qps_[i], recvDepth_));  // receives need INIT or later
    }
  if (loopQp_) {
    // Connected to itself: the receiver's way to apply imm signals to GPU memory with an RDMA atomic.
    epIbConnInfo self = info;
    self.qpn = loopQp_->qp_num;
    self.psn = 0;
    epIbQpParams qp;
    std::string perr;
    EPCHECK(epIbQpParamsFromEnv(port_.port, port_.linkLayer, port_.activeMtu, gidIndex_, devMaxRdAtomic_, 1, &qp,
                                &perr));
    EPCHECK(epIbQpConnect(ibv_, loopQp_, qp, 0, self));
  }
  return epBootstrapBarrier(comm_->bootstrap);  // every QP is RTS (and has receives) before traffic
}

epResult_t IbBackend::init() {
  std::string why;
  if (ibv_ == nullptr) {
    EP_WARN("NET/IB: libibverbs.so.1 not loadable");
    return epNotSupported;
  }
  int mode = cfg_.signalMode >= 0 ? cfg_.signalMode : signalModeFromEnv(&why);
  if (mode < 0) {
    EP_WARN("NET/IB: %s", why.c_str());
    return epInvalidArgument;
  }
  sopt_.signalMode = mode;
  int64_t inflight = cfg_.maxInflight > 0 ? cfg_.maxInflight : epParamIbMaxInflight();
  EP_ARG_CHECK(inflight >= 2 && inflight <= 32768, "EP_IB_MAX_INFLIGHT=%lld must be in [2, 32768]",
               (long long)inflight);
  sopt_.maxInflight = (int)inflight;
  EPCHECK(openDevice());
  if (port_.maxQpWr > 0 && sopt_.maxInflight > port_.maxQpWr) sopt_.maxInflight = port_.maxQpWr;
  int64_t ar = cfg_.adaptiveRouting > -2 ? cfg_.adaptiveRouting : epParamIbAdaptiveRouting();
  sopt_.adaptiveRouting = ar < 0 ? port_.linkLayer == IBV_LINK_LAYER_INFINIBAND : ar != 0;
  int64_t chunk = cfg_.maxChunk > 0 ? (int64_t)cfg_.maxChunk : epParamIbChunkBytes();
  uint64_t maxMsg = port_.maxMsgSz ? port_.maxMsgSz : (1u << 30);
  sopt_.maxChunk = (uint32_t)((chunk > 0 && (uint64_t)chunk < maxMsg) ? (uint64_t)chunk : maxMsg);
  EPCHECK(createQps());
  EPCHECK(connectQps());
  EP_INFO(EP_LOG_NET, "NET/IB: %zu QPs connected, %d in flight per QP, adaptive routing %s, signals %s",
          qpnIndex_.size(), sopt_.maxInflight, sopt_.adaptiveRouting ? "on" : "off",
          sopt_.signalMode == EP_IB_SIGNAL_IMM ? "write-with-imm" : "atomic");
  return epSuccess;
}

epResult_t IbBackend::registerWindow(int id, void* base, size_t bytes, bool isDevice) {
  epIbRegPath path;
  std::string why;
  if (epIbChooseRegPath(isDevice, (int)epParamIbDmabuf(), caps_, &path, &why) != epSuccess) {
    EP_WARN("NET/IB: window %d: %s", id, why.c_str());
    return epNotSupported;
  }
  EPCHECK(epIbRegister(ibv_, pd_, base, bytes, path, &mrs_[id]));
  std::vector<WinWire> all(comm_->nranks);
  all[comm_->rank] = WinWire{(uint64_t)(uintptr_t)base, bytes, mrs_[id]->rkey, 0};
  EPCHECK(epBootstrapAllGather(comm_->bootstrap, all.data(), sizeof(WinWire)));
  epIbWinKeys& k = keys_[id];
  k.localAddr = (uint64_t)(uintptr_t)base;
  k.lkey = mrs_[id]->lkey;
  k.remoteAddr.resize(comm_->nranks);
  k.rkey.resize(comm_->nranks);
  for (int r = 0; r < comm_->nranks; r++) {
    k.remoteAddr[r] = all[r].addr;
    k.rkey[r] = all[r].rkey;
  }
  k.live = true;
  winIsDevice_[id] = isDevice;
  EP_INFO(EP_LOG_NET, "NET/IB: window %d registered (%s, %zu bytes)", id, epIbRegPathName(path), bytes);
  return epSuccess;
}

epResult_t IbBackend::deregisterWindow(int id) {
  if (mrs_[id]) ibv_->deregMr(mrs_[id]);
  mrs_[id] = nullptr;
  keys_[id] = epIbWinKeys();
  return epSuccess;
}

epResult_t IbBackend::post(int channel, const epNetOpFields& f, uint64_t ticket) {
  int i = qpIndex(f.peer, channel);
  if (!senders_[i]) {
    EP_WARN("NET/IB: rank %d is on this node (%d): same-node traffic goes over NVLink, not through the proxy",
            f.peer, comm_->node);
    return epInvalidUsage;
  }
  return senders_[i]->post(f, ticket);
}

epResult_t IbBackend::applySignal(const Apply& a) {
  const epIbWinKeys& k = keys_[a.win];
  if (!k.live) {
    EP_WARN("NET/IB: imm signal for window %u, which is not registered here", a.win);
    return epInvalidUsage;
  }
  if (!winIsDevice_[a.win]) {  // host memory: the CPU applies it directly
    uint64_t* w = reinterpret_cast<uint64_t*>(k.localAddr + 8ull * a.slot);
    if (a.op == EP_NET_SIG_SET) __atomic_store_n(w, (uint64_t)(uint32_t)a.value, __ATOMIC_RELEASE);
    else __atomic_fetch_add(w, (uint64_t)(int64_t)a.value, __ATOMIC_RELEASE);
    return epSuccess;
  }
  applies_.push_back(a);
  return drainApplies();
}

epResult_t IbBackend::drainApplies() {
  while (!applies_.empty() && loopInflight_ < sopt_.maxInflight) {
    const Apply& a = applies_.front();
    const epIbWinKeys& k = keys_[a.win];
    struct ibv_send_wr wr, *bad = nullptr;
    struct ibv_sge sge;
    memset(&wr, 0, sizeof(wr));
    memset(&sge, 0, sizeof(sge));
    uint64_t v = (uint64_t)(uint32_t)a.value;
    wr.wr_id = (uint64_t)kLoopId << 32;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    sge.length = 8;
    if (a.op == EP_NET_SIG_SET) {
      sge.addr = (uint64_t)(uintptr_t)&v;
      wr.opcode = IBV_WR_RDMA_WRITE;
      wr.send_flags |= IBV_SEND_INLINE;
      wr.wr.rdma.remote_addr = k.localAddr + 8ull * a.slot;
      wr.wr.rdma.rkey = mrs_[a.win]->rkey;
    } else {
      sge.addr = (uint64_t)(uintptr_t)scratch_;
      sge.lkey = scratchMr_->lkey;
      wr.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
      wr.wr.atomic.remote_addr = k.localAddr + 8ull * a.slot;
      wr.wr.atomic.rkey = mrs_[a.win]->rkey;
      wr.wr.atomic.compare_add = (uint64_t)(int64_t)a.value;
    }
    int rc = ibv_->postSend(loopQp_, &wr, &bad);
    if (rc != 0) {
      EP_WARN("NET/IB: posting an imm signal to local memory failed: %s", strerror(rc));
      return epSystemError;
    }
    loopInflight_++;
    applies_.pop_front();
  }
  return epSuccess;
}

epResult_t IbBackend::progress(epNetCompletionSink* sink) {
  struct ibv_wc wc[64];
  for (;;) {
    int n = ibv_->pollCq(cq_, 64, wc);
    if (n < 0) {
      EP_WARN("NET/IB: ibv_poll_cq failed (%d)", n);
      return epSystemError;
    }
    for (int k = 0; k < n; k++) {
      const struct ibv_wc& w = wc[k];
      if (w.status != IBV_WC_SUCCESS) {
        auto it = qpnIndex_.find(w.qp_num);
        int i = it == qpnIndex_.end() ? -1 : it->second;
        EP_WARN("NET/IB: work completion error on %s to rank %d channel %d: %s (status %d, vendor 0x%x)",
                port_.dev.c_str(), i < 0 ? -1 : i / nCh_, i < 0 ? -1 : i % nCh_, epIbWcStatusName(w.status),
                (int)w.status, w.vendor_err);
        return epRemoteError;
      }
      if (w.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
        Apply a;
        epIbImmDecode(ntohl(w.imm_data), &a.win, &a.slot, &a.op, &a.value);
        EPCHECK(applySignal(a));
        auto it = qpnIndex_.find(w.qp_num);
        if (it != qpnIndex_.end()) EPCHECK(postRecvs(qps_[it->second], 1));
        continue;
      }
      uint32_t id = (uint32_t)(w.wr_id >> 32);
      if (id == kLoopId) {
        loopInflight_--;
        continue;
      }
      if (id >= senders_.size() || !senders_[id]) {
        EP_WARN("NET/IB: completion with unknown wr_id %" PRIx64, (uint64_t)w.wr_id);
        return epInternalError;
      }
      EPCHECK(senders_[id]->onCompletion(w.wr_id, sink));
    }
    if (n < 64) break;
  }
  if (!applies_.empty()) EPCHECK(drainApplies());
  return epSuccess;
}

bool IbBackend::idle() const {
  for (auto& s : senders_)
    if (s && !s->idle()) return false;
  return applies_.empty() && loopInflight_ == 0;
}

}  // namespace

epResult_t epIbProbe(epComm* comm, std::string* why) {
  std::vector<epIbPort> ports;
  epNameFilter filter = epNameFilter::parse(epGetEnv("EP_IB_HCA"));
  return epIbListPorts(epIbv(), filter, "/sys", &ports, why);
}

epResult_t epIbBackendCreateWith(epComm* comm, int nChannels, int nLlChannels, const epIbBackendConfig& cfg,
                                 std::unique_ptr<epNetBackend>* out) {
  std::unique_ptr<IbBackend> b(new IbBackend(comm, nChannels, nLlChannels, cfg));
  EPCHECK(b->init());
  *out = std::move(b);
  return epSuccess;
}

epResult_t epIbBackendCreate(epComm* comm, int nChannels, int nLlChannels, std::unique_ptr<epNetBackend>* out) {
  return epIbBackendCreateWith(comm, nChannels, nLlChannels, epIbBackendConfig(), out);
}
