/*************************************************************************
 * epcomm: Expert-parallel load balancing (EPLB), expert mapping and group-limited gating.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Four independent pieces (docs/eplb.md walks through them):
 *  1. epEplbRebalance: a host call that places R physical expert slots (the E
 *     logical experts plus R-E redundant replicas of the hottest ones) on P
 *     GPUs so that the per-GPU load is balanced. Pure function of its inputs:
 *     every rank computes the same plan.
 *  2. epMapLogicalToPhysical: a stream-ordered kernel that rewrites logical
 *     top-k ids into physical slot ids, spreading a hot expert's tokens over
 *     its replicas. Its output is a valid top-k tensor for dispatch, with R
 *     physical "experts" (slot p lives on GPU p / (R/P)).
 *  3. epGroupLimitedGating: DeepSeek-V3 routing (sigmoid, correction bias,
 *     group limit, optional node limit, top-k, normalised and scaled weights).
 *  4. Load statistics: epEplbAccumulateLoad adds per-expert token counts into
 *     a device table [L x E] of int64, epEplbAllReduceLoad sums a host copy of
 *     it across the ranks of a communicator.
 *
 * Conventions: layouts are row-major; "device" pointers are CUDA device (or
 * managed) memory; bad shapes and NULL pointers return epInvalidArgument with
 * the reason in epGetLastError(NULL).
 *************************************************************************/
#ifndef EPCOMM_EPLB_H_
#define EPCOMM_EPLB_H_

#include "epcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- Placement (host) */

/* Flags of epEplbRebalance (bitwise or). */
#define EP_EPLB_FLAG_NONE 0
/* Use the global policy even when G % N == 0 (e.g. decode, where only the
 * per-GPU balance matters because there is no NVLink forwarding). */
#define EP_EPLB_FLAG_FORCE_GLOBAL 1
/* Reproduce the upstream reference (deepseek-ai/EPLB) exactly, including its
 * flaw of putting two replicas of one expert on the same GPU. By default
 * epcomm never does that when it can be avoided, improves each packing by a
 * local search, and (when E % P == 0) also tries plans anchored on the
 * contiguous placement, keeping the one with the lowest max GPU load. */
#define EP_EPLB_FLAG_UPSTREAM_PACKING 2

/* Upper bound of the replica count of one expert, i.e. a safe `maxReplicas`
 * for epEplbRebalance: R - E + 1. */
epResult_t epEplbMaxReplicas(int numExperts, int numSlots, int* maxReplicas);

/* Computes the placement of every layer independently.
 *
 * Inputs:
 *   weight       [numLayers x numExperts] load of each logical expert (e.g. token
 *                counts summed over all ranks, or a moving average); finite, >= 0.
 *   numSlots     R: physical slots per layer; R >= E and R % numGpus == 0.
 *   numGroups    G: expert groups (contiguous id ranges of E/G); E % G == 0.
 *   numNodes     N; numGpus % N == 0.
 *   numGpus      P: GPUs of the expert-parallel group.
 *   The hierarchical policy (groups packed onto nodes, replication and packing
 *   within each node, so a token's node fan-out follows its groups) is used
 *   when G % N == 0, the global policy otherwise (or with FORCE_GLOBAL).
 *   Ties are broken by the lowest index, so the plan is deterministic.
 *
 * Outputs (host memory):
 *   phy2log      [numLayers x numSlots]: logical expert held by physical slot p.
 *                Slot p lives on GPU p / (R/P); GPU g is on node g / (P/N).
 *   log2phy      [numLayers x numExperts x maxReplicas] or NULL: the slots of each
 *                logical expert in replica-rank order, padded with -1.
 *   logcnt       [numLayers x numExperts] or NULL: replicas of each expert (>= 1).
 *   replicasUsed NULL or: the largest logcnt of the plan (the smallest
 *                maxReplicas that would have sufficed).
 *   maxReplicas  stride of log2phy; ignored when log2phy is NULL. Use
 *                epEplbMaxReplicas for a bound that always fits; a smaller value
 *                that the plan exceeds gives epInvalidArgument (the message names
 *                the value needed) and leaves log2phy unspecified.
 */
epResult_t epEplbRebalance(const double* weight, int numLayers, int numExperts, int numSlots, int numGroups,
                           int numNodes, int numGpus, int flags, int* phy2log, int* log2phy, int maxReplicas,
                           int* logcnt, int* replicasUsed);

/* ---------------------------------------------------------------- Logical -> physical mapping (device) */

typedef enum {
  /* Any replica, picked by a hash of (token, expert): spreads each expert's
   * tokens evenly over its replicas. */
  epMapSpread = 0,
  /* A replica on the token's own node when there is one (spread over those),
   * otherwise as epMapSpread. */
  epMapPreferLocalNode = 1,
  /* Own node first, then nodes this token already reaches, then the node that
   * hosts replicas of the most of its remaining experts: fewest distinct nodes
   * per token (least RDMA traffic). Ties as epMapSpread. */
  epMapFewestNodes = 2
} epMapPolicy_t;

typedef struct {
  int numExperts;   /* E: logical experts (ids in topk are in [-1, E)) */
  int numSlots;     /* R: physical slots (ids written are in [-1, R)) */
  int maxReplicas;  /* X: row stride of log2phy */
  int numRanks;     /* P: expert-parallel ranks; slot p is on rank p / (R/P) */
  int numNodes;     /* N: rank r is on node r / (P/N) */
  int rank;         /* the rank whose tokens these are (its node is "local") */
  epMapPolicy_t policy;
  /* Added to the token index before hashing, e.g. rank * maxTokensPerRank, so
   * that different ranks do not all pick the same replica for their token 0. */
  long long tokenOffset;
} epExpertMapDesc_t;

