/*************************************************************************
 * epcomm: the table of registered network windows of one communicator.
 * SPDX-License-Identifier: Apache-2.0
 *
 * A window is a symmetric memory region: every rank registers one region
 * under the same id, in the same collective call, with possibly different
 * sizes. The table keeps this rank's base/size and every peer's size, so
 * that the proxy can bounds-check a descriptor before any byte moves: a
 * corrupted or wrong descriptor is refused, never turned into a wild write.
 *
 * Windows are registered from the user's thread while the proxy thread may
 * be reading the table: each entry is filled completely, then published
 * with a release store of `live`; the proxy reads `live` with acquire.
 * Deregistering a window that still has ops in flight is a usage error
 * (the caller synchronises first; epNetDeregisterWindow drains the rings).
 *************************************************************************/
#ifndef EP_TRANSPORT_NET_WINDOW_H_
#define EP_TRANSPORT_NET_WINDOW_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "transports/proxy/net_desc.h"

struct epNetWindow {
  std::atomic<int> live{0};
  void* base = nullptr;     /* this rank's region */
  size_t bytes = 0;
  bool isDevice = false;    /* device memory (else host-pinned) */
  std::vector<uint64_t> peerBytes; /* [nranks] size each rank registered */
};

class epNetWindowTable {
 public:
  explicit epNetWindowTable(int nranks) : nranks_(nranks) {}
  int nranks() const { return nranks_; }
  /* Lowest free id, or -1 when all EP_NET_MAX_WINDOWS are in use. */
  int freeId() const;
  /* One past the highest live id: what descriptors may name. */
  int count() const;
  void publish(int id, void* base, size_t bytes, bool isDevice, std::vector<uint64_t> peerBytes);
  void retire(int id);
  const epNetWindow* get(int id) const;
  /* Bounds and liveness check of a decoded descriptor issued by this rank.
   * Returns EP_NET_DESC_OK or an epNetDescError; `why` gets a readable reason. */
  int check(const epNetOpFields& f, std::string* why) const;

 private:
  int nranks_;
  epNetWindow w_[EP_NET_MAX_WINDOWS];
};

#endif  // EP_TRANSPORT_NET_WINDOW_H_
