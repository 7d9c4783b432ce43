/*************************************************************************
 * epcomm: TCP bootstrap (see bootstrap.h for the contract, wire.h for the
 * protocol). Collectives are a star through rank 0: n-1 connections, two hops
 * per collective, and one place (rank 0) that sees which ranks are late, so
 * that a missing rank is named in the error every other rank gets.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "bootstrap/bootstrap.h"

#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bootstrap/root.h"
#include "bootstrap/wire.h"
#include "core/checks.h"
#include "core/hash.h"
#include "core/param.h"

static_assert(sizeof(epBootstrapHandle) <= EP_UNIQUE_ID_BYTES, "bootstrap handle must fit in epUniqueId");

struct epBootstrap {
  int rank = 0;
  int nranks = 0;
  int timeoutMs = 0;
  uint64_t magic = 0;
  int hubFd = -1;            /* ranks > 0: connection to rank 0 */
  std::vector<int> peerFd;   /* rank 0: connection to each rank (index 0 unused) */
  uint32_t seq = 0;
  bool broken = false;       /* a collective failed: the star is out of step, refuse further use */
  epResult_t brokenCode = epSuccess;
  std::string brokenMsg;
  std::atomic<int> aborted{0};
};

namespace {

// The wait of a rank > 0 for rank 0's answer: rank 0 may itself wait the full
// timeout for a late rank before it answers, so give it that plus slack. The
// late rank is then named by rank 0, not wrongly blamed on rank 0.
int64_t peerDeadline(const epBootstrap* bs) { return epNowMs() + 2 * (int64_t)bs->timeoutMs + 1000; }

/* ---------------------------------------------------------------- unique ids */

// Process-local record of (id magic, rank) pairs already given to a
// communicator: re-using an id is a user bug that would otherwise surface as
// a confusing timeout at a root that no longer exists.
std::mutex gUsedMutex;
std::set<std::pair<uint64_t, int>>& usedIds() {
  static std::set<std::pair<uint64_t, int>> s;
  return s;
}

// EP_COMM_ID mode: every process derives the n-th id from EP_COMM_ID and n, so
// all ranks agree without exchanging anything, and consecutive communicators
// on the same root address still get distinct magics.
std::atomic<uint64_t> gCommIdSeq{0};

uint64_t randomMagic() {
  uint64_t m = 0;
  if (getrandom(&m, sizeof(m), 0) != (ssize_t)sizeof(m)) {
    m = epHashMix((uint64_t)getpid() ^ ((uint64_t)epNowMs() << 20) ^ (uint64_t)(uintptr_t)&m);
  }
  return m ? m : 1;
}

// A local (single-process) root serves ranks that start at once: if none comes
// within this long, the init that wanted it has failed, and the root goes away.
constexpr int64_t kLocalRootWaitFirstMs = 10 * 60 * 1000;

epResult_t startRoot(epBootstrapHandle* h, bool loopbackOnly) {
  memset(h, 0, sizeof(*h));
  h->magic = randomMagic();
  h->wire = EP_BOOTSTRAP_WIRE;
  EPCHECK(epSockFindInterface(loopbackOnly, &h->root, nullptr));
  int fd = -1;
  EPCHECK(epSockListen(&h->root, epNowMs(), &fd));
  epBootstrapRootStart(fd, h->magic, loopbackOnly ? kLocalRootWaitFirstMs : -1).detach();
  EP_INFO(EP_LOG_BOOTSTRAP, "Bootstrap: root listening on %s", epSockAddrStr(h->root).c_str());
  return epSuccess;
}

/* ---------------------------------------------------------------- frames */

epResult_t sendFrame(int fd, uint32_t type, uint32_t seq, const void* data, size_t bytes, int code, int origin,
                     int64_t deadline) {
  epFrame f;
  memset(&f, 0, sizeof(f));
  f.type = type;
  f.seq = seq;
  f.bytes = bytes;
  f.code = code;
  f.origin = origin;
  EPCHECK(epSockSend(fd, &f, sizeof(f), deadline));
  if (bytes) EPCHECK(epSockSend(fd, data, bytes, deadline));
  return epSuccess;
}

// Marks the bootstrap broken with `msg`, tells every peer (best effort) and returns `code`.
epResult_t failAll(epBootstrap* bs, epResult_t code, const std::string& msg, uint32_t type = EP_FRAME_ERROR,
                   int origin = -1) {
  EP_WARN("%s", msg.c_str());
  bs->broken = true;
  bs->brokenCode = code;
  bs->brokenMsg = msg;
  int64_t dl = epNowMs() + 1000;
  if (bs->rank == 0) {
    for (int r = 1; r < bs->nranks; r++)
      if (bs->peerFd[r] >= 0)
        (void)sendFrame(bs->peerFd[r], type, bs->seq, msg.data(), msg.size(), code, origin < 0 ? 0 : origin, dl);
  }
  return code;
}

epResult_t checkUsable(epBootstrap* bs) {
  if (bs->aborted.load()) {
    EP_WARN("Bootstrap: communicator was aborted");
    return epRemoteError;
  }
  if (bs->broken) {
    EP_WARN("Bootstrap: an earlier collective failed (%s); the communicator must be destroyed", bs->brokenMsg.c_str());
    return bs->brokenCode;
  }
  return epSuccess;
}

// Reads the payload of an ERROR frame into a message.
std::string readText(int fd, uint64_t bytes, int64_t deadline) {
  std::string s(bytes > 4096 ? 4096 : bytes, '\0');
  if (!s.empty() && epSockRecv(fd, &s[0], s.size(), deadline) != epSuccess) return "(message lost)";
  return s;
}

/* Rank 0: receive one DATA frame of collective `seq` from every other rank.
 * expect[r]: payload size rank r must send; dst[r]: where it goes (may be null for 0 bytes). */
epResult_t hubGather(epBootstrap* bs, const std::vector<size_t>& expect, const std::vector<char*>& dst) {
  int n = bs->nranks;
  std::vector<char> pending(n, 1);
  pending[0] = 0;
  int left = n - 1;
  int64_t deadline = epNowMs() + bs->timeoutMs;
  std::vector<struct pollfd> pfd;
  std::vector<int> who;
  while (left > 0) {
    pfd.clear();
    who.clear();
    for (int r = 1; r < n; r++)
      if (pending[r]) {
        pfd.push_back({bs->peerFd[r], POLLIN, 0});
        who.push_back(r);
      }
    int64_t wait = deadline - epNowMs();
    if (wait <= 0) {
      std::vector<int> missing;
      for (int r = 1; r < n; r++)
        if (pending[r]) missing.push_back(r);
      return failAll(bs, epTimeout,
                     "Bootstrap: rank(s) " + epRankList(missing) + " of " + std::to_string(n) +
                         " did not enter collective #" + std::to_string(bs->seq) + " within " +
                         std::to_string(bs->timeoutMs) + " ms (EP_BOOTSTRAP_TIMEOUT)");
    }
    int rc = poll(pfd.data(), pfd.size(), (int)(wait > 1000 ? 1000 : wait));
    if (rc < 0 && errno != EINTR) return failAll(bs, epSystemError, std::string("Bootstrap: poll failed: ") + strerror(errno));
    for (size_t i = 0; rc > 0 && i < pfd.size(); i++) {
      if (!pfd[i].revents) continue;
      int r = who[i];
      epFrame f;
      epResult_t res = epSockRecv(bs->peerFd[r], &f, sizeof(f), deadline);
      if (res == epRemoteError)
        return failAll(bs, epRemoteError,
                       "Bootstrap: rank " + std::to_string(r) + " closed its connection (process exited or crashed?)");
      if (res != epSuccess)
        return failAll(bs, res, "Bootstrap: receive from rank " + std::to_string(r) + " failed");
      if (f.type == EP_FRAME_ABORT) {
        return failAll(bs, epRemoteError, "Bootstrap: communicator aborted by rank " + std::to_string(r), EP_FRAME_ABORT,
                       r);
      }
      if (f.type != EP_FRAME_DATA || f.seq != bs->seq || f.bytes != expect[r]) {
        return failAll(bs, epInvalidUsage,
                       "Bootstrap: rank " + std::to_string(r) + " sent collective #" + std::to_string(f.seq) + " (" +
                           std::to_string(f.bytes) + " bytes) while rank 0 is in collective #" +
                           std::to_string(bs->seq) + " (" + std::to_string(expect[r]) +
                           " bytes): ranks called collectives in a different order or with different sizes");
      }
      if (f.bytes) {
        res = epSockRecv(bs->peerFd[r], dst[r], f.bytes, deadline);
        if (res != epSuccess)
          return failAll(bs, res == epTimeout ? epTimeout : epRemoteError,
                         "Bootstrap: lost the data of rank " + std::to_string(r));
      }
      pending[r] = 0;
      left--;
    }
  }
  return epSuccess;
}

/* Rank 0: send each rank its answer. */
epResult_t hubScatter(epBootstrap* bs, const void* data, size_t bytes) {
  int64_t deadline = epNowMs() + bs->timeoutMs;
  for (int r = 1; r < bs->nranks; r++) {
    epResult_t res = sendFrame(bs->peerFd[r], EP_FRAME_DATA, bs->seq, data, bytes, 0, 0, deadline);
    if (res != epSuccess)
      return failAll(bs, res == epTimeout ? epTimeout : epRemoteError,
                     "Bootstrap: could not send to rank " + std::to_string(r) + " (it exited or stopped reading)");
  }
  return epSuccess;
}

/* Ranks > 0: send our contribution, receive rank 0's answer (exactly `bytes` into dst). */
epResult_t leafExchange(epBootstrap* bs, const void* mine, size_t myBytes, void* dst, size_t bytes) {
  epResult_t res = sendFrame(bs->hubFd, EP_FRAME_DATA, bs->seq, mine, myBytes, 0, bs->rank, peerDeadline(bs));
  if (res != epSuccess) {
    bs->broken = true;
    bs->brokenCode = epRemoteError;
    bs->brokenMsg = "rank 0 is gone";
    EP_WARN("Bootstrap: rank %d could not send to rank 0 (it exited?)", bs->rank);
    return res == epTimeout ? epTimeout : epRemoteError;
  }
  int64_t deadline = peerDeadline(bs);
  epFrame f;
  res = epSockRecv(bs->hubFd, &f, sizeof(f), deadline);
  auto broken = [&](epResult_t code, const std::string& msg) {
    bs->broken = true;
    bs->brokenCode = code;
    bs->brokenMsg = msg;
    EP_WARN("%s", msg.c_str());
    return code;
  };
  if (res == epTimeout)
    return broken(epTimeout, "Bootstrap: rank 0 did not answer collective #" + std::to_string(bs->seq) + " within " +
                                 std::to_string(2 * bs->timeoutMs + 1000) + " ms (rank 0 missing or hung)");
  if (res != epSuccess) return broken(epRemoteError, "Bootstrap: rank 0 closed its connection (process exited or crashed?)");
  if (f.type == EP_FRAME_ERROR) return broken((epResult_t)f.code, readText(bs->hubFd, f.bytes, deadline));
  if (f.type == EP_FRAME_ABORT) {
    (void)readText(bs->hubFd, f.bytes, deadline);
    return broken(epRemoteError, "Bootstrap: communicator aborted by rank " + std::to_string(f.origin));
  }
  if (f.type != EP_FRAME_DATA || f.seq != bs->seq || f.bytes != bytes)
    return broken(epInternalError, "Bootstrap: unexpected answer from rank 0 (type " + std::to_string(f.type) +
                                       ", collective #" + std::to_string(f.seq) + ", " + std::to_string(f.bytes) +
                                       " bytes)");
  if (bytes) {
    res = epSockRecv(bs->hubFd, dst, bytes, deadline);
    if (res != epSuccess) return broken(epRemoteError, "Bootstrap: lost rank 0's answer");
  }
  return epSuccess;
}

/* ---------------------------------------------------------------- init phases */

std::string refusalText(const char* who, const std::string& why) { return std::string(who) + ": " + why; }

// Rank 0: accept ranks 1..n-1 on the hub listener.
epResult_t hubAccept(epBootstrap* bs, int listenFd) {
  int n = bs->nranks;
  bs->peerFd.assign(n, -1);
  int joined = 0;
  int64_t deadline = epNowMs() + bs->timeoutMs + 1000;
  while (joined < n - 1) {
    int fd = -1;
    epSockAddr peer;
    epResult_t res = epSockAccept(listenFd, deadline, &fd, &peer);
    if (res == epTimeout) {
      std::vector<int> missing;
      for (int r = 1; r < n; r++)
        if (bs->peerFd[r] < 0) missing.push_back(r);
      return failAll(bs, epTimeout,
                     "Bootstrap: rank(s) " + epRankList(missing) + " passed the root but did not connect to rank 0 within " +
                         std::to_string(bs->timeoutMs) + " ms");
    }
    if (res != epSuccess) return failAll(bs, res, "Bootstrap: accept on rank 0 failed");
    epHubHello h;
    if (epSockRecv(fd, &h, sizeof(h), epNowMs() + 5000) != epSuccess) {
      EP_WARN("Bootstrap: rank 0 dropped a connection from %s: no hello", epSockAddrStr(peer).c_str());
      epSockClose(&fd);
      continue;
    }
    std::string why;
    if (h.magic != bs->magic) {
      char buf[160];
      snprintf(buf, sizeof(buf), "wrong magic 0x%016" PRIx64 " (expected 0x%016" PRIx64 ")", h.magic, bs->magic);
      why = buf;
    } else if (h.wire != EP_BOOTSTRAP_WIRE || h.nranks != n || h.rank <= 0 || h.rank >= n) {
      why = "bad hello (wire " + std::to_string(h.wire) + ", rank " + std::to_string(h.rank) + ", nranks " +
            std::to_string(h.nranks) + ")";
    } else if (bs->peerFd[h.rank] >= 0) {
      why = "rank " + std::to_string(h.rank) + " already connected";
    }
    if (!why.empty()) {
      EP_WARN("Bootstrap: rank 0 refused a connection from %s: %s", epSockAddrStr(peer).c_str(), why.c_str());
      std::string msg = refusalText("rank 0 refused the connection", why);
      (void)sendFrame(fd, EP_FRAME_ERROR, 0, msg.data(), msg.size(), epInvalidUsage, 0, epNowMs() + 1000);
      epSockClose(&fd);
      continue;
    }
    bs->peerFd[h.rank] = fd;
    joined++;
  }
  int64_t dl = epNowMs() + bs->timeoutMs;
  for (int r = 1; r < n; r++) {
    epResult_t res = sendFrame(bs->peerFd[r], EP_FRAME_READY, 0, nullptr, 0, 0, 0, dl);
    if (res != epSuccess) return failAll(bs, epRemoteError, "Bootstrap: rank " + std::to_string(r) + " went away during init");
  }
  return epSuccess;
}

// Ranks > 0: join rank 0's hub.
epResult_t leafConnect(epBootstrap* bs, const epSockAddr& hub) {
  int64_t deadline = peerDeadline(bs);
  epResult_t res = epSockConnect(hub, deadline, &bs->hubFd);
  if (res == epTimeout) {
    EP_WARN("Bootstrap: rank %d could not reach rank 0 at %s", bs->rank, epSockAddrStr(hub).c_str());
    return epTimeout;
  }
  EPCHECK(res);
  epHubHello h;
  memset(&h, 0, sizeof(h));
  h.magic = bs->magic;
  h.wire = EP_BOOTSTRAP_WIRE;
  h.rank = bs->rank;
  h.nranks = bs->nranks;
  res = epSockSend(bs->hubFd, &h, sizeof(h), deadline);
  epFrame f;
  if (res == epSuccess) res = epSockRecv(bs->hubFd, &f, sizeof(f), deadline);
  if (res == epTimeout) {
    EP_WARN("Bootstrap: rank %d: rank 0 did not confirm the connection in time", bs->rank);
    return epTimeout;
  }
  if (res != epSuccess) {
    EP_WARN("Bootstrap: rank %d: rank 0 closed the connection during init", bs->rank);
    return epRemoteError;
  }
  if (f.type == EP_FRAME_ERROR) {
    std::string msg = readText(bs->hubFd, f.bytes, deadline);
    EP_WARN("%s", msg.c_str());
    return (epResult_t)f.code;
  }
  if (f.type != EP_FRAME_READY) {
    EP_WARN("Bootstrap: rank %d: unexpected frame %u from rank 0 during init", bs->rank, f.type);
    return epInternalError;
  }
  return epSuccess;
}

// Phase 1 (wire.h): returns rank 0's hub address.
epResult_t joinRoot(epBootstrap* bs, const epBootstrapHandle& h, const epSockAddr& myHub, epSockAddr* hub) {
  int64_t deadline = peerDeadline(bs);
  int fd = -1;
  epResult_t res = epSockConnect(h.root, deadline, &fd);
  if (res == epTimeout) {
    EP_WARN("Bootstrap: rank %d could not reach the root at %s within %lld ms: rank 0 (which starts the root with "
            "EP_COMM_ID) or the process that called epGetUniqueId is missing",
            bs->rank, epSockAddrStr(h.root).c_str(), (long long)(2 * (int64_t)bs->timeoutMs + 1000));
    return epTimeout;
  }
  EPCHECK(res);
  epRootHello hello;
  memset(&hello, 0, sizeof(hello));
  hello.magic = h.magic;
  hello.wire = EP_BOOTSTRAP_WIRE;
  hello.rank = bs->rank;
  hello.nranks = bs->nranks;
  hello.timeoutMs = bs->timeoutMs;
  hello.hub = myHub;
  epRootReply reply;
  res = epSockSend(fd, &hello, sizeof(hello), deadline);
  if (res == epSuccess) res = epSockRecv(fd, &reply, sizeof(reply), deadline);
  epSockClose(&fd);
  if (res == epTimeout) {
    EP_WARN("Bootstrap: rank %d: no answer from the root at %s within %lld ms", bs->rank, epSockAddrStr(h.root).c_str(),
            (long long)(2 * (int64_t)bs->timeoutMs + 1000));
    return epTimeout;
  }
  if (res != epSuccess) {
    EP_WARN("Bootstrap: rank %d: the root at %s closed the connection", bs->rank, epSockAddrStr(h.root).c_str());
    return epRemoteError;
  }
  reply.msg[sizeof(reply.msg) - 1] = '\0';
  if (reply.code != epSuccess) {
    EP_WARN("%s", reply.msg);
    return (epResult_t)reply.code;
  }
  *hub = reply.hub;
  return epSuccess;
}

}  // namespace

