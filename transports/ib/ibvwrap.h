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
};

/* The loaded table, or nullptr when libibverbs.so.1 (or a required symbol) is
 * missing: logged once at INFO level (NET), never an error. Thread-safe. */
const epIbvFns* epIbv();

#endif  // EP_TRANSPORT_IBVWRAP_H_
