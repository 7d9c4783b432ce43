/*************************************************************************
 * epcomm: dlopen'd verbs table (see ibvwrap.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/ib/ibvwrap.h"

#include <dlfcn.h>

#include <mutex>

#include "core/debug.h"
#include "core/param.h"

namespace {

// The data-path verbs are inlines over the provider's ops table: wrap them.
int postSendOps(struct ibv_qp* qp, struct ibv_send_wr* wr, struct ibv_send_wr** bad) {
  return ibv_post_send(qp, wr, bad);
}
int postRecvOps(struct ibv_qp* qp, struct ibv_recv_wr* wr, struct ibv_recv_wr** bad) {
  return ibv_post_recv(qp, wr, bad);
}
int pollCqOps(struct ibv_cq* cq, int n, struct ibv_wc* wc) { return ibv_poll_cq(cq, n, wc); }

bool load(epIbvFns* f) {
  // EP_IBVERBS_LIB lets tests (and odd installs) point at another library.
  const char* name = epGetEnv("EP_IBVERBS_LIB");
  if (name == nullptr) name = "libibverbs.so.1";
  void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    EP_INFO(EP_LOG_NET, "NET/IB: %s not loadable (%s): no verbs NICs", name, dlerror());
    return false;
  }
  bool ok = true;
  // Verbs symbols are versioned; IBVERBS_1.1 is the ABI every rdma-core since 2017 exports.
#define EP_IBV_SYM(member, sym)                                                       \
  do {                                                                                \
    *(void**)&f->member = dlvsym(h, sym, "IBVERBS_1.1");                              \
    if (f->member == nullptr) *(void**)&f->member = dlsym(h, sym);                    \
    if (f->member == nullptr) {                                                       \
      EP_INFO(EP_LOG_NET, "NET/IB: %s lacks %s: verbs disabled", name, sym);          \
      ok = false;                                                                     \
    }                                                                                 \
  } while (0)
#define EP_IBV_SYM_OPT(member, sym) (*(void**)&f->member = dlsym(h, sym))
  EP_IBV_SYM(getDeviceList, "ibv_get_device_list");
  EP_IBV_SYM(freeDeviceList, "ibv_free_device_list");
  EP_IBV_SYM(getDeviceName, "ibv_get_device_name");
  EP_IBV_SYM(openDevice, "ibv_open_device");
  EP_IBV_SYM(closeDevice, "ibv_close_device");
  EP_IBV_SYM(queryDevice, "ibv_query_device");
  EP_IBV_SYM(queryPort, "ibv_query_port");
  EP_IBV_SYM(queryGid, "ibv_query_gid");
  EP_IBV_SYM(allocPd, "ibv_alloc_pd");
  EP_IBV_SYM(deallocPd, "ibv_dealloc_pd");
  EP_IBV_SYM(regMr, "ibv_reg_mr");
  EP_IBV_SYM_OPT(regDmabufMr, "ibv_reg_dmabuf_mr");
  EP_IBV_SYM(deregMr, "ibv_dereg_mr");
  EP_IBV_SYM(createCq, "ibv_create_cq");
  EP_IBV_SYM(destroyCq, "ibv_destroy_cq");
  EP_IBV_SYM(createQp, "ibv_create_qp");
  EP_IBV_SYM(modifyQp, "ibv_modify_qp");
  EP_IBV_SYM(destroyQp, "ibv_destroy_qp");
  f->postSend = postSendOps;
  f->postRecv = postRecvOps;
  f->pollCq = pollCqOps;
#undef EP_IBV_SYM_OPT
#undef EP_IBV_SYM
  if (!ok) {
    dlclose(h);
    return false;
  }
  // The handle stays open for the life of the process: verbs objects outlive any one communicator.
  EP_INFO(EP_LOG_NET, "NET/IB: loaded %s", name);
  return true;
}

}  // namespace

const epIbvFns* epIbv() {
  static epIbvFns fns;
  static bool loaded = false;
  static std::once_flag once;
  std::call_once(once, [] { loaded = load(&fns); });
  return loaded ? &fns : nullptr;
}
