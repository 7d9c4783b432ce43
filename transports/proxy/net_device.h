/*************************************************************************
 * epcomm: what a kernel receives to post network work (host+device header).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Kernels see only this handle and the functions of net_post.cuh: channel
 * rings, window ids, offsets, signal slots. Nothing here is specific to the
 * CPU proxy except the ring, so a GPU-initiated backend (IBGDA) can keep
 * this struct and the post functions' signatures and replace their bodies.
 *************************************************************************/
#ifndef EP_TRANSPORT_NET_DEVICE_H_
#define EP_TRANSPORT_NET_DEVICE_H_

#include <cstdint>

#include "device/status.h"
#include "transports/proxy/net_ring.h"

struct epNetDevice {
  epNetRing* rings;         /* device array [nChannels] */
  int nChannels;
  int rank;
  int nranks;
  uint64_t timeoutNs;       /* EP_TIMEOUT_MS: bound on waiting for credit/completion */
  epDeviceStatus* status;   /* where a failed post is recorded (may be null) */
};

#endif  // EP_TRANSPORT_NET_DEVICE_H_
