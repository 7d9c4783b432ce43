/*************************************************************************
 * epcomm: GID selection (see ib_gid.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/ib/ib_gid.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/debug.h"

namespace {

bool isZero(const uint8_t g[16]) {
  for (int i = 0; i < 16; i++)
    if (g[i]) return false;
  return true;
}
bool isLinkLocal(const uint8_t g[16]) { return g[0] == 0xfe && (g[1] & 0xc0) == 0x80; }
bool isV4Mapped(const uint8_t g[16]) {
  for (int i = 0; i < 10; i++)
    if (g[i]) return false;
  return g[10] == 0xff && g[11] == 0xff;
}

// Lower is better.
int rank(const epIbGidEntry& e, int wanted) {
  int r = 0;
  if (e.roceVersion != wanted) r += 100;
  if (isLinkLocal(e.raw)) r += 10;
  else if (!isV4Mapped(e.raw)) r += 1;
  return r;
}

}  // namespace

std::string epIbGidString(const uint8_t raw[16]) {
  char buf[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, raw, buf, sizeof(buf)) == nullptr) return "?";
  return buf;
}

epResult_t epIbChooseGid(const std::vector<epIbGidEntry>& table, int linkLayer, int forcedIndex, int roceVersion,
                         int* index, std::string* why) {
  if (forcedIndex >= 0) {
    for (auto& e : table) {
      if (e.index != forcedIndex) continue;
      if (linkLayer == IBV_LINK_LAYER_ETHERNET && isZero(e.raw)) break;
      *index = forcedIndex;
      return epSuccess;
    }
    *why = "EP_IB_GID_INDEX=" + std::to_string(forcedIndex) + " does not name a valid GID of the port";
    return epInvalidArgument;
  }
  if (linkLayer != IBV_LINK_LAYER_ETHERNET) {
    *index = 0;
    return epSuccess;
  }
  int best = -1, bestRank = 1 << 30;
  for (auto& e : table) {
    if (isZero(e.raw)) continue;
    int r = rank(e, roceVersion);
    if (r < bestRank) {
      bestRank = r;
      best = e.index;
    }
  }
  if (best < 0) {
    *why = "the RoCE port has no valid GID (is an IP address configured on its netdev?)";
    return epNotSupported;
  }
  if (bestRank >= 100)
    EP_INFO(EP_LOG_NET, "NET/IB: no RoCE v%d GID, using index %d of another version", roceVersion, best);
  *index = best;
  return epSuccess;
}

epResult_t epIbReadGids(const epIbvFns* ibv, struct ibv_context* ctx, const std::string& sysfsRoot,
                        const std::string& dev, int port, int tblLen, std::vector<epIbGidEntry>* out) {
  out->clear();
  if (tblLen > 1024) tblLen = 1024;
  for (int i = 0; i < tblLen; i++) {
    union ibv_gid gid;
    memset(&gid, 0, sizeof(gid));
    if (ibv->queryGid(ctx, (uint8_t)port, i, &gid) != 0) continue;
    epIbGidEntry e;
    e.index = i;
    memcpy(e.raw, gid.raw, 16);
    std::ifstream f(sysfsRoot + "/class/infiniband/" + dev + "/ports/" + std::to_string(port) +
                    "/gid_attrs/types/" + std::to_string(i));
    std::string type;
    if (f && std::getline(f, type)) {
      if (type.find("v2") != std::string::npos) e.roceVersion = 2;
      else if (type.find("v1") != std::string::npos) e.roceVersion = 1;
    }
    out->push_back(e);
  }
  return epSuccess;
}
