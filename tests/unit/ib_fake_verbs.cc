/*************************************************************************
 * epcomm tests: fake verbs NIC (see ib_fake_verbs.h).
 *************************************************************************/
#include "tests/unit/ib_fake_verbs.h"

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>

namespace fakeib {
namespace {

struct Wr {
  uint64_t wrId;
  int opcode;
  int flags;
  uint64_t laddr;
  uint32_t len;
  uint32_t lkey;
  int nsge;
  uint64_t raddr;
  uint32_t rkey;
  uint64_t add;
  uint32_t imm;
  std::vector<char> inlineData;
};

struct Cq;
struct Qp {
  ibv_qp qp;  // what the transport sees
  int dev = 0;
  int state = IBV_QPS_RESET;
  uint32_t remoteQpn = 0;
  int maxSend = 0;
  int outstanding = 0;
  int recvPosted = 0;
  int sinceSignaled = 0;
  Cq* scq = nullptr;
  Cq* rcq = nullptr;
  std::deque<Wr> sq;
  std::deque<int> retire;  // WRs retired by each generated send completion, in order
  struct Unplaced {
    uint64_t dst;
    std::vector<char> data;
  };
  std::deque<Unplaced> unplaced;
  std::vector<std::pair<int, ibv_qp_attr>> modifies;
};

struct Cq {
  ibv_cq cq;
  std::deque<ibv_wc> q;
  int cqe = 0;
};

struct Mr {
  ibv_mr mr;
  uint64_t addr;
  size_t len;
};

struct Fabric {
  std::mutex mu;
  std::vector<DevCfg> devs;
  std::vector<ibv_device> devObjs;
  std::vector<std::unique_ptr<ibv_context>> ctxs;
  std::vector<std::unique_ptr<ibv_pd>> pds;
  std::map<uint32_t, std::unique_ptr<Mr>> mrs;  // by key (lkey == rkey)
  std::vector<std::unique_ptr<Cq>> cqs;
  std::map<uint32_t, std::unique_ptr<Qp>> qps;  // by qpn
  std::map<ibv_context*, int> ctxDev;
  bool ar = false;
  bool dmabufSym = true;
  int dmabufErrno = EBADF;
  uint32_t nextQpn = 0x100, nextKey = 0x1000;
  Stats st;
  std::mt19937 rng{42};
  epIbvFns fns{};
};

Fabric* g = nullptr;

Fabric& F() { return *g; }

int devIndex(ibv_device* d) { return (int)(d - F().devObjs.data()); }

ibv_device** getDeviceList(int* num) {
  std::lock_guard<std::mutex> lk(F().mu);
  int n = (int)F().devs.size();
  if (num) *num = n;
  ibv_device** list = new ibv_device*[n + 1];
  for (int i = 0; i < n; i++) list[i] = &F().devObjs[i];
  list[n] = nullptr;
  return list;
}
void freeDeviceList(ibv_device** l) { delete[] l; }
const char* getDeviceName(ibv_device* d) { return F().devs[devIndex(d)].name.c_str(); }
ibv_context* openDevice(ibv_device* d) {
  std::lock_guard<std::mutex> lk(F().mu);
  F().ctxs.emplace_back(new ibv_context());
  ibv_context* c = F().ctxs.back().get();
  c->device = d;
  F().ctxDev[c] = devIndex(d);
  return c;
}
int closeDevice(ibv_context*) { return 0; }
int queryDevice(ibv_context* c, ibv_device_attr* a) {
  const DevCfg& d = F().devs[F().ctxDev[c]];
  memset(a, 0, sizeof(*a));
  a->phys_port_cnt = (uint8_t)d.ports.size();
  a->max_qp_wr = d.maxQpWr;
  a->max_cqe = d.maxCqe;
  a->max_qp_rd_atom = d.maxRdAtom;
  a->max_qp_init_rd_atom = d.maxRdAtom;
  return 0;
}
int queryPort(ibv_context* c, uint8_t port, ibv_port_attr* a) {
  const DevCfg& d = F().devs[F().ctxDev[c]];
  if (port < 1 || port > d.ports.size()) return EINVAL;
  const PortCfg& p = d.ports[port - 1];
  memset(a, 0, sizeof(*a));
  a->state = (ibv_port_state)p.state;
  a->link_layer = (uint8_t)p.linkLayer;
  a->active_mtu = (ibv_mtu)p.mtu;
  a->lid = p.lid;
  a->gid_tbl_len = (int)p.gids.size();
  a->max_msg_sz = p.maxMsgSz;
  return 0;
}
int queryGid(ibv_context* c, uint8_t port, int index, ibv_gid* gid) {
  const DevCfg& d = F().devs[F().ctxDev[c]];
  if (port < 1 || port > d.ports.size()) return EINVAL;
  const PortCfg& p = d.ports[port - 1];
  if (index < 0 || index >= (int)p.gids.size()) return EINVAL;
  memcpy(gid->raw, p.gids[index].data(), 16);
  return 0;
}
ibv_pd* allocPd(ibv_context* c) {
  std::lock_guard<std::mutex> lk(F().mu);
  F().pds.emplace_back(new ibv_pd());
  F().pds.back()->context = c;
  return F().pds.back().get();
}
int deallocPd(ibv_pd*) { return 0; }
ibv_mr* newMr(ibv_pd* pd, uint64_t addr, size_t len) {
  std::lock_guard<std::mutex> lk(F().mu);
  uint32_t key = F().nextKey++;
  Mr* m = new Mr();
  m->addr = addr;
  m->len = len;
  m->mr.pd = pd;
  m->mr.addr = (void*)(uintptr_t)addr;
  m->mr.length = len;
  m->mr.lkey = key;
  m->mr.rkey = key;
  F().mrs[key].reset(m);
  return &m->mr;
}
ibv_mr* regMr(ibv_pd* pd, void* addr, size_t len, int) { return newMr(pd, (uint64_t)(uintptr_t)addr, len); }
ibv_mr* regDmabufMr(ibv_pd* pd, uint64_t, size_t len, uint64_t iova, int fd, int) {
  if (fd < 0) {
    errno = F().dmabufErrno;
    return nullptr;
  }
  return newMr(pd, iova, len);
}
int deregMr(ibv_mr* mr) {
  std::lock_guard<std::mutex> lk(F().mu);
  F().mrs.erase(mr->lkey);
  return 0;
}
ibv_cq* createCq(ibv_context* c, int cqe, void*, ibv_comp_channel*, int) {
  std::lock_guard<std::mutex> lk(F().mu);
  F().cqs.emplace_back(new Cq());
  F().cqs.back()->cq.context = c;
  F().cqs.back()->cqe = cqe;
  return &F().cqs.back()->cq;
}
int destroyCq(ibv_cq*) { return 0; }
Qp* qpOf(ibv_qp* q) { return reinterpret_cast<Qp*>(q); }  // `qp` is the first member
Cq* cqOf(ibv_cq* c) { return reinterpret_cast<Cq*>(c); }
ibv_qp* createQp(ibv_pd* pd, ibv_qp_init_attr* ia) {
  std::lock_guard<std::mutex> lk(F().mu);
  if (ia->qp_type != IBV_QPT_RC || ia->cap.max_inline_data < 8) {
    errno = EINVAL;
    return nullptr;
  }
  Qp* q = new Qp();
  q->qp.qp_num = F().nextQpn++;
  q->qp.pd = pd;
  q->qp.context = pd->context;
  q->qp.qp_type = IBV_QPT_RC;
  q->maxSend = (int)ia->cap.max_send_wr;
  q->scq = cqOf(ia->send_cq);
  q->rcq = cqOf(ia->recv_cq);
  F().qps[q->qp.qp_num].reset(q);
  return &q->qp;
}
int destroyQp(ibv_qp*) { return 0; }

int modifyQp(ibv_qp* qp, ibv_qp_attr* a, int mask) {
  std::lock_guard<std::mutex> lk(F().mu);
  Qp* q = qpOf(qp);
  q->modifies.push_back(std::make_pair(mask, *a));
  auto need = [&](int m) { return (mask & m) == m; };
  bool ok = false;
  if (a->qp_state == IBV_QPS_INIT && q->state == IBV_QPS_RESET)
    ok = need(IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
  else if (a->qp_state == IBV_QPS_RTR && q->state == IBV_QPS_INIT)
    ok = need(IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
              IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER) &&
         F().qps.count(a->dest_qp_num) == 1;
  else if (a->qp_state == IBV_QPS_RTS && q->state == IBV_QPS_RTR)
    ok = need(IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
              IBV_QP_MAX_QP_RD_ATOMIC);
  if (!ok) {
    F().st.badTransitions++;
    return EINVAL;
  }
  if (a->qp_state == IBV_QPS_RTR) q->remoteQpn = a->dest_qp_num;
  q->state = a->qp_state;
  return 0;
}

int postRecv(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  std::lock_guard<std::mutex> lk(F().mu);
  Qp* q = qpOf(qp);
  if (q->state == IBV_QPS_RESET) {
    *bad = wr;
    return EINVAL;
  }
  for (; wr; wr = wr->next) q->recvPosted++;
  return 0;
}

int postSend(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad) {
  std::lock_guard<std::mutex> lk(F().mu);
  Qp* q = qpOf(qp);
  if (q->state != IBV_QPS_RTS) {
    *bad = wr;
    return EINVAL;
  }
  int n = 0;
  for (ibv_send_wr* w = wr; w; w = w->next) n++;
  if (q->outstanding + n > q->maxSend) {
    F().st.sqOverflows++;
    *bad = wr;
    return ENOMEM;
  }
  for (; wr; wr = wr->next) {
    Wr w{};
    w.wrId = wr->wr_id;
    w.opcode = wr->opcode;
    w.flags = wr->send_flags;
    w.nsge = wr->num_sge;
    if (wr->num_sge > 0) {
      w.laddr = wr->sg_list[0].addr;
      w.len = wr->sg_list[0].length;
      w.lkey = wr->sg_list[0].lkey;
      if (wr->send_flags & IBV_SEND_INLINE)  // inline: the data is taken now
        w.inlineData.assign((const char*)(uintptr_t)w.laddr, (const char*)(uintptr_t)w.laddr + w.len);
    }
    if (wr->opcode == IBV_WR_ATOMIC_FETCH_AND_ADD) {
      w.raddr = wr->wr.atomic.remote_addr;
      w.rkey = wr->wr.atomic.rkey;
      w.add = wr->wr.atomic.compare_add;
    } else {
      w.raddr = wr->wr.rdma.remote_addr;
      w.rkey = wr->wr.rdma.rkey;
    }
    w.imm = wr->imm_data;
    q->sq.push_back(std::move(w));
    q->outstanding++;
    F().st.posts++;
  }
  if (q->outstanding > F().st.maxOutstanding) F().st.maxOutstanding = q->outstanding;
  return 0;
}

bool inMr(uint32_t key, uint64_t addr, uint64_t len) {
  auto it = F().mrs.find(key);
  if (it == F().mrs.end()) return false;
  const Mr& m = *it->second;
  return addr >= m.addr && addr + len <= m.addr + m.len;
}

void placeAll(Qp* q) {
  for (auto& u : q->unplaced) memcpy((void*)(uintptr_t)u.dst, u.data.data(), u.data.size());
  q->unplaced.clear();
}

ibv_wc makeWc(Qp* q, uint64_t wrId, ibv_wc_status s, ibv_wc_opcode op) {
  ibv_wc wc;
  memset(&wc, 0, sizeof(wc));
  wc.wr_id = wrId;
  wc.status = s;
  wc.opcode = op;
  wc.qp_num = q->qp.qp_num;
  return wc;
}

enum Exec { kDone, kError, kStall };

// Executes one work request of q. kError: an error completion was queued and
// the QP is broken. kStall: receiver not ready (RNR with infinite retry, as
// rnr_retry = 7 means): the request stays at the head of the send queue.
Exec execute(Qp* q, Wr& w) {
  const bool isInline = (w.flags & IBV_SEND_INLINE) != 0;
  uint64_t len = (w.opcode == IBV_WR_ATOMIC_FETCH_AND_ADD) ? 8 : (w.nsge ? w.len : 0);
  bool ok = inMr(w.rkey, w.raddr, len == 0 ? 0 : len) || (len == 0 && w.opcode == IBV_WR_RDMA_WRITE_WITH_IMM);
  if (w.nsge && !isInline && !inMr(w.lkey, w.laddr, w.len)) ok = false;
  if (!ok) {
    F().st.accessErrors++;
    q->scq->q.push_back(makeWc(q, w.wrId, IBV_WC_REM_ACCESS_ERR, IBV_WC_RDMA_WRITE));
    q->retire.push_back(q->sinceSignaled + 1);
    q->sinceSignaled = 0;
    return kError;
  }
  const char* src = isInline ? w.inlineData.data() : (const char*)(uintptr_t)w.laddr;
  switch (w.opcode) {
    case IBV_WR_RDMA_WRITE:
      if (len == 0) break;
      if (F().ar && !isInline) {
        q->unplaced.push_back(Qp::Unplaced{w.raddr, std::vector<char>(src, src + len)});
      } else {
        if (!q->unplaced.empty()) F().st.reorderedPlacements++;
        memcpy((void*)(uintptr_t)w.raddr, src, len);
      }
      break;
    case IBV_WR_RDMA_WRITE_WITH_IMM: {
      Qp* r = F().qps.count(q->remoteQpn) ? F().qps[q->remoteQpn].get() : nullptr;
      if (r == nullptr) {
        q->scq->q.push_back(makeWc(q, w.wrId, IBV_WC_RETRY_EXC_ERR, IBV_WC_RDMA_WRITE));
        q->retire.push_back(q->sinceSignaled + 1);
        q->sinceSignaled = 0;
        return kError;
      }
      if (r->recvPosted == 0) {
        F().st.rnrStalls++;
        return kStall;
      }
      placeAll(q);  // the immediate is delivered after every earlier write of the QP
      if (len) memcpy((void*)(uintptr_t)w.raddr, src, len);
      r->recvPosted--;
      ibv_wc wc = makeWc(r, 0, IBV_WC_SUCCESS, IBV_WC_RECV_RDMA_WITH_IMM);
      wc.imm_data = w.imm;
      wc.wc_flags = IBV_WC_WITH_IMM;
      r->rcq->q.push_back(wc);
      break;
    }
    case IBV_WR_ATOMIC_FETCH_AND_ADD: {
      if (!q->unplaced.empty()) F().st.reorderedPlacements++;
      uint64_t old = __atomic_fetch_add((uint64_t*)(uintptr_t)w.raddr, w.add, __ATOMIC_SEQ_CST);
      memcpy((void*)(uintptr_t)w.laddr, &old, 8);
      break;
    }
    default:
      break;
  }
  q->sinceSignaled++;
  if (w.flags & IBV_SEND_SIGNALED) {
    placeAll(q);  // an acknowledgement means everything before it was placed
    q->scq->q.push_back(makeWc(q, w.wrId, IBV_WC_SUCCESS,
                               w.opcode == IBV_WR_ATOMIC_FETCH_AND_ADD ? IBV_WC_FETCH_ADD : IBV_WC_RDMA_WRITE));
    q->retire.push_back(q->sinceSignaled);
    q->sinceSignaled = 0;
  }
  return kDone;
}

int pollCq(ibv_cq* cq, int n, ibv_wc* out) {
  std::lock_guard<std::mutex> lk(F().mu);
  Cq* c = cqOf(cq);
  // Progress the fabric for the QPs this CQ serves: a random share of each send queue.
  for (auto& kv : F().qps) {
    Qp* q = kv.second.get();
    if (q->scq != c || q->state != IBV_QPS_RTS) continue;
    size_t k = q->sq.empty() ? 0 : 1 + F().rng() % q->sq.size();
    for (size_t i = 0; i < k; i++) {
      Exec e = execute(q, q->sq.front());
      if (e == kStall) break;
      q->sq.pop_front();
      if (e == kError) {
        q->state = IBV_QPS_ERR;
        break;
      }
    }
    // Spray model: some delayed writes land now, possibly out of order.
    if (!q->unplaced.empty() && F().rng() % 4 == 0) {
      size_t j = F().rng() % q->unplaced.size();
      auto& u = q->unplaced[j];
      memcpy((void*)(uintptr_t)u.dst, u.data.data(), u.data.size());
      q->unplaced.erase(q->unplaced.begin() + j);
    }
  }
  int got = 0;
  while (got < n && !c->q.empty()) {
    out[got] = c->q.front();
    c->q.pop_front();
    if (out[got].opcode != IBV_WC_RECV_RDMA_WITH_IMM) {
      Qp* q = F().qps[out[got].qp_num].get();
      q->outstanding -= q->retire.front();  // send-queue slots come back when the completion is polled
      q->retire.pop_front();
    }
    got++;
  }
  return got;
}

}  // namespace

void reset(const std::vector<DevCfg>& devs) {
  delete g;
  g = new Fabric();
  g->devs = devs;
  g->devObjs.assign(devs.size(), ibv_device());
  epIbvFns& f = g->fns;
  f.getDeviceList = getDeviceList;
  f.freeDeviceList = freeDeviceList;
  f.getDeviceName = getDeviceName;
  f.openDevice = openDevice;
  f.closeDevice = closeDevice;
  f.queryDevice = queryDevice;
  f.queryPort = queryPort;
  f.queryGid = queryGid;
  f.allocPd = allocPd;
  f.deallocPd = deallocPd;
  f.regMr = regMr;
  f.regDmabufMr = regDmabufMr;
  f.deregMr = deregMr;
  f.createCq = createCq;
  f.destroyCq = destroyCq;
  f.createQp = createQp;
  f.modifyQp = modifyQp;
  f.destroyQp = destroyQp;
  f.postSend = postSend;
  f.postRecv = postRecv;
  f.pollCq = pollCq;
}

void setAdaptiveRouting(bool on) { g->ar = on; }
void setDmabuf(bool present, int err) {
  g->dmabufSym = present;
  g->dmabufErrno = err;
  g->fns.regDmabufMr = present ? regDmabufMr : nullptr;
}
const epIbvFns* table() { return &g->fns; }

ibv_context* openOnly(const DevCfg& d) {
  reset({d});
  int n = 0;
  ibv_device** list = table()->getDeviceList(&n);
  ibv_context* ctx = n > 0 ? table()->openDevice(list[0]) : nullptr;
  table()->freeDeviceList(list);
  return ctx;
}

DevCfg singlePortNic(const char* name) {
  DevCfg d;
  d.name = name;
  d.ports.push_back(PortCfg());
  return d;
}
Stats stats() {
  std::lock_guard<std::mutex> lk(g->mu);
  return g->st;
}
std::vector<std::pair<int, ibv_qp_attr>> modifies(uint32_t qpn) {
  std::lock_guard<std::mutex> lk(g->mu);
  return g->qps.count(qpn) ? g->qps[qpn]->modifies : std::vector<std::pair<int, ibv_qp_attr>>();
}
std::vector<uint32_t> qpns() {
  std::lock_guard<std::mutex> lk(g->mu);
  std::vector<uint32_t> v;
  for (auto& kv : g->qps) v.push_back(kv.first);
  return v;
}

std::array<uint8_t, 16> gidV4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  std::array<uint8_t, 16> g{};
  g[10] = 0xff;
  g[11] = 0xff;
  g[12] = a;
  g[13] = b;
  g[14] = c;
  g[15] = d;
  return g;
}
std::array<uint8_t, 16> gidLinkLocal(uint8_t last) {
  std::array<uint8_t, 16> g{};
  g[0] = 0xfe;
  g[1] = 0x80;
  g[15] = last;
  return g;
}

}  // namespace fakeib