/* ---------------------------------------------------------------- API */

epResult_t epBootstrapGetUniqueId(epUniqueId* id) {
  memset(id, 0, sizeof(*id));
  epBootstrapHandle* h = reinterpret_cast<epBootstrapHandle*>(id->internal);
  const char* fixed = epGetEnv("EP_COMM_ID");
  if (fixed == nullptr) return startRoot(h, false);
  EPCHECK(epSockParseHostPort(fixed, &h->root));
  uint64_t n = gCommIdSeq.fetch_add(1);
  h->magic = epHashMix(epHashBytes(fixed, strlen(fixed)) ^ epHashMix(n + 1));
  h->wire = EP_BOOTSTRAP_WIRE;
  h->flags = EP_BS_ROOT_AT_RANK0;
  EP_INFO(EP_LOG_BOOTSTRAP, "Bootstrap: EP_COMM_ID=%s, id #%llu (rank 0 starts the root at init)", fixed,
          (unsigned long long)n);
  return epSuccess;
}

/* Single-process communicators (epCommInitAll): a private root on loopback,
 * whatever EP_COMM_ID says. */
epResult_t epBootstrapGetLocalUniqueId(epUniqueId* id) {
  memset(id, 0, sizeof(*id));
  return startRoot(reinterpret_cast<epBootstrapHandle*>(id->internal), true);
}

