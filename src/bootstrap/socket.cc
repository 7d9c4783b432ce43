/*************************************************************************
 * epcomm: TCP helpers (see socket.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "bootstrap/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/checks.h"
#include "core/name_filter.h"
#include "core/param.h"

int64_t epNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string epSockAddrStr(const epSockAddr& a) {
  char host[INET6_ADDRSTRLEN] = "?";
  char out[INET6_ADDRSTRLEN + 16];
  if (a.sa.sa_family == AF_INET) {
    inet_ntop(AF_INET, &a.sin.sin_addr, host, sizeof(host));
    snprintf(out, sizeof(out), "%s:%d", host, ntohs(a.sin.sin_port));
  } else if (a.sa.sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &a.sin6.sin6_addr, host, sizeof(host));
    snprintf(out, sizeof(out), "[%s]:%d", host, ntohs(a.sin6.sin6_port));
  } else {
    snprintf(out, sizeof(out), "<no address>");
  }
  return out;
}

int epSockAddrPort(const epSockAddr& a) {
  return a.sa.sa_family == AF_INET ? ntohs(a.sin.sin_port) : a.sa.sa_family == AF_INET6 ? ntohs(a.sin6.sin6_port) : -1;
}

bool epSockAddrIsLoopback(const epSockAddr& a) {
  if (a.sa.sa_family == AF_INET) return (ntohl(a.sin.sin_addr.s_addr) >> 24) == 127;
  if (a.sa.sa_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&a.sin6.sin6_addr);
  return false;
}

static socklen_t addrLen(const epSockAddr& a) {
  return a.sa.sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

epResult_t epSockParseHostPort(const char* s, epSockAddr* out) {
  std::string str(s ? s : "");
  std::string host, port;
  if (!str.empty() && str[0] == '[') {
    size_t close = str.find(']');
    if (close == std::string::npos || close + 1 >= str.size() || str[close + 1] != ':') goto bad;
    host = str.substr(1, close - 1);
    port = str.substr(close + 2);
  } else {
    size_t colon = str.rfind(':');
    if (colon == std::string::npos || colon == 0) goto bad;
    host = str.substr(0, colon);
    port = str.substr(colon + 1);
  }
  {
    char* end = nullptr;
    long p = strtol(port.c_str(), &end, 10);
    if (port.empty() || *end != '\0' || p <= 0 || p > 65535) goto bad;
    struct addrinfo hints, *res = nullptr;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || res == nullptr) {
      EP_WARN("Bootstrap: cannot resolve host '%s' of '%s': %s", host.c_str(), s, gai_strerror(rc));
      return epInvalidArgument;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (out->sa.sa_family == AF_INET) out->sin.sin_port = htons((uint16_t)p);
    else out->sin6.sin6_port = htons((uint16_t)p);
    return epSuccess;
  }
bad:
  EP_WARN("Bootstrap: '%s' is not host:port (examples: 10.0.0.1:29500, [fe80::1]:29500, node01:29500)", s ? s : "(null)");
  return epInvalidArgument;
}

epResult_t epSockFindInterface(bool loopbackOnly, epSockAddr* out, std::string* ifName) {
  memset(out, 0, sizeof(*out));
  if (loopbackOnly) {
    out->sin.sin_family = AF_INET;
    out->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ifName) *ifName = "lo";
    return epSuccess;
  }
  const char* spec = epGetEnv("EP_SOCKET_IFNAME");
  epNameFilter user = epNameFilter::parse(spec);
  epNameFilter avoid = epNameFilter::parse("^docker,lo,virbr");
  struct ifaddrs* list = nullptr;
  SYSCHECK(getifaddrs(&list), "getifaddrs");
  // Pass 0: preferred interfaces (IPv4 first, then IPv6). Pass 1: anything allowed.
  bool found = false;
  for (int pass = 0; pass < 2 && !found; pass++) {
    for (int fam : {AF_INET, AF_INET6}) {
      for (struct ifaddrs* it = list; it && !found; it = it->ifa_next) {
        if (!it->ifa_addr || it->ifa_addr->sa_family != fam || !(it->ifa_flags & IFF_UP)) continue;
        if (spec ? !user.matches(it->ifa_name) : (pass == 0 && !avoid.matches(it->ifa_name))) continue;
        if (fam == AF_INET6) {
          // Link-local v6 needs a scope id on every peer; skip it.
          auto* s6 = reinterpret_cast<sockaddr_in6*>(it->ifa_addr);
          if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr)) continue;
        }
        memcpy(&out->sa, it->ifa_addr, fam == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
        if (ifName) *ifName = it->ifa_name;
        found = true;
      }
      if (found) break;
    }
    if (spec) break;  // the user's choice is final
  }
  freeifaddrs(list);
  if (!found) {
    if (spec) {
      EP_WARN("Bootstrap: no UP interface matches EP_SOCKET_IFNAME=%s. HINT: list interfaces with 'ip addr'", spec);
      return epInvalidArgument;
    }
    return epSockFindInterface(true, out, ifName);
  }
  if (out->sa.sa_family == AF_INET) out->sin.sin_port = 0;
  else out->sin6.sin6_port = 0;
  return epSuccess;
}

static void setCommonOpts(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fcntl(fd, F_SETFD, FD_CLOEXEC);
}

epResult_t epSockListen(epSockAddr* addr, int64_t deadline, int* fd) {
  int s = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    EP_WARN("Bootstrap: socket() failed: %s", strerror(errno));
    return epSystemError;
  }
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  while (bind(s, &addr->sa, addrLen(*addr)) != 0) {
    if (errno == EADDRINUSE && epNowMs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    int e = errno;
    EP_WARN("Bootstrap: cannot bind %s: %s%s", epSockAddrStr(*addr).c_str(), strerror(e),
            e == EADDRNOTAVAIL ? ". HINT: the EP_COMM_ID host must be an address of rank 0's machine" : "");
    close(s);
    return e == EADDRINUSE ? epTimeout : epSystemError;
  }
  if (listen(s, 1024) != 0) {
    EP_WARN("Bootstrap: listen on %s failed: %s", epSockAddrStr(*addr).c_str(), strerror(errno));
    close(s);
    return epSystemError;
  }
  socklen_t len = sizeof(*addr);
  getsockname(s, &addr->sa, &len);
  *fd = s;
  return epSuccess;
}

// Waits for `events` on fd until deadline: 1 ready, 0 timeout, -1 error.
static int waitFd(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - epNowMs();
    if (left <= 0) return 0;
    struct pollfd p = {fd, events, 0};
    int rc = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
    if (rc > 0) return 1;
    if (rc < 0 && errno != EINTR) return -1;
  }
}

epResult_t epSockConnect(const epSockAddr& addr, int64_t deadline, int* fd) {
  int sleepMs = 5;
  for (;;) {
    int s = socket(addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) {
      EP_WARN("Bootstrap: socket() failed: %s", strerror(errno));
      return epSystemError;
    }
    int rc = connect(s, &addr.sa, addrLen(addr));
    int err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      int w = waitFd(s, POLLOUT, deadline);
      if (w == 1) {
        socklen_t l = sizeof(err);
        getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &l);
      } else {
        err = w == 0 ? ETIMEDOUT : errno;
      }
    }
    if (err == 0) {
      fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
      setCommonOpts(s);
      *fd = s;
      return epSuccess;
    }
    close(s);
    bool retry = err == ECONNREFUSED || err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH ||
                 err == ECONNRESET || err == EAGAIN;
    if (!retry) {
      EP_WARN("Bootstrap: connect to %s failed: %s", epSockAddrStr(addr).c_str(), strerror(err));
      return epSystemError;
    }
    if (epNowMs() >= deadline) return epTimeout;
    std::this_thread::sleep_for(std::chrono::milliseconds(sleepMs));
    if (sleepMs < 100) sleepMs *= 2;
  }
}

epResult_t epSockAccept(int listenFd, int64_t deadline, int* fd, epSockAddr* peer) {
  for (;;) {
    int w = waitFd(listenFd, POLLIN, deadline);
    if (w == 0) return epTimeout;
    if (w < 0) {
      EP_WARN("Bootstrap: poll on listening socket failed: %s", strerror(errno));
      return epSystemError;
    }
    socklen_t len = sizeof(*peer);
    int s = accept4(listenFd, &peer->sa, &len, SOCK_CLOEXEC);
    if (s >= 0) {
      setCommonOpts(s);
      *fd = s;
      return epSuccess;
    }
    if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
    EP_WARN("Bootstrap: accept failed: %s", strerror(errno));
    return epSystemError;
  }
}

epResult_t epSockSend(int fd, const void* data, size_t bytes, int64_t deadline) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = send(fd, p, bytes, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      bytes -= (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      int w = waitFd(fd, POLLOUT, deadline);
      if (w == 0) return epTimeout;
      if (w < 0) return epSystemError;
      continue;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return epRemoteError;
    EP_WARN("Bootstrap: send failed: %s", strerror(errno));
    return epSystemError;
  }
  return epSuccess;
}

epResult_t epSockRecv(int fd, void* data, size_t bytes, int64_t deadline) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    ssize_t n = recv(fd, p, bytes, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      bytes -= (size_t)n;
      continue;
    }
    if (n == 0) return epRemoteError;  // orderly shutdown by the peer
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      int w = waitFd(fd, POLLIN, deadline);
      if (w == 0) return epTimeout;
      if (w < 0) return epSystemError;
      continue;
    }
    if (errno == ECONNRESET) return epRemoteError;
    EP_WARN("Bootstrap: recv failed: %s", strerror(errno));
    return epSystemError;
  }
  return epSuccess;
}

void epSockClose(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}
