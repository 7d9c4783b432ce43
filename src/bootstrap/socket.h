/*************************************************************************
 * epcomm: TCP helpers for the bootstrap. Every blocking step takes an
 * absolute deadline (epNowMs() based), so nothing here can hang.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Return codes: epTimeout when the deadline passed, epRemoteError when the
 * peer closed the connection, epSystemError for any other failure (with a
 * WARN). Timeouts and EOF are NOT logged here: the caller knows which rank
 * was expected and says so.
 *************************************************************************/
#ifndef EP_BOOTSTRAP_SOCKET_H_
#define EP_BOOTSTRAP_SOCKET_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "epcomm.h"

union epSockAddr {
  struct sockaddr sa;
  struct sockaddr_in sin;
  struct sockaddr_in6 sin6;
};

/* Monotonic milliseconds. */
int64_t epNowMs();

std::string epSockAddrStr(const epSockAddr& a);
int epSockAddrPort(const epSockAddr& a);
bool epSockAddrIsLoopback(const epSockAddr& a);

/* "host:port", "[v6addr]:port" or "v4addr:port"; host names are resolved. */
epResult_t epSockParseHostPort(const char* s, epSockAddr* out);

/* The address this process listens on. EP_SOCKET_IFNAME (name_filter.h grammar)
 * selects the interface; otherwise the first UP interface that is not
 * loopback/docker/virbr, else loopback. `loopbackOnly` forces 127.0.0.1
 * (single-process communicators). Port is 0. */
epResult_t epSockFindInterface(bool loopbackOnly, epSockAddr* out, std::string* ifName);

/* Binds and listens on `addr` (port 0: any; the chosen port is written back).
 * EADDRINUSE is retried until `deadline` (a fixed EP_COMM_ID port may still be
 * held by the previous communicator's root). */
epResult_t epSockListen(epSockAddr* addr, int64_t deadline, int* fd);

/* Connects, retrying refused/unreachable until `deadline`. */
epResult_t epSockConnect(const epSockAddr& addr, int64_t deadline, int* fd);
/* Waits for one connection until `deadline`. */
epResult_t epSockAccept(int listenFd, int64_t deadline, int* fd, epSockAddr* peer);

epResult_t epSockSend(int fd, const void* data, size_t bytes, int64_t deadline);
epResult_t epSockRecv(int fd, void* data, size_t bytes, int64_t deadline);

void epSockClose(int* fd);

#endif  // EP_BOOTSTRAP_SOCKET_H_
