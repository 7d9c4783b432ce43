/*************************************************************************
 * epcomm: network window table (see net_window.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/proxy/net_window.h"

#include <cinttypes>
#include <cstdio>

int epNetWindowTable::freeId() const {
  for (int i = 0; i < EP_NET_MAX_WINDOWS; i++)
    if (!w_[i].live.load(std::memory_order_acquire) && w_[i].base == nullptr) return i;
  return -1;
}

int epNetWindowTable::count() const {
  int n = 0;
  for (int i = 0; i < EP_NET_MAX_WINDOWS; i++)
    if (w_[i].live.load(std::memory_order_acquire)) n = i + 1;
  return n;
}

void epNetWindowTable::publish(int id, void* base, size_t bytes, bool isDevice, std::vector<uint64_t> peerBytes) {
  epNetWindow& w = w_[id];
  w.base = base;
  w.bytes = bytes;
  w.isDevice = isDevice;
  w.peerBytes = std::move(peerBytes);
  w.live.store(1, std::memory_order_release);
}

void epNetWindowTable::retire(int id) {
  epNetWindow& w = w_[id];
  w.live.store(0, std::memory_order_release);
  w.base = nullptr;
  w.bytes = 0;
  w.peerBytes.clear();
}

const epNetWindow* epNetWindowTable::get(int id) const {
  if (id < 0 || id >= EP_NET_MAX_WINDOWS || !w_[id].live.load(std::memory_order_acquire)) return nullptr;
  return &w_[id];
}

namespace {
// a + b <= limit without overflow.
bool fits(uint64_t off, uint64_t len, uint64_t limit) { return off <= limit && len <= limit - off; }
}  // namespace

int epNetWindowTable::check(const epNetOpFields& f, std::string* why) const {
  char buf[256];
  int rc = epNetValidate(f, nranks_, EP_NET_MAX_WINDOWS);
  if (rc != EP_NET_DESC_OK) {
    snprintf(buf, sizeof(buf), "malformed descriptor (op %u, peer %d, code %d)", f.op, f.peer, rc);
    if (why) *why = buf;
    return rc;
  }
  if (epNetOpHasData(f.op)) {
    const epNetWindow* s = get(f.srcWin);
    const epNetWindow* d = get(f.dstWin);
    if (!s || !d) {
      snprintf(buf, sizeof(buf), "put names window %u/%u that is not registered", f.srcWin, f.dstWin);
      if (why) *why = buf;
      return EP_NET_DESC_BAD_WINDOW;
    }
    if (!fits(f.srcOff, f.bytes, s->bytes) || !fits(f.dstOff, f.bytes, d->peerBytes[f.peer])) {
      snprintf(buf, sizeof(buf),
               "put of %u bytes out of bounds: src window %u [%" PRIu64 ", size %zu], dst window %u at rank %d [%" PRIu64
               ", size %" PRIu64 "]",
               f.bytes, f.srcWin, f.srcOff, s->bytes, f.dstWin, f.peer, f.dstOff, d->peerBytes[f.peer]);
      if (why) *why = buf;
      return EP_NET_DESC_BAD_OFFSET;
    }
  }
  if (epNetOpHasSignal(f.op)) {
    const epNetWindow* g = get(f.sigWin);
    if (!g) {
      snprintf(buf, sizeof(buf), "signal names window %u that is not registered", f.sigWin);
      if (why) *why = buf;
      return EP_NET_DESC_BAD_WINDOW;
    }
    if (!fits((uint64_t)f.sigSlot * 8, 8, g->peerBytes[f.peer])) {
      snprintf(buf, sizeof(buf), "signal slot %u out of bounds of window %u at rank %d (size %" PRIu64 ")", f.sigSlot,
               f.sigWin, f.peer, g->peerBytes[f.peer]);
      if (why) *why = buf;
      return EP_NET_DESC_BAD_OFFSET;
    }
  }
  return EP_NET_DESC_OK;
}
