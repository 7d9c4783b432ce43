/*************************************************************************
 * epcomm: the bootstrap root (rendezvous server), see wire.h phase 1.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Runs on its own thread and serves exactly one communicator: once every rank
 * has joined (or the timeout has passed) it answers them, closes its listener
 * and ends. Connections with the wrong magic, another wire version, a
 * different nranks or an already-joined rank are refused with a reply that
 * says why, and logged; they do not count as arrivals.
 *************************************************************************/
#ifndef EP_BOOTSTRAP_ROOT_H_
#define EP_BOOTSTRAP_ROOT_H_

#include <cstdint>
#include <thread>

/* Takes ownership of `listenFd`. The root gives up if no rank at all arrives
 * within `waitFirstMs` (< 0: wait forever, as a root made by epGetUniqueId must:
 * the id may travel for a long time before the ranks start). */
std::thread epBootstrapRootStart(int listenFd, uint64_t magic, int64_t waitFirstMs);

#endif  // EP_BOOTSTRAP_ROOT_H_
