/*************************************************************************
 * epcomm: epEplbRebalance and epEplbMaxReplicas (public C API over eplb_plan).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <algorithm>
#include <cstring>

#include "core/checks.h"
#include "eplb/eplb_plan.h"

#include "eplb/eplb_internal.h"

EP_API epResult_t epEplbMaxReplicas(int numExperts, int numSlots, int* maxReplicas) {
  EP_PTR_CHECK(maxReplicas, "epEplbMaxReplicas");
  EP_ARG_CHECK(numExperts > 0 && numSlots >= numExperts,
               "epEplbMaxReplicas: need 0 < numExperts <= numSlots, got E=%d R=%d", numExperts, numSlots);
  *maxReplicas = numSlots - numExperts + 1;
  return epSuccess;
}

EP_API epResult_t epEplbRebalance(const double* weight, int numLayers, int numExperts, int numSlots, int numGroups,
                                  int numNodes, int numGpus, int flags, int* phy2log, int* log2phy, int maxReplicas,
                                  int* logcnt, int* replicasUsed) {
  static const char* fn = "epEplbRebalance";
  EP_ARG_CHECK(numLayers >= 0, "%s: numLayers must be >= 0, got %d", fn, numLayers);
  EP_ARG_CHECK((flags & ~(EP_EPLB_FLAG_FORCE_GLOBAL | EP_EPLB_FLAG_UPSTREAM_PACKING)) == 0,
               "%s: unknown flags 0x%x", fn, flags);
  ep::eplb::PlanShape shape;
  shape.numExperts = numExperts;
  shape.numSlots = numSlots;
  shape.numGroups = numGroups;
  shape.numNodes = numNodes;
  shape.numGpus = numGpus;
  EPCHECK(ep::eplb::validatePlanShape(shape, fn));
  if (numLayers > 0) {
    EP_PTR_CHECK(weight, fn);
    EP_PTR_CHECK(phy2log, fn);
  }
  if (log2phy != nullptr)
    EP_ARG_CHECK(maxReplicas >= 1, "%s: maxReplicas must be >= 1 when log2phy is given, got %d", fn, maxReplicas);
  // Validate every layer before writing anything, so a bad table leaves the outputs untouched.
  for (int l = 0; l < numLayers; l++) EPCHECK(ep::eplb::validateWeights(weight + (size_t)l * numExperts, numExperts, l, fn));

  ep::eplb::PlanOptions opt;
  opt.forceGlobal = (flags & EP_EPLB_FLAG_FORCE_GLOBAL) != 0;
  opt.avoidDuplicates = (flags & EP_EPLB_FLAG_UPSTREAM_PACKING) == 0;
  opt.refine = (flags & EP_EPLB_FLAG_UPSTREAM_PACKING) == 0;
  int used = 0;
  ep::eplb::LayerPlan plan;
  for (int l = 0; l < numLayers; l++) {
    ep::eplb::planLayer(weight + (size_t)l * numExperts, shape, opt, &plan);
    std::copy(plan.phy2log.begin(), plan.phy2log.end(), phy2log + (size_t)l * numSlots);
    if (logcnt) std::copy(plan.logcnt.begin(), plan.logcnt.end(), logcnt + (size_t)l * numExperts);
    int layerUsed = ep::eplb::fillLog2Phy(plan, numExperts, maxReplicas,
                                          log2phy ? log2phy + (size_t)l * numExperts * maxReplicas : nullptr);
    used = std::max(used, layerUsed);
    if (l == 0)
      EP_INFO(EP_LOG_EPLB, "%s: L=%d E=%d R=%d G=%d N=%d P=%d policy=%s", fn, numLayers, numExperts, numSlots,
              numGroups, numNodes, numGpus, plan.hierarchical ? "hierarchical" : "global");
  }
  if (replicasUsed) *replicasUsed = used;
  EP_ARG_CHECK(log2phy == nullptr || used <= maxReplicas,
               "%s: the plan needs maxReplicas >= %d but log2phy was given maxReplicas = %d "
               "(epEplbMaxReplicas gives a bound that always fits)", fn, used, maxReplicas);
  return epSuccess;
}