epResult_t epBootstrapInit(const epUniqueId* id, int rank, int nranks, int timeoutMs, epBootstrap** out) {
  *out = nullptr;
  epBootstrapHandle h;
  memcpy(&h, id->internal, sizeof(h));
  if (h.wire != EP_BOOTSTRAP_WIRE || h.magic == 0 ||
      (h.root.sa.sa_family != AF_INET && h.root.sa.sa_family != AF_INET6)) {
    EP_WARN("Bootstrap: the unique id is not valid (not produced by epGetUniqueId, corrupted, or from another epcomm "
            "version)");
    return epInvalidArgument;
  }
  {
    std::lock_guard<std::mutex> lock(gUsedMutex);
    if (!usedIds().insert({h.magic, rank}).second) {
      EP_WARN("Bootstrap: this unique id was already used for rank %d of a communicator in this process. HINT: call "
              "epGetUniqueId again for every new communicator",
              rank);
      return epInvalidUsage;
    }
  }
  epBootstrap* bs = new epBootstrap();
  bs->rank = rank;
  bs->nranks = nranks;
  bs->timeoutMs = timeoutMs;
  bs->magic = h.magic;
  epResult_t res = epSuccess;
  int hubListen = -1;
  std::thread root;
  epSockAddr myHub, hub;
  memset(&myHub, 0, sizeof(myHub));
  if (rank == 0) {
    // Listen where the other ranks can reach us: loopback only if the root is local-only.
    EPCHECKGOTO(epSockFindInterface(epSockAddrIsLoopback(h.root), &myHub, nullptr), res, fail);
    EPCHECKGOTO(epSockListen(&myHub, epNowMs(), &hubListen), res, fail);
    if (h.flags & EP_BS_ROOT_AT_RANK0) {
      epSockAddr rootAddr = h.root;
      int rootFd = -1;
      EPCHECKGOTO(epSockListen(&rootAddr, epNowMs() + timeoutMs, &rootFd), res, fail);
      // Rank 0 itself connects right away, so the root never waits long for a first arrival.
      root = epBootstrapRootStart(rootFd, h.magic, 2 * (int64_t)timeoutMs + 1000);
    }
  }
  EPCHECKGOTO(joinRoot(bs, h, myHub, &hub), res, fail);
  if (nranks > 1) {
    if (rank == 0) EPCHECKGOTO(hubAccept(bs, hubListen), res, fail);
    else EPCHECKGOTO(leafConnect(bs, hub), res, fail);
  }
  EP_INFO(EP_LOG_BOOTSTRAP, "Bootstrap: rank %d of %d connected (root %s)", rank, nranks, epSockAddrStr(h.root).c_str());
  epSockClose(&hubListen);
  if (root.joinable()) root.join();
  *out = bs;
  return epSuccess;
fail:
  epSockClose(&hubListen);
  if (root.joinable()) root.join();  // the root always ends: on success, or at its deadline
  epBootstrapDestroy(bs);
  return res;
}

