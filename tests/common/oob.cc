/*************************************************************************
 * epcomm tests: a tiny out-of-band TCP exchange among test processes.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/oob.h"

#include <arpa/inet.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

struct epTestOob {
  int rank = 0, nranks = 1;
  int timeoutMs = 60000;
  int root = -1;             /* non-root: socket to rank 0 */
  std::vector<int> peers;    /* root: socket of each rank (index = rank) */
};

namespace {
const uint32_t kMagic = 0x0ebc7e57u;

long long nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// All of `n` bytes, or epTimeout/epSystemError/epRemoteError.
epResult_t ioAll(int fd, void* buf, size_t n, bool send, int timeoutMs) {
  char* p = (char*)buf;
  long long deadline = nowMs() + timeoutMs;
  while (n > 0) {
    struct pollfd pfd = {fd, (short)(send ? POLLOUT : POLLIN), 0};
    long long left = deadline - nowMs();
    if (left <= 0) return epTimeout;
    int pr = poll(&pfd, 1, (int)std::min(left, 1000LL));
    if (pr < 0 && errno != EINTR) return epSystemError;
    if (pr <= 0) continue;
    ssize_t r = send ? ::send(fd, p, n, MSG_NOSIGNAL) : ::recv(fd, p, n, 0);
    if (r == 0) return epRemoteError;
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return epRemoteError;
    }
    p += r;
    n -= (size_t)r;
  }
  return epSuccess;
}

bool oobAddress(std::string* host, int* port) {
  const char* a = getenv("EP_TEST_OOB_ADDR");
  int off = 0;
  if (!a || !*a) {
    a = getenv("EP_COMM_ID");
    off = 1;
  }
  if (!a || !*a) return false;
  std::string s = a;
  size_t c = s.rfind(':');
  if (c == std::string::npos) return false;
  *host = s.substr(0, c);
  if (host->size() >= 2 && (*host)[0] == '[') *host = host->substr(1, host->size() - 2);
  *port = atoi(s.c_str() + c + 1) + off;
  return *port > 0 && *port < 65536;
}

int resolve(const std::string& host, int port, struct sockaddr_storage* sa, socklen_t* len) {
  struct addrinfo hints, *res = nullptr;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) return -1;
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}
}  // namespace

epResult_t epTestOobInit(const epTestWorld& w, int timeoutMs, epTestOob** out) {
  epTestOob* o = new epTestOob();
  o->rank = w.rank;
  o->nranks = w.size;
  o->timeoutMs = timeoutMs;
  *out = o;
  if (w.size <= 1) return epSuccess;
  std::string host;
  int port;
  if (!oobAddress(&host, &port)) {
    fprintf(stderr, "[rank %d] oob: set EP_COMM_ID=host:port (or EP_TEST_OOB_ADDR)\n", w.rank);
    return epInvalidUsage;
  }
  struct sockaddr_storage sa;
  socklen_t salen;
  if (resolve(host, port, &sa, &salen) != 0) {
    fprintf(stderr, "[rank %d] oob: cannot resolve %s\n", w.rank, host.c_str());
    return epSystemError;
  }
  const long long deadline = nowMs() + timeoutMs;
  if (w.rank == 0) {
    int ls = socket(sa.ss_family, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ls < 0 || bind(ls, (struct sockaddr*)&sa, salen) != 0 || listen(ls, w.size) != 0) {
      fprintf(stderr, "[rank 0] oob: cannot listen on %s:%d: %s\n", host.c_str(), port, strerror(errno));
      if (ls >= 0) close(ls);
      return epSystemError;
    }
    o->peers.assign(w.size, -1);
    for (int got = 1; got < w.size;) {
      struct pollfd pfd = {ls, POLLIN, 0};
      long long left = deadline - nowMs();
      if (left <= 0) {
        std::string missing;
        for (int r = 1; r < w.size; r++)
          if (o->peers[r] < 0) missing += " " + std::to_string(r);
        fprintf(stderr, "[rank 0] oob: timeout waiting for ranks%s\n", missing.c_str());
        close(ls);
        return epTimeout;
      }
      if (poll(&pfd, 1, (int)std::min(left, 1000LL)) <= 0) continue;
      int fd = accept(ls, nullptr, nullptr);
      if (fd < 0) continue;
      uint32_t hello[2];
      if (ioAll(fd, hello, sizeof(hello), false, 5000) != epSuccess || hello[0] != kMagic || hello[1] == 0 ||
          (int)hello[1] >= w.size || o->peers[hello[1]] >= 0) {
        close(fd);  // a stray or duplicate connection
        continue;
      }
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      o->peers[hello[1]] = fd;
      got++;
    }
    close(ls);
    return epSuccess;
  }
  while (true) {
    int fd = socket(sa.ss_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr*)&sa, salen) == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      uint32_t hello[2] = {kMagic, (uint32_t)w.rank};
      if (ioAll(fd, hello, sizeof(hello), true, 5000) == epSuccess) {
        o->root = fd;
        return epSuccess;
      }
    }
    if (fd >= 0) close(fd);
    if (nowMs() > deadline) {
      fprintf(stderr, "[rank %d] oob: timeout connecting to %s:%d\n", w.rank, host.c_str(), port);
      return epTimeout;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

epResult_t epTestOobAllGather(epTestOob* o, void* data, size_t bytes) {
  if (o->nranks <= 1) return epSuccess;
  char* d = (char*)data;
  epResult_t r;
  if (o->rank == 0) {
    for (int p = 1; p < o->nranks; p++)
      if ((r = ioAll(o->peers[p], d + p * bytes, bytes, false, o->timeoutMs)) != epSuccess) return r;
    for (int p = 1; p < o->nranks; p++)
      if ((r = ioAll(o->peers[p], d, bytes * o->nranks, true, o->timeoutMs)) != epSuccess) return r;
    return epSuccess;
  }
  if ((r = ioAll(o->root, d + o->rank * bytes, bytes, true, o->timeoutMs)) != epSuccess) return r;
  return ioAll(o->root, d, bytes * o->nranks, false, o->timeoutMs);
}

epResult_t epTestOobBroadcast(epTestOob* o, void* data, size_t bytes, int root) {
  if (o->nranks <= 1) return epSuccess;
  std::vector<char> all(bytes * o->nranks);
  if (o->rank == root) memcpy(all.data() + root * bytes, data, bytes);
  epResult_t r = epTestOobAllGather(o, all.data(), bytes);
  if (r == epSuccess) memcpy(data, all.data() + root * bytes, bytes);
  return r;
}

epResult_t epTestOobBarrier(epTestOob* o) {
  std::vector<char> b(o->nranks, 1);
  return epTestOobAllGather(o, b.data(), 1);
}

epResult_t epTestOobAnyTrue(epTestOob* o, bool mine, bool* any) {
  long long s = 0;
  epResult_t r = epTestOobSum(o, mine ? 1 : 0, &s);
  *any = s != 0;
  return r;
}

epResult_t epTestOobSum(epTestOob* o, long long mine, long long* sum) {
  std::vector<long long> v(o->nranks, 0);
  v[o->rank] = mine;
  epResult_t r = epTestOobAllGather(o, v.data(), sizeof(long long));
  *sum = 0;
  for (long long x : v) *sum += x;
  return r;
}

void epTestOobDestroy(epTestOob* o) {
  if (!o) return;
  if (o->root >= 0) close(o->root);
  for (int fd : o->peers)
    if (fd >= 0) close(fd);
  delete o;
}
