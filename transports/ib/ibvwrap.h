/*************************************************************************
 * epcomm: rdma-core verbs loaded with dlopen("libibverbs.so.1").
 * SPDX-License-Identifier: Apache-2.0
 *
 * libepcomm has no link-time dependency on libibverbs: a machine without
 * rdma-core simply has "no NICs". The types come from <infiniband/verbs.h>
 * (build-time only); the functions come from the table below, filled once
 * per process by dlsym.
 *
 * Extending (internode transport): add a member to epIbvFns, resolve it in
 * ibvwrap.cc with EP_IBV_SYM (required) or EP_IBV_SYM_OPT (may be null on
 * old rdma-core: check before use). Call through epIbv()->fn(...), never the
 * ibv_* names, which would pull in a link dependency. Note that several verbs
 * "functions" are static inlines in verbs.h that dispatch through
 * context->ops (ibv_post_send, ibv_poll_cq, ...): those work as-is on objects
 * created through this table and need no entry here.
 *************************************************************************/
#ifndef EP_TRANSPORT_IBVWRAP_H_
#define EP_TRANSPORT_IBVWRAP_H_

#include <infiniband/verbs.h>

struct epIbvFns {
  struct ibv_device** (*getDeviceList)(int* num);
  void (*freeDeviceList)(struct ibv_device** list);
  const char* (*getDeviceName)(struct ibv_device* dev);
  struct ibv_context* (*openDevice)(struct ibv_device* dev);
  int (*closeDevice)(struct ibv_context* ctx);
  int (*queryDevice)(struct ibv_context* ctx, struct ibv_device_attr* attr);
  /* The exported symbol behind verbs.h's ibv_query_port() macro. */
  int (*queryPort)(struct ibv_context* ctx, uint8_t port, struct ibv_port_attr* attr);

  /* ---- internode transport (transports/ib): control path ---- */
  int (*queryGid)(struct ibv_context* ctx, uint8_t port, int index, union ibv_gid* gid);
  struct ibv_pd* (*allocPd)(struct ibv_context* ctx);
  int (*deallocPd)(struct ibv_pd* pd);
  /* The exported symbol behind verbs.h's ibv_reg_mr() macro. */
  struct ibv_mr* (*regMr)(struct ibv_pd* pd, void* addr, size_t length, int access);
  /* Optional (rdma-core >= 34): null when absent. */
  struct ibv_mr* (*regDmabufMr)(struct ibv_pd* pd, uint64_t offset, size_t length, uint64_t iova, int fd,
                                int access);
  int (*deregMr)(struct ibv_mr* mr);
  struct ibv_cq* (*createCq)(struct ibv_context* ctx, int cqe, void* cqContext, struct ibv_comp_channel* channel,
                             int compVector);
  int (*destroyCq)(struct ibv_cq* cq);
  struct ibv_qp* (*createQp)(struct ibv_pd* pd, struct ibv_qp_init_attr* attr);
  int (*modifyQp)(struct ibv_qp* qp, struct ibv_qp_attr* attr, int mask);
  int (*destroyQp)(struct ibv_qp* qp);
  /* ---- data path: verbs.h inlines dispatching through context->ops, kept in
   * the table so that unit tests can substitute a fake NIC ---- */
  int (*postSend)(struct ibv_qp* qp, struct ibv_send_wr* wr, struct ibv_send_wr** bad);
  int (*postRecv)(struct ibv_qp* qp, struct ibv_recv_wr* wr, struct ibv_recv_wr** bad);
  int (*pollCq)(struct ibv_cq* cq, int n, struct ibv_wc* wc);
};

/* The loaded table, or nullptr when libibverbs.so.1 (or a required symbol) is
 * missing: logged once at INFO level (NET), never an error. Thread-safe. */
const epIbvFns* epIbv();

#endif  // EP_TRANSPORT_IBVWRAP_H_