/* Error record written by epMapLogicalToPhysical when errorInfo != NULL. */
#define EP_MAP_ERR_NONE 0
#define EP_MAP_ERR_BAD_EXPERT_ID 1 /* token, slot, value = the id */
#define EP_MAP_ERR_BAD_TABLE 2     /* token, slot, value = expert whose logcnt/log2phy is invalid */

/* topkIdx, topkPhysIdx: [numTokens x topk] device arrays of idType (epInt32 or
 * epInt64); they may alias (in-place). -1 entries stay -1. log2phy [E x X] and
 * logcnt [E] are one layer of epEplbRebalance's outputs, copied to the device
 * as int32. An id outside [-1, E) or an invalid table row maps to -1 and, when
 * errorInfo (device int[4]: code, token, slot, value; zero it before the call)
 * is not NULL, one such error (the first to be detected) is recorded there. */
epResult_t epMapLogicalToPhysical(const void* topkIdx, void* topkPhysIdx, epDataType_t idType, int numTokens,
                                  int topk, const int* log2phy, const int* logcnt, const epExpertMapDesc_t* desc,
                                  int* errorInfo, cudaStream_t stream);

/* ---------------------------------------------------------------- Group-limited gating (device) */

#define EP_GATING_FLAG_NONE 0
/* The input already holds affinities (e.g. sigmoid or softmax outputs): no sigmoid is applied. */
#define EP_GATING_FLAG_INPUT_IS_SCORES 1
/* Do not divide the weights by the sum of the selected affinities. */
#define EP_GATING_FLAG_NO_RENORMALIZE 2

typedef struct {
  int numExperts;            /* E */
  int numGroups;             /* n_group: groups are contiguous ranges of E/n_group experts (1: none) */
  int topkGroups;            /* groups kept per token (== numGroups: no group limit) */
  int topk;                  /* K experts per token, 1..64 */
  float routedScalingFactor; /* multiplies the weights (DeepSeek-V3: 2.5) */
  /* Node limit: expert e lives on rank e / (E/numRanks), rank r on node
   * r / ranksPerNode. With maxNodes > 0 each token is restricted to the
   * maxNodes nodes of largest score (sum of the top max(1, K/maxNodes)
   * selection scores of the node's eligible experts). maxNodes == 0: no node
   * limit; numRanks/ranksPerNode are then only used for nodesPerTokenMax. */
  int numRanks;
  int ranksPerNode;
  int maxNodes;
  int flags; /* EP_GATING_FLAG_* */
} epGatingDesc_t;

/* For each token t:
 *   s_e = sigmoid(logits[t,e])   (the input itself with INPUT_IS_SCORES)
 *   c_e = s_e + bias[e]          (selection score; bias may be NULL)
 *   group score = sum of the top max(1, K/topkGroups) c_e of the group; keep the
 *   topkGroups best groups, mask the rest with -inf; apply the node limit the
 *   same way; topkIdx = the K largest c_e left, best first; weights = s_e /
 *   sum(selected s) * routedScalingFactor.
 * Ties go to the lower expert (group, node) index; NaN scores are never chosen.
 * If the limits leave fewer than K eligible experts, the extra slots get id -1
 * and weight 0.
 *
 * logits:   [numTokens x E] device, scoreType epFloat32 or epBfloat16.
 * bias:     [E] float device or NULL.
 * topkIdx:  [numTokens x K] device, idType epInt32 or epInt64.
 * weights:  [numTokens x K] float device.
 * nodesPerTokenMax: NULL or device int: the largest number of distinct nodes
 *   any token's experts span (requires numRanks > 0 and ranksPerNode > 0).
 * The results are bitwise reproducible on the host (the kernel uses only
 * correctly rounded operations). */
epResult_t epGroupLimitedGating(const void* logits, epDataType_t scoreType, const float* bias, int numTokens,
                                const epGatingDesc_t* desc, void* topkIdx, epDataType_t idType, float* weights,
                                int* nodesPerTokenMax, cudaStream_t stream);

/* ---------------------------------------------------------------- Load statistics */

/* loadRow[phy2log ? phy2log[i] : i] += counts[i] for i < numCounts, on `stream`.
 * counts: int32 device (e.g. the per-expert token counts dispatch returns, per
 * logical expert, or per physical slot together with that layer's phy2log);
 * loadRow: int64 device row of numExperts entries (one layer of an [L x E]
 * table). Without phy2log, numCounts must equal numExperts. */
epResult_t epEplbAccumulateLoad(const int* counts, int numCounts, const int* phy2log, int numExperts,
                                long long* loadRow, cudaStream_t stream);

/* Counts the routed tokens of each logical expert from a top-k tensor
 * ([numTokens x topk] device, epInt32/epInt64, -1 skipped) and adds them to
 * loadRow[E] (int64 device). Ids outside [-1, E) are ignored. */
epResult_t epEplbAccumulateTopk(const void* topkIdx, epDataType_t idType, int numTokens, int topk,
                                int numExperts, long long* loadRow, cudaStream_t stream);

/* Collective over the ranks of `comm` (host memory, blocking): global[i] =
 * sum over ranks of local[i], for i < count, summed in rank order. Every rank
 * must pass the same count. local and global may alias. */
epResult_t epEplbAllReduceLoad(epComm_t comm, const long long* local, long long* global, size_t count);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EPCOMM_EPLB_H_ */
