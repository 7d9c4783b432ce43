/*************************************************************************
 * epcomm: HT internode (v1) -- the host-side plan: record formats, the
 * layout of the registered network window, put chunking, the node
 * placement tables, the per-node layout reference and the gate.
 * Pure host code (no CUDA calls), unit-tested on CPU (tests/unit/internode_*).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Index spaces (docs/internode.md has the picture):
 *   N nodes of G ranks, R = N * G; Tcfg = config.htMaxTokensPerRank.
 *   Token t of source (node s, local l) travels once over RDMA to the
 *   forwarder (node m, local l) when it has an expert on node m. There it
 *   is token p = s * Tcfg + t of the padded space Tpad = N * Tcfg, and it is
 *   split into G virtual tokens vp = j * Tpad + p, one per local rank j of
 *   node m, each routed to j's experts only (all -1 if j holds none). The
 *   intranode kernels run over the node's G ranks on Tvirt = G * Tpad
 *   virtual tokens: each virtual token reaches at most one rank, so the
 *   intranode combine returns every holder's row unreduced (exact) and the
 *   forwarder sums them in fp32: one BF16 rounding per output element, as
 *   intranode.
 *************************************************************************/
#ifndef EP_INTERNODE_INTER_PLAN_H_
#define EP_INTERNODE_INTER_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#if defined(__CUDACC__)
#define EP_INTER_HD __host__ __device__ inline
#else
#define EP_INTER_HD inline
#endif

#define EP_INTER_MAX_NODES 32   /* a token's node set is a 32-bit mask */
#define EP_INTER_MAX_RANKS 1024 /* placement tables passed to kernels by value */
#define EP_INTER_HDR_BYTES 64   /* per-node header slot (count) */
#define EP_INTER_PUT_CHUNK (1u << 20) /* bytes per put descriptor (bounded per-op size on IB) */
#define EP_INTER_REC_TOPK 32    /* top-k capacity a dispatch record is sized for */
#define EP_INTER_HT_CHANNELS 4  /* net channels internode HT posts on (per destination node: m % channels) */
#define EP_INTER_LL_CHANNELS 4  /* net channels reserved for LL over RDMA (epNetInit: the first user sizes it) */

/* Signal words (uint64) at the start of the window, [4][N]. */
enum epInterSig { EP_INTER_SIG_DDATA = 0, EP_INTER_SIG_DACK = 1, EP_INTER_SIG_CDATA = 2, EP_INTER_SIG_CACK = 3 };

/* Dispatch record: [x | scales | top-k ids | weights | src idx], 16-byte multiple.
 * withX = false (the notify's routing-only phase): ids | weights | src idx. */
struct epInterRec {
  int xBytes, scaleCols, K;
  int scaleOff, idxOff, wOff, srcOff;
  int bytes;
};
epInterRec epInterDispatchRec(int xBytes, int scaleCols, int K, bool withX);
/* Combine record: fp32 partial row [hidden] | K fp32 weights. */
epInterRec epInterCombineRec(int hidden, int K);

/* Offsets inside this rank's registered window (identical on every rank). */
struct epInterBufLayout {
  int nNodes, Tcfg;
  long long sigOff;      /* [4][N] uint64 signal words */
  long long hdrSendOff;  /* [N] header slots this rank sends from */
  long long hdrRecvOff;  /* [N] header slots source nodes write */
  long long dRegion;     /* bytes of one node's dispatch region: Tcfg * dRecMax */
  long long cRegion;     /* bytes of one node's combine region: Tcfg * cRecMax */
  long long dSendOff, dRecvOff, cSendOff, cRecvOff; /* each [N] regions */
  long long total;
  int dRecMax, cRecMax;
};
void epInterBufLayoutCompute(int nNodes, int Tcfg, int dRecMax, int cRecMax, epInterBufLayout* lay);
/* Signal slot (8-byte index into the window) of word `which` for node `node`. */
EP_INTER_HD uint32_t epInterSigSlot(const epInterBufLayout& lay, int which, int node) {
  return (uint32_t)(lay.sigOff / 8 + which * lay.nNodes + node);
}

/* Splits a put of `bytes` into descriptors of at most `chunk` bytes. */
struct epInterChunk {
  uint64_t off;
  uint32_t bytes;
};
std::vector<epInterChunk> epInterPlanPuts(uint64_t bytes, uint32_t chunk);

/* Placement: what kernels need to map experts and peers. */
struct epInterPlacement {
  int nNodes = 0, G = 0, R = 0;
  int myNode = 0, myLocal = 0;
  std::vector<int> rankNode, rankLocal; /* [R] */
  std::vector<int> nodeRank;            /* [N * G]: rank of (node, local) */
};
/* Builds and validates the placement (every node the same rank count G <= maxG,
 * N <= EP_INTER_MAX_NODES, R <= EP_INTER_MAX_RANKS, same-node ranks NVLink
 * peers). Returns false with a reason. */
bool epInterPlacementBuild(int rank, int nranks, const std::vector<int>& rankNode, const std::vector<int>& rankLocal,
                           const std::vector<int>& nvlinkPeer, int maxG, epInterPlacement* pl, std::string* why);

/* Sub-expert id on the node of `dstNode` (-1 if expert e is not there):
 * local rank of e's holder * L + e % L. */
inline int epInterSubExpert(const epInterPlacement& pl, int L, int64_t e, int dstNode) {
  if (e < 0 || e >= (int64_t)pl.R * L) return -1;
  const int holder = (int)(e / L);
  if (pl.rankNode[holder] != dstNode) return -1;
  return pl.rankLocal[holder] * L + (int)(e % L);
}

/* Host reference of the per-node layout (what the layout kernel computes). */
struct epInterNodeLayout {
  std::vector<int> slot;       /* [T x N] position of t among tokens sent to node m, -1 if not sent */
  std::vector<int> nodeCount;  /* [N] */
  std::vector<int> nodesOfToken; /* [T] */
  int firstOverLimit = -1;     /* first token touching more than `limit` nodes (-1: none) */
  int firstBadId = -1;         /* first token with an id outside [-1, E) (ignored as -1) */
};
epInterNodeLayout epInterNodeLayoutRef(const int64_t* topk, int T, int K, int E, const epInterPlacement& pl,
                                       int limit);

/* Where row `i` of the intranode dispatch (virtual token vp from forwarder j)
 * ends in the user's output: rows are ordered by source rank (= rank of
 * (p / Tcfg, j)), then source token. Host reference of the map kernel. */
std::vector<int> epInterRowOrderRef(const std::vector<int>& vpOfRow, const std::vector<int>& rankPrefix,
                                    const epInterPlacement& pl, int Tcfg);

/* The same map computed the way rowMapKernel does it (counts per (forwarder,
 * source node), bases in source-rank order, offsets inside each run): must
 * equal epInterRowOrderRef whenever each forwarder's rows ascend in p. */
std::vector<int> epInterRowMapCounts(const std::vector<int>& vpOfRow, const std::vector<int>& rankPrefix,
                                     const epInterPlacement& pl, int Tcfg);

/* EP_HT_MAX_NODES_PER_TOKEN: node-limited routing bound (0: no limit). */
int epInterNodeLimit();
/* EP_INTERNODE_MAX_HIDDEN: hidden size the internode buffers are sized for (0: the first call's). */
int epInterMaxHidden();

#endif  // EP_INTERNODE_INTER_PLAN_H_
