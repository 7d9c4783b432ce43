/*************************************************************************
 * epcomm: emulated RDMA backend: the proxy executes puts as GPU peer copies.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Selected by EP_NET=emulated / config.net = "emulated", and always with
 * EP_EMULATE_NODES > 1 (virtual nodes of one host). All ranks share one
 * host; every window is mapped into every rank of the OTHER (virtual) nodes
 * (CUDA IPC across processes, peer access inside one process). As on IB,
 * where only remote-node peers have QPs, an op for a same-node peer fails
 * (epInvalidUsage): same-node traffic belongs on NVLink.
 *
 * Execution, per channel (one copy stream and one signal stream, owned by
 * the backend and used only on the proxy thread):
 *   PUT         cudaMemcpyAsync(peer dst, local src) on the copy stream, then
 *               an event after it
 *   PUT_SIGNAL  same; once the proxy sees the event complete (the data has
 *               landed at the peer), the signal is applied by a tiny kernel on
 *               the signal stream (system-scope atomic into the peer word)
 *   SIGNAL      an event on the copy stream (covers every earlier copy of
 *               the channel), then the signal as above
 *   SET signals (of PUT_SIGNAL or SIGNAL) are plain 8-byte writes: the copy
 *               engine does them on the copy stream, right behind the data,
 *               from a host-pinned value; no kernel, so they never wait for an
 *               SM (LL kernels may hold every SM while they wait for them)
 * Signals are launched strictly in posting order, and only after the data
 * of every earlier op of the channel completed: the RDMA ordering of one QP,
 * made stricter (one stream per channel orders all peers of the channel).
 * An op completes (its ring slot is released) when its signal kernel has
 * run, or for a plain PUT when its copy has. In-flight ops per channel are
 * bounded by EP_IB_MAX_INFLIGHT, as a QP would bound them.
 *************************************************************************/
#ifndef EP_TRANSPORT_EMU_BACKEND_H_
#define EP_TRANSPORT_EMU_BACKEND_H_

#include <memory>

#include "epcomm.h"
#include "transports/proxy/net_backend.h"

struct epComm;

epResult_t epEmuBackendCreate(epComm* comm, int nChannels, std::unique_ptr<epNetBackend>* out);

#endif  // EP_TRANSPORT_EMU_BACKEND_H_