epResult_t epBootstrapAllGather(epBootstrap* bs, void* data, size_t bytes) {
  EPCHECK(checkUsable(bs));
  bs->seq++;
  char* base = static_cast<char*>(data);
  if (bs->nranks == 1) return epSuccess;
  size_t total = bytes * (size_t)bs->nranks;
  if (bs->rank != 0) return leafExchange(bs, base + bytes * bs->rank, bytes, base, total);
  std::vector<size_t> expect(bs->nranks, bytes);
  std::vector<char*> dst(bs->nranks);
  for (int r = 0; r < bs->nranks; r++) dst[r] = base + bytes * r;
  EPCHECK(hubGather(bs, expect, dst));
  return hubScatter(bs, data, total);
}

epResult_t epBootstrapBroadcast(epBootstrap* bs, void* data, size_t bytes, int root) {
  EPCHECK(checkUsable(bs));
  if (root < 0 || root >= bs->nranks) {
    EP_WARN("Bootstrap: broadcast root %d out of range [0,%d)", root, bs->nranks);
    return epInvalidArgument;
  }
  bs->seq++;
  if (bs->nranks == 1) return epSuccess;
  if (bs->rank != 0) {
    if (bs->rank != root) return leafExchange(bs, nullptr, 0, data, bytes);
    // The root already has the data; it takes rank 0's echo into scratch.
    std::vector<char> echo(bytes);
    return leafExchange(bs, data, bytes, echo.data(), bytes);
  }
  std::vector<size_t> expect(bs->nranks, 0);
  std::vector<char*> dst(bs->nranks, nullptr);
  expect[root] = root == 0 ? 0 : bytes;
  dst[root] = static_cast<char*>(data);
  EPCHECK(hubGather(bs, expect, dst));
  return hubScatter(bs, data, bytes);
}

