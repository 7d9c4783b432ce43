/*************************************************************************
 * epcomm: bootstrap wire formats. Bump EP_BOOTSTRAP_WIRE when any struct
 * here changes: a peer speaking another version is refused with a message.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Phases of epBootstrapInit:
 *   1. every rank connects to the ROOT (the address in the unique id) and sends
 *      a RootHello; the root waits for all ranks (or names the missing ones
 *      after the timeout) and answers each with a RootReply carrying rank 0's
 *      HUB address;
 *   2. ranks 1..n-1 connect to the hub (a listener owned by rank 0) with a
 *      HubHello; rank 0 answers every one with a READY (or ERROR) Frame.
 * Afterwards every collective is a star through rank 0: each rank sends one
 * DATA Frame, rank 0 answers each with one DATA Frame (or ERROR / ABORT).
 *************************************************************************/
#ifndef EP_BOOTSTRAP_WIRE_H_
#define EP_BOOTSTRAP_WIRE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "bootstrap/socket.h"

#define EP_BOOTSTRAP_WIRE 1u

/* The content of epUniqueId.internal. */
struct epBootstrapHandle {
  uint64_t magic;    /* random, or derived from EP_COMM_ID: proves a connection belongs to this comm */
  uint32_t wire;     /* EP_BOOTSTRAP_WIRE */
  uint32_t flags;    /* EP_BS_ROOT_AT_RANK0 */
  epSockAddr root;   /* where the root listens */
};
#define EP_BS_ROOT_AT_RANK0 1u /* EP_COMM_ID: rank 0 starts the root inside epCommInitRank */

struct epRootHello {
  uint64_t magic;
  uint32_t wire;
  int32_t rank;
  int32_t nranks;
  int32_t timeoutMs; /* the root waits this long after the first arrival */
  epSockAddr hub;    /* meaningful from rank 0 only */
};

struct epRootReply {
  int32_t code;      /* epResult_t: epSuccess, or why this rank (or the comm) was refused */
  int32_t nranks;
  epSockAddr hub;
  char msg[256];
};

struct epHubHello {
  uint64_t magic;
  uint32_t wire;
  int32_t rank;
  int32_t nranks;
  int32_t pad;
};

enum epFrameType : uint32_t { EP_FRAME_DATA = 1, EP_FRAME_ERROR = 2, EP_FRAME_ABORT = 3, EP_FRAME_READY = 4 };

/* Header of every message after the handshake; `bytes` of payload follow
 * (the text of an ERROR, the data of a DATA frame). */
struct epFrame {
  uint32_t type;
  uint32_t seq;     /* collective sequence number: catches ranks calling collectives out of order */
  uint64_t bytes;
  int32_t code;     /* ERROR: the epResult_t to return */
  int32_t origin;   /* ABORT/ERROR: the rank where it started */
};

/* "2,5,7" (first 16, then a count): how missing ranks are named in errors. */
inline std::string epRankList(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size(); i++) {
    if (i) s += ",";
    if (i == 16) {
      s += "... (" + std::to_string(ranks.size()) + " in all)";
      break;
    }
    s += std::to_string(ranks[i]);
  }
  return s;
}

#endif  // EP_BOOTSTRAP_WIRE_H_
