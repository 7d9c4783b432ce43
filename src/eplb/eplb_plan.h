/*************************************************************************
 * epcomm: EPLB placement planner (host). Internal C++ interface behind
 * epEplbRebalance, shared with the unit tests and the ep-eplb tool.
 * SPDX-License-Identifier: Apache-2.0
 *
 * The algorithm (docs/eplb.md): greedy replication of the expert with the
 * largest load per replica, and LPT packing with a per-pack cardinality cap.
 * Hierarchical: groups -> nodes, then replication and packing inside each
 * node. Global: the same with one group and one node. Ties always go to the
 * lowest index, which makes the plan a pure function of the inputs. By
 * default (not upstream mode) duplicates on a GPU are avoided, packings are
 * refined by local search, and three more candidates compete, one of which
 * keeps the max GPU load within that of the placement without replicas by
 * construction (see planLayer).
 *************************************************************************/
#ifndef EP_EPLB_PLAN_H_
#define EP_EPLB_PLAN_H_

#include <vector>

#include "epcomm.h"

namespace ep {
namespace eplb {

struct PlanShape {
  int numExperts = 0; /* E */
  int numSlots = 0;   /* R */
  int numGroups = 1;  /* G */
  int numNodes = 1;   /* N */
  int numGpus = 1;    /* P */
};

struct PlanOptions {
  bool forceGlobal = false;
  /* false: reproduce the upstream packing exactly (duplicates on a GPU allowed). */
  bool avoidDuplicates = true;
  /* Swap-based local search after each greedy packing, lowering the max load. */
  bool refine = true;
};

/* One layer's plan. */
struct LayerPlan {
  std::vector<int> phy2log; /* [R] */
  std::vector<int> phyRank; /* [R] replica rank of each slot (0 = first replica) */
  std::vector<int> logcnt;  /* [E] */
  bool hierarchical = false;
};

/* Checks the shape rules (E % G, P % N, R % P, R >= E, positivity). On failure
 * returns epInvalidArgument and logs a WARN naming the rule (`fn` prefixes it). */
epResult_t validatePlanShape(const PlanShape& s, const char* fn);

/* Checks that every weight of the row is finite and >= 0 (layer is for the message). */
epResult_t validateWeights(const double* w, int numExperts, int layer, const char* fn);

/* Plans one layer; the shape must have passed validatePlanShape.
 *
 * Guarantee (default mode, E % P == 0): the max GPU load is never above
 * noReplicaMaxLoad (times 1 + kLoadBoundRelTol, for rounding only). The plan is
 * chosen among planCandidates: admissible plans (within the bound) first, then
 * those without avoidable duplicates (two replicas of an expert on one GPU
 * while a GPU of its domain lacks it), then the lowest max load, then the
 * earliest candidate. The last candidate is always admissible, so the winner
 * is too. The load bound wins over the duplicate rule: a duplicate wastes a
 * slot but adds no load, and sometimes no duplicate-free plan meets the bound. */
void planLayer(const double* w, const PlanShape& s, const PlanOptions& opt, LayerPlan* out);

/* Relative tolerance of the bound: loads are sums of w/cnt in different orders. */
constexpr double kLoadBoundRelTol = 1e-12;

/* Max GPU load of the placement without replicas: expert e on GPU e / (E/P).
 * E % P == 0 required. */
double noReplicaMaxLoad(const double* w, const PlanShape& s);

/* The candidate plans planLayer chooses from, in order: EPLB; the same
 * replication anchored on the contiguous placement; incremental; bound-keeping
 * (within noReplicaMaxLoad by construction). Upstream mode or E % P != 0: EPLB only. */
void planCandidates(const double* w, const PlanShape& s, const PlanOptions& opt, std::vector<LayerPlan>* out);

/* log2phy row-block [E x maxReplicas] of a layer plan, -1 padded. Returns the
 * largest replica count; entries beyond maxReplicas are not written. */
int fillLog2Phy(const LayerPlan& plan, int numExperts, int maxReplicas, int* log2phy);

/* Per-GPU load of a placement: each slot carries w[e]/logcnt[e]. gpuLoad[P]. */
void gpuLoads(const double* w, const int* phy2log, const int* logcnt, int numSlots, int numGpus,
              std::vector<double>* gpuLoad);

/* Per-GPU load without EPLB: expert e on GPU e / (E/P) (E % P == 0 required). */
void gpuLoadsUnbalanced(const double* w, int numExperts, int numGpus, std::vector<double>* gpuLoad);

/* Building blocks, exposed for tests. ------------------------------------------------ */

/* Puts n items into m packs of n/m items each (n % m == 0): heaviest first
 * (stable), each into the lightest non-full pack (lowest index on ties). With
 * `keys` (may be null), packs that already hold an item of the same key are
 * avoided when possible, and leftover duplicates are then removed by swaps
 * (the one keeping the heavier of the two packs lightest) whenever a pack
 * lacking that key exists. With `refine`, a swap-based local search then
 * lowers the heaviest pack while it can (never adding a duplicate key). */
void balancedPacking(const std::vector<double>& w, int m, const std::vector<int>* keys, bool refine,
                     std::vector<int>* pack, std::vector<int>* rank);

/* Replicates n experts into r >= n slots: slots 0..n-1 are the experts, each
 * extra slot goes to the expert with the largest w/cnt (lowest index on ties). */
void replicateExperts(const std::vector<double>& w, int r, std::vector<int>* phy2log, std::vector<int>* phyRank,
                      std::vector<int>* cnt);

}  // namespace eplb
}  // namespace ep

#endif  // EP_EPLB_PLAN_H_
