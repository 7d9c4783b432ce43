/*************************************************************************
 * epcomm: which GID a RoCE (or routed IB) QP uses.
 * SPDX-License-Identifier: Apache-2.0
 *
 * InfiniBand: EP_IB_GID_INDEX if set, else 0 (the port GID; the LID does
 * the routing). RoCE: EP_IB_GID_INDEX if set (it must name a valid entry),
 * else the first entry that is valid (non-zero), of the wanted RoCE version
 * (EP_IB_ROCE_VERSION, default 2: routable UDP/IP), and an IPv4-mapped
 * address (::ffff:a.b.c.d) before a global IPv6 one; link-local IPv6
 * (fe80::/10) entries are last resorts, as they do not route. When no entry
 * has the wanted version, another version is used with an INFO line.
 *************************************************************************/
#ifndef EP_TRANSPORT_IB_GID_H_
#define EP_TRANSPORT_IB_GID_H_

#include <cstdint>
#include <string>
#include <vector>

#include "epcomm.h"
#include "transports/ib/ibvwrap.h"

struct epIbGidEntry {
  int index = 0;
  uint8_t raw[16] = {0};
  int roceVersion = 0;  /* 1, 2, or 0 when sysfs does not say */
};

/* Pure choice. forcedIndex < 0: automatic. */
epResult_t epIbChooseGid(const std::vector<epIbGidEntry>& table, int linkLayer, int forcedIndex, int roceVersion,
                         int* index, std::string* why);

/* Reads the port's GID table (verbs) and the RoCE type of each entry (sysfs). */
epResult_t epIbReadGids(const epIbvFns* ibv, struct ibv_context* ctx, const std::string& sysfsRoot,
                        const std::string& dev, int port, int tblLen, std::vector<epIbGidEntry>* out);

/* "fe80::...": printable form for logs. */
std::string epIbGidString(const uint8_t raw[16]);

#endif  // EP_TRANSPORT_IB_GID_H_
