/*************************************************************************
 * epcomm: can the NIC read and write GPU memory, and how.
 * SPDX-License-Identifier: Apache-2.0
 *
 *   NIC dmabuf:  ibv_reg_dmabuf_mr exists and, called with fd = -1, fails
 *                with EBADF (the kernel got as far as the fd); EOPNOTSUPP /
 *                EPROTONOSUPPORT (or a missing symbol) mean no support.
 *   GPU dmabuf:  CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED through the driver
 *                entry point, and cuMemGetHandleForAddressRange present.
 *   peer memory: the nvidia_peermem module (or the legacy nv_peer_mem)
 *                is loaded, so ibv_reg_mr accepts device pointers.
 *************************************************************************/
#ifndef EP_TRANSPORT_IB_GDR_H_
#define EP_TRANSPORT_IB_GDR_H_

#include <string>

#include "transports/ib/ibvwrap.h"

bool epIbNicDmabufSupported(const epIbvFns* ibv, struct ibv_pd* pd);
bool epIbGpuDmabufSupported(int cudaDev);
/* sysfsRoot: "/sys" except in tests. */
bool epIbPeermemLoaded(const std::string& sysfsRoot);

#endif  // EP_TRANSPORT_IB_GDR_H_
