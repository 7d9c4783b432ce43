/*************************************************************************
 * epcomm: what executes network descriptors for the proxy.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Two implementations: verbs (transports/ib, real RDMA) and emulated
 * (transports/emulated, peer copies between GPUs of one host). A backend
 * sees decoded, bounds-checked descriptors (epNetOpFields) in ring order per
 * channel and must honour RDMA semantics per (peer, channel):
 *   - ops start in posting order;
 *   - a signal is applied at the peer only after the data of its own PUT and
 *     of every earlier op of the same (peer, channel) has landed there.
 * Completion (ticket reported to the sink) means: the source buffer may be
 * reused, the data is at the peer and the signal, if any, is applied.
 *
 * Threading: registerWindow/deregisterWindow run on the user's thread
 * (collective, they may use the bootstrap); post/progress run on the proxy
 * thread only. The two never touch the same window concurrently: a window
 * is published to the proxy only after registerWindow returns, and
 * retired (drained) before deregisterWindow is called.
 *************************************************************************/
#ifndef EP_TRANSPORT_NET_BACKEND_H_
#define EP_TRANSPORT_NET_BACKEND_H_

#include <cstddef>
#include <cstdint>

#include "epcomm.h"
#include "transports/proxy/net_desc.h"

class epNetCompletionSink {
 public:
  virtual ~epNetCompletionSink() = default;
  virtual void complete(int channel, uint64_t ticket) = 0;
};

class epNetBackend {
 public:
  virtual ~epNetBackend() = default;
  virtual const char* name() const = 0;

  /* Collective over the communicator: make window `id` (this rank's
   * [base, base+bytes)) reachable by peers' ops. */
  virtual epResult_t registerWindow(int id, void* base, size_t bytes, bool isDevice) = 0;
  virtual epResult_t deregisterWindow(int id) = 0;

  /* Proxy thread. epSuccess: accepted, completion comes through progress().
   * epInProgress: no room now (in-flight limit, resources): nothing was
   * started, the proxy retries the same op later and keeps ring order.
   * Anything else is fatal for the communicator. */
  virtual epResult_t post(int channel, const epNetOpFields& op, uint64_t ticket) = 0;

  /* Proxy thread: reap finished work, report each op exactly once. */
  virtual epResult_t progress(epNetCompletionSink* sink) = 0;

  /* Proxy thread: true when nothing is in flight (used to drain). */
  virtual bool idle() const = 0;
};

#endif  // EP_TRANSPORT_NET_BACKEND_H_
