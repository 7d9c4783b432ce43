/*************************************************************************
 * epcomm: HT internode host plan (see inter_plan.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "internode/inter_plan.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "core/param.h"

namespace {
long long alignUp(long long v, long long a) { return (v + a - 1) / a * a; }
}  // namespace

epInterRec epInterDispatchRec(int xBytes, int scaleCols, int K, bool withX) {
  epInterRec r;
  r.xBytes = withX ? xBytes : 0;
  r.scaleCols = withX ? scaleCols : 0;
  r.K = K;
  r.scaleOff = r.xBytes;
  r.idxOff = r.scaleOff + r.scaleCols * 4;
  r.wOff = r.idxOff + K * 4;
  r.srcOff = r.wOff + K * 4;
  r.bytes = (int)alignUp(r.srcOff + 4, 16);
  return r;
}

epInterRec epInterCombineRec(int hidden, int K) {
  epInterRec r;
  r.xBytes = hidden * 4;
  r.scaleCols = 0;
  r.K = K;
  r.scaleOff = r.xBytes;
  r.idxOff = r.xBytes;
  r.wOff = r.xBytes;
  r.srcOff = r.wOff + K * 4;
  r.bytes = (int)alignUp(r.srcOff, 16);
  return r;
}

void epInterBufLayoutCompute(int nNodes, int Tcfg, int dRecMax, int cRecMax, epInterBufLayout* lay) {
  *lay = epInterBufLayout();
  lay->nNodes = nNodes;
  lay->Tcfg = Tcfg;
  lay->dRecMax = dRecMax;
  lay->cRecMax = cRecMax;
  long long off = 0;
  lay->sigOff = off;
  off = alignUp(off + 4LL * nNodes * 8, 128);
  lay->hdrSendOff = off;
  off += (long long)nNodes * EP_INTER_HDR_BYTES;
  lay->hdrRecvOff = off;
  off = alignUp(off + (long long)nNodes * EP_INTER_HDR_BYTES, 4096);
  lay->dRegion = alignUp((long long)Tcfg * dRecMax, 128);
  lay->cRegion = alignUp((long long)Tcfg * cRecMax, 128);
  lay->dSendOff = off;
  off += lay->dRegion * nNodes;
  lay->dRecvOff = off;
  off += lay->dRegion * nNodes;
  lay->cSendOff = off;
  off += lay->cRegion * nNodes;
  lay->cRecvOff = off;
  off += lay->cRegion * nNodes;
  lay->total = alignUp(off, 4096);
}

std::vector<epInterChunk> epInterPlanPuts(uint64_t bytes, uint32_t chunk) {
  std::vector<epInterChunk> v;
  if (chunk == 0) chunk = EP_INTER_PUT_CHUNK;
  for (uint64_t off = 0; off < bytes; off += chunk) v.push_back({off, (uint32_t)std::min<uint64_t>(chunk, bytes - off)});
  return v;
}

bool epInterPlacementBuild(int rank, int nranks, const std::vector<int>& rankNode, const std::vector<int>& rankLocal,
                           const std::vector<int>& nvlinkPeer, int maxG, epInterPlacement* pl, std::string* why) {
  char buf[256];
  auto fail = [&](const char* m) {
    if (why) *why = m;
    return false;
  };
  if (nranks < 1 || (int)rankNode.size() != nranks || (int)rankLocal.size() != nranks || rank < 0 || rank >= nranks)
    return fail("placement vectors do not match the rank count");
  if (nranks > EP_INTER_MAX_RANKS) {
    snprintf(buf, sizeof(buf), "%d ranks exceed the internode limit %d", nranks, EP_INTER_MAX_RANKS);
    return fail(buf);
  }
  const int N = *std::max_element(rankNode.begin(), rankNode.end()) + 1;
  if (N > EP_INTER_MAX_NODES) {
    snprintf(buf, sizeof(buf), "%d nodes exceed the internode limit %d", N, EP_INTER_MAX_NODES);
    return fail(buf);
  }
  std::vector<int> perNode(N, 0);
  for (int r = 0; r < nranks; r++) {
    if (rankNode[r] < 0) return fail("negative node index");
    perNode[rankNode[r]]++;
  }
  const int G = perNode[0];
  for (int m = 0; m < N; m++) {
    if (perNode[m] != G) {
      snprintf(buf, sizeof(buf), "node %d has %d ranks, node 0 has %d: internode HT needs the same rank count per node",
               m, perNode[m], G);
      return fail(buf);
    }
  }
  if (G > maxG) {
    snprintf(buf, sizeof(buf), "%d ranks per node exceed the NVLink-domain limit %d", G, maxG);
    return fail(buf);
  }
  pl->nNodes = N;
  pl->G = G;
  pl->R = nranks;
  pl->myNode = rankNode[rank];
  pl->myLocal = rankLocal[rank];
  pl->rankNode = rankNode;
  pl->rankLocal = rankLocal;
  pl->nodeRank.assign((size_t)N * G, -1);
  for (int r = 0; r < nranks; r++) {
    if (rankLocal[r] < 0 || rankLocal[r] >= G) return fail("local rank out of range");
    int& slot = pl->nodeRank[(size_t)rankNode[r] * G + rankLocal[r]];
    if (slot >= 0) return fail("two ranks share a (node, local rank) pair");
    slot = r;
  }
  for (int r = 0; r < nranks; r++) {
    if (rankNode[r] != pl->myNode || r == rank) continue;
    if (r >= (int)nvlinkPeer.size() || !nvlinkPeer[r]) {
      snprintf(buf, sizeof(buf), "rank %d cannot reach same-node rank %d over NVLink/P2P", rank, r);
      return fail(buf);
    }
  }
  return true;
}

epInterNodeLayout epInterNodeLayoutRef(const int64_t* topk, int T, int K, int E, const epInterPlacement& pl,
                                       int limit) {
  epInterNodeLayout o;
  const int N = pl.nNodes;
  const int L = E / pl.R;
  o.slot.assign((size_t)T * N, -1);
  o.nodeCount.assign(N, 0);
  o.nodesOfToken.assign(T, 0);
  for (int t = 0; t < T; t++) {
    uint32_t mask = 0;
    for (int k = 0; k < K; k++) {
      const int64_t e = topk[(size_t)t * K + k];
      if (e < -1 || e >= E) {
        if (o.firstBadId < 0) o.firstBadId = t;
        continue;
      }
      if (e >= 0) mask |= 1u << pl.rankNode[e / L];
    }
    for (int m = 0; m < N; m++)
      if (mask >> m & 1) o.slot[(size_t)t * N + m] = o.nodeCount[m]++;
    o.nodesOfToken[t] = __builtin_popcount(mask);
    if (limit > 0 && o.nodesOfToken[t] > limit && o.firstOverLimit < 0) o.firstOverLimit = t;
  }
  return o;
}

std::vector<int> epInterRowOrderRef(const std::vector<int>& vpOfRow, const std::vector<int>& rankPrefix,
                                    const epInterPlacement& pl, int Tcfg) {
  const int n = (int)vpOfRow.size();
  const long long Tpad = (long long)pl.nNodes * Tcfg;
  std::vector<long long> key(n);
  for (int i = 0; i < n; i++) {
    int j = 0;
    while (j + 1 < (int)rankPrefix.size() - 1 && i >= rankPrefix[j + 1]) j++;
    const long long p = vpOfRow[i] % Tpad;
    const int s = (int)(p / Tcfg), t = (int)(p % Tcfg);
    key[i] = (long long)pl.nodeRank[(size_t)s * pl.G + j] * Tcfg + t;
  }
  std::vector<int> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return key[a] < key[b]; });
  std::vector<int> dest(n);
  for (int d = 0; d < n; d++) dest[idx[d]] = d;
  return dest;
}

std::vector<int> epInterRowMapCounts(const std::vector<int>& vpOfRow, const std::vector<int>& rankPrefix,
                                     const epInterPlacement& pl, int Tcfg) {
  const int n = (int)vpOfRow.size(), G = pl.G, N = pl.nNodes;
  const long long Tpad = (long long)N * Tcfg;
  auto fwdOf = [&](int i) {
    int j = 0;
    while (j + 1 < G && i >= rankPrefix[j + 1]) j++;
    return j;
  };
  std::vector<int> cnt((size_t)G * N, 0), base((size_t)G * N, 0), first((size_t)G * N, 0), dest(n);
  for (int i = 0; i < n; i++) cnt[(size_t)fwdOf(i) * N + (int)((vpOfRow[i] % Tpad) / Tcfg)]++;
  int acc = 0;
  for (int r = 0; r < pl.R; r++) {
    const size_t js = (size_t)pl.rankLocal[r] * N + pl.rankNode[r];
    base[js] = acc;
    acc += cnt[js];
  }
  for (int j = 0; j < G; j++) {
    int f = rankPrefix[j];
    for (int s = 0; s < N; s++) {
      first[(size_t)j * N + s] = f;
      f += cnt[(size_t)j * N + s];
    }
  }
  for (int i = 0; i < n; i++) {
    const size_t js = (size_t)fwdOf(i) * N + (int)((vpOfRow[i] % Tpad) / Tcfg);
    dest[i] = base[js] + (i - first[js]);
  }
  return dest;
}

EP_PARAM(HtMaxNodesPerToken, "HT_MAX_NODES_PER_TOKEN", 0)
EP_PARAM(InternodeMaxHidden, "INTERNODE_MAX_HIDDEN", 0)

int epInterNodeLimit() { return (int)std::max<int64_t>(0, epParamHtMaxNodesPerToken()); }
int epInterMaxHidden() { return (int)std::max<int64_t>(0, epParamInternodeMaxHidden()); }