epResult_t epBootstrapBarrier(epBootstrap* bs) {
  EPCHECK(checkUsable(bs));
  bs->seq++;
  if (bs->nranks == 1) return epSuccess;
  if (bs->rank != 0) return leafExchange(bs, nullptr, 0, nullptr, 0);
  std::vector<size_t> expect(bs->nranks, 0);
  std::vector<char*> dst(bs->nranks, nullptr);
  EPCHECK(hubGather(bs, expect, dst));
  return hubScatter(bs, nullptr, 0);
}

epResult_t epBootstrapAbort(epBootstrap* bs) {
  if (bs == nullptr) return epSuccess;
  if (bs->aborted.exchange(1)) return epSuccess;
  int64_t dl = epNowMs() + 1000;
  const char msg[] = "aborted";
  if (bs->rank == 0) {
    for (int r = 1; r < (int)bs->peerFd.size(); r++)
      if (bs->peerFd[r] >= 0) (void)sendFrame(bs->peerFd[r], EP_FRAME_ABORT, bs->seq, msg, sizeof(msg) - 1, epRemoteError, 0, dl);
  } else if (bs->hubFd >= 0) {
    (void)sendFrame(bs->hubFd, EP_FRAME_ABORT, bs->seq, msg, sizeof(msg) - 1, epRemoteError, bs->rank, dl);
  }
  return epSuccess;
}

epResult_t epBootstrapDestroy(epBootstrap* bs) {
  if (bs == nullptr) return epSuccess;
  epSockClose(&bs->hubFd);
  for (int& fd : bs->peerFd) epSockClose(&fd);
  delete bs;
  return epSuccess;
}

int epBootstrapRank(const epBootstrap* bs) { return bs->rank; }
int epBootstrapSize(const epBootstrap* bs) { return bs->nranks; }
uint64_t epBootstrapMagic(const epBootstrap* bs) { return bs->magic; }
