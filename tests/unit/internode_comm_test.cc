/*************************************************************************
 * epcomm unit tests: HT internode on CPU communicators (no GPU): the node
 * comm the intranode kernels run on, path selection, and the argument checks that
 * refuse bad input before any device work.
 *************************************************************************/
#include <gtest/gtest.h>

#include <string>

#include "core/comm.h"
#include "epcomm.h"
#include "epcomm/ht.h"
#include "internode/inter_plan.h"
#include "internode/inter_state.h"
#include "intranode/ht_state.h"
#include "intranode/ht_types.h"

namespace {

struct Comms {
  epComm_t c[4] = {nullptr, nullptr, nullptr, nullptr};
  int n = 0;
  ~Comms() {
    for (int i = 0; i < n; i++)
      if (c[i]) epCommDestroy(c[i]);
  }
};

/* 4 GPU-less ranks in this process as 2 virtual nodes x 2. */
bool init2x2(Comms* cs, int htMaxTokens = 512) {
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.emulateNodes = 2;
  cfg.htMaxTokensPerRank = htMaxTokens;
  cfg.bootstrapTimeoutMs = 10000;
  cs->n = 4;
  return epCommInitAll(cs->c, 4, nullptr, &cfg) == epSuccess;
}

TEST(InternodeComm, NodeCommMeetsTheIntranodePreconditions) {
  Comms cs;
  ASSERT_TRUE(init2x2(&cs)) << epGetLastError(nullptr);
  uint64_t hashOfNode[2] = {0, 0};
  for (int r = 0; r < 4; r++) {
    epComm* p = cs.c[r];
    ASSERT_EQ(2, p->nNodes);
    epInterPlacement pl;
    std::string why;
    // GPU-less ranks have no NVLink peers: stand in for the same-node P2P reachability of a GPU host.
    std::vector<int> nvl(p->nranks);
    for (int q = 0; q < p->nranks; q++) nvl[q] = p->rankNode[q] == p->node;
    ASSERT_TRUE(epInterPlacementBuild(p->rank, p->nranks, p->rankNode, p->rankLocal, nvl,
                                      EP_HT_MAX_NVL_RANKS, &pl, &why))
        << why;
    epComm* n = epInterNodeCommCreate(p, pl, p->config.htMaxTokensPerRank);
    EXPECT_EQ(2, n->nranks);
    EXPECT_EQ(p->localRank, n->rank);
    EXPECT_EQ(1, n->nNodes);
    EXPECT_EQ(nullptr, n->bootstrap) << "the node comm must never run a collective of its own";
    EXPECT_EQ(p->devStatus, n->devStatus) << "device errors of the node phase must reach the caller's comm";
    EXPECT_EQ(2 * 2 * 512, n->config.htMaxTokensPerRank) << "G * N * Tcfg virtual tokens";
    EXPECT_EQ(p->config.timeoutMs, n->config.timeoutMs);
    EXPECT_NE(p->commHash, n->commHash) << "handles of the node comm must not pass as the parent's";
    if (hashOfNode[pl.myNode] == 0) hashOfNode[pl.myNode] = n->commHash;
    EXPECT_EQ(hashOfNode[pl.myNode], n->commHash) << "same node, same node-comm hash";
    for (int j = 0; j < 2; j++) EXPECT_EQ(1, n->nvlinkPeer[j]);
    // What epHtCheckIntranode inspects (it also needs a GPU, which a CPU comm lacks).
    n->cudaDev = 0;
    EXPECT_EQ(epSuccess, epHtCheckIntranode(n, "test")) << n->lastError;
    delete n;
  }
  EXPECT_NE(hashOfNode[0], hashOfNode[1]);
}

// A multi-node comm takes the internode path with no knob set; bad input is
// refused before any device work.
TEST(InternodeComm, MultiNodeTakesInternodePathArgumentChecksBeforeDeviceWork) {
  Comms cs;
  ASSERT_TRUE(init2x2(&cs)) << epGetLastError(nullptr);
  for (int r = 0; r < 4; r++) EXPECT_TRUE(epInterWanted(cs.c[r])) << "rank " << r;
  epHtHandle_t h = nullptr;
  EXPECT_EQ(epInvalidArgument, epHtHandleCreate(cs.c[0], 0, &h));
  EXPECT_EQ(nullptr, h);
  EXPECT_EQ(epInvalidArgument, epHtHandleCreate(cs.c[0], 513, &h));
  EXPECT_NE(std::string::npos, std::string(epGetLastError(cs.c[0])).find("htMaxTokensPerRank"))
      << epGetLastError(cs.c[0]);
  EXPECT_EQ(epInvalidUsage, epHtHandleCreate(cs.c[0], 16, &h)) << "a GPU-less rank is refused, not crashed";
  EXPECT_NE(std::string::npos, std::string(epGetLastError(cs.c[0])).find("no CUDA device")) << epGetLastError(cs.c[0]);
  EXPECT_EQ(nullptr, h);
  // Entry points with a NULL handle: refused before anything else.
  epDispatchInput_t in = EP_DISPATCH_INPUT_INITIALIZER;
  EXPECT_EQ(epInvalidArgument, epDispatchNotify(cs.c[0], &in, nullptr, nullptr, nullptr, nullptr));
  epDispatchOutput_t out = EP_DISPATCH_OUTPUT_INITIALIZER;
  EXPECT_EQ(epInvalidArgument, epDispatch(cs.c[0], &in, &out, nullptr, nullptr));
  epCombineInput_t cin = EP_COMBINE_INPUT_INITIALIZER;
  epCombineOutput_t cout = EP_COMBINE_OUTPUT_INITIALIZER;
  EXPECT_EQ(epInvalidArgument, epCombine(cs.c[0], &cin, &cout, nullptr, nullptr));
}

TEST(InternodeComm, SingleNodeCommNeverTakesInternodePath) {
  Comms cs;
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.emulateNodes = 1;
  cfg.bootstrapTimeoutMs = 10000;
  cs.n = 2;
  ASSERT_EQ(epSuccess, epCommInitAll(cs.c, 2, nullptr, &cfg)) << epGetLastError(nullptr);
  for (int r = 0; r < 2; r++) EXPECT_FALSE(epInterWanted(cs.c[r]));
  epHtHandle_t h = nullptr;
  EXPECT_NE(epSuccess, epHtHandleCreate(cs.c[0], 16, &h));  // GPU-less: refused by the intranode checks
  EXPECT_EQ(nullptr, cs.c[0]->inter) << "the internode state is never created on a single-node comm";
}

}  // namespace
