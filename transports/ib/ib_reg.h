/*************************************************************************
 * epcomm: memory registration for RDMA (windows).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Host memory: ibv_reg_mr. GPU memory: dmabuf when both the NIC and the GPU
 * support it (cuMemGetHandleForAddressRange on the page-aligned range, then
 * ibv_reg_dmabuf_mr with iova = the virtual address, so remote addresses are
 * plain pointers), else ibv_reg_mr relying on nvidia_peermem. EP_IB_DMABUF:
 * -1 auto, 0 never (peer memory only), 1 required (error without it). The
 * decision is a pure function so that every branch is unit-tested.
 *************************************************************************/
#ifndef EP_TRANSPORT_IB_REG_H_
#define EP_TRANSPORT_IB_REG_H_

#include <cstddef>
#include <string>

#include "epcomm.h"
#include "transports/ib/ibvwrap.h"

enum epIbRegPath { EP_IB_REG_HOST = 0, EP_IB_REG_DMABUF = 1, EP_IB_REG_PEERMEM = 2 };

struct epIbRegCaps {
  bool nicDmabuf = false;
  bool gpuDmabuf = false;
  bool peermem = false;
};

/* epNotSupported (with `why`) when GPU memory cannot be registered at all. */
epResult_t epIbChooseRegPath(bool isDevice, int dmabufKnob, const epIbRegCaps& caps, epIbRegPath* path,
                             std::string* why);

const char* epIbRegPathName(epIbRegPath p);

/* Registers [ptr, ptr+bytes) with full RDMA access. */
epResult_t epIbRegister(const epIbvFns* ibv, struct ibv_pd* pd, void* ptr, size_t bytes, epIbRegPath path,
                        struct ibv_mr** mr);

#endif  // EP_TRANSPORT_IB_REG_H_
