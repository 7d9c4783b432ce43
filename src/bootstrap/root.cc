/*************************************************************************
 * epcomm: bootstrap root (see root.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "bootstrap/root.h"

#include <cinttypes>
#include <cstring>
#include <string>
#include <vector>

#include "bootstrap/wire.h"
#include "core/debug.h"

namespace {

// Before the first rank arrives the root has no timeout to apply (it learns
// it from the first hello); it then waits "forever", like NCCL's root.
constexpr int64_t kWaitFirstMs = int64_t(1) << 40;
// A connection that does not send its hello promptly is dropped.
constexpr int64_t kHelloMs = 5000;

void reply(int fd, int code, int nranks, const epSockAddr* hub, const std::string& msg) {
  epRootReply r;
  memset(&r, 0, sizeof(r));
  r.code = code;
  r.nranks = nranks;
  if (hub) r.hub = *hub;
  snprintf(r.msg, sizeof(r.msg), "%s", msg.c_str());
  (void)epSockSend(fd, &r, sizeof(r), epNowMs() + 2000);
}

void rootMain(int listenFd, uint64_t magic, int64_t waitFirstMs) {
  int nranks = -1;
  int timeoutMs = 0;
  int64_t deadline = epNowMs() + (waitFirstMs < 0 ? kWaitFirstMs : waitFirstMs);
  std::vector<int> fds;
  epSockAddr hub;
  memset(&hub, 0, sizeof(hub));
  int joined = 0;
  while (nranks < 0 || joined < nranks) {
    int fd = -1;
    epSockAddr peer;
    epResult_t res = epSockAccept(listenFd, deadline, &fd, &peer);
    if (res == epTimeout) break;
    if (res != epSuccess) continue;
    epRootHello h;
    if (epSockRecv(fd, &h, sizeof(h), epNowMs() + kHelloMs) != epSuccess) {
      EP_WARN("Bootstrap root: dropped connection from %s: no hello", epSockAddrStr(peer).c_str());
      epSockClose(&fd);
      continue;
    }
    std::string why;
    int code = epInvalidUsage;
    if (h.magic != magic) {
      char buf[200];
      snprintf(buf, sizeof(buf), "wrong magic 0x%016" PRIx64 " (expected 0x%016" PRIx64 "): the unique id belongs to another communicator",
               h.magic, magic);
      why = buf;
    } else if (h.wire != EP_BOOTSTRAP_WIRE) {
      why = "bootstrap wire version " + std::to_string(h.wire) + " != " + std::to_string(EP_BOOTSTRAP_WIRE) +
            ": mixed epcomm versions";
    } else if (nranks >= 0 && h.nranks != nranks) {
      why = "nranks " + std::to_string(h.nranks) + " differs from the " + std::to_string(nranks) +
            " given by the first rank to join";
    } else if (h.rank < 0 || h.rank >= h.nranks) {
      why = "rank " + std::to_string(h.rank) + " out of range [0," + std::to_string(h.nranks) + ")";
    } else if (nranks >= 0 && fds[h.rank] >= 0) {
      why = "rank " + std::to_string(h.rank) + " already joined (unique id used twice, or two processes with the same rank)";
    } else {
      code = epSuccess;
    }
    if (code != epSuccess) {
      EP_WARN("Bootstrap root: refused connection from %s claiming rank %d: %s", epSockAddrStr(peer).c_str(), h.rank,
              why.c_str());
      reply(fd, code, nranks, nullptr, "bootstrap root refused the connection: " + why);
      epSockClose(&fd);
      continue;
    }
    if (nranks < 0) {
      nranks = h.nranks;
      timeoutMs = h.timeoutMs;
      fds.assign(nranks, -1);
      deadline = epNowMs() + timeoutMs;
      EP_INFO(EP_LOG_BOOTSTRAP, "Bootstrap root: first rank arrived, waiting %d ms for %d ranks", timeoutMs, nranks);
    }
    fds[h.rank] = fd;
    if (h.rank == 0) hub = h.hub;
    joined++;
  }
  epSockClose(&listenFd);
  if (nranks < 0) return;
  if (joined < nranks) {
    std::vector<int> missing;
    for (int r = 0; r < nranks; r++)
      if (fds[r] < 0) missing.push_back(r);
    std::string msg = "bootstrap: rank(s) " + epRankList(missing) + " of " + std::to_string(nranks) +
                      " did not join within " + std::to_string(timeoutMs) +
                      " ms (EP_BOOTSTRAP_TIMEOUT). HINT: check that every rank was started and uses the same unique id";
    EP_WARN("Bootstrap root: %s", msg.c_str());
    for (int& fd : fds)
      if (fd >= 0) reply(fd, epTimeout, nranks, nullptr, msg);
  } else {
    for (int& fd : fds) reply(fd, epSuccess, nranks, &hub, "");
  }
  for (int& fd : fds) epSockClose(&fd);
}

}  // namespace

std::thread epBootstrapRootStart(int listenFd, uint64_t magic, int64_t waitFirstMs) {
  return std::thread(rootMain, listenFd, magic, waitFirstMs);
}
