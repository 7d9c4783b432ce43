/*************************************************************************
 * epcomm unit tests: QP attribute construction from the knobs, the
 * connection-info wire format, and the QP state machine on a fake NIC.
 *************************************************************************/
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/unit/ib_fake_verbs.h"
#include "transports/ib/ib_qp.h"

namespace {

epIbConnInfo sampleInfo() {
  epIbConnInfo c;
  c.linkLayer = IBV_LINK_LAYER_ETHERNET;
  c.mtu = IBV_MTU_2048;
  c.qpn = 0xabcdef;
  c.psn = 0x123456;
  c.lid = 0xbeef;
  c.port = 2;
  c.flags = EP_IB_CONN_FLAG_AR;
  for (int i = 0; i < 16; i++) c.gid[i] = (uint8_t)(i * 7 + 1);
  c.rank = 4242;
  return c;
}

TEST(IbQp, WireRoundTripAndLayout) {
  epIbConnInfo c = sampleInfo();
  uint8_t buf[EP_IB_CONN_BYTES];
  epIbConnPack(c, buf);
  // Documented layout: magic "EPIB" little-endian first, version, then fields at fixed offsets.
  EXPECT_EQ(memcmp(buf, "EPIB", 4), 0);
  EXPECT_EQ(buf[4], EP_IB_CONN_VERSION);
  EXPECT_EQ(buf[6], IBV_LINK_LAYER_ETHERNET);
  EXPECT_EQ(buf[8], 0xef);
  EXPECT_EQ(buf[10], 0xab);
  EXPECT_EQ(buf[18], 2);
  EXPECT_EQ(buf[20], 1);
  epIbConnInfo d;
  std::string why;
  ASSERT_EQ(epIbConnUnpack(buf, &d, &why), epSuccess) << why;
  EXPECT_EQ(d.linkLayer, c.linkLayer);
  EXPECT_EQ(d.mtu, c.mtu);
  EXPECT_EQ(d.qpn, c.qpn);
  EXPECT_EQ(d.psn, c.psn);
  EXPECT_EQ(d.lid, c.lid);
  EXPECT_EQ(d.port, c.port);
  EXPECT_EQ(d.flags, c.flags);
  EXPECT_EQ(memcmp(d.gid, c.gid, 16), 0);
  EXPECT_EQ(d.rank, c.rank);
}

TEST(IbQp, WireRejectsGarbage) {
  uint8_t buf[EP_IB_CONN_BYTES];
  epIbConnInfo d;
  std::string why;
  epIbConnPack(sampleInfo(), buf);
  buf[0] ^= 1;
  EXPECT_NE(epIbConnUnpack(buf, &d, &why), epSuccess);
  EXPECT_NE(why.find("magic"), std::string::npos) << why;
  epIbConnPack(sampleInfo(), buf);
  buf[4] = 99;
  EXPECT_EQ(epIbConnUnpack(buf, &d, &why), epInvalidUsage);
  EXPECT_NE(why.find("version"), std::string::npos) << why;
  epIbConnPack(sampleInfo(), buf);
  buf[7] = 9;  // MTU enum out of range
  EXPECT_NE(epIbConnUnpack(buf, &d, &why), epSuccess);
  epIbConnInfo c = sampleInfo();
  c.qpn = 0x1000000;  // 25 bits
  epIbConnPack(c, buf);
  EXPECT_NE(epIbConnUnpack(buf, &d, &why), epSuccess);
  memset(buf, 0, sizeof(buf));  // an empty slot of the allgather
  EXPECT_NE(epIbConnUnpack(buf, &d, &why), epSuccess);
}

epIbQpParams roceParams() {
  epIbQpParams p;
  p.port = 1;
  p.pkeyIndex = 3;
  p.linkLayer = IBV_LINK_LAYER_ETHERNET;
  p.mtu = IBV_MTU_4096;
  p.gidIndex = 5;
  p.useGrh = true;
  p.sl = 3;
  p.tc = 104;
  p.timeout = 18;
  p.retryCnt = 6;
  p.maxRdAtomic = 16;
  return p;
}

TEST(IbQp, InitAttr) {
  ibv_qp_attr a;
  int mask;
  epIbInitAttr(roceParams(), &a, &mask);
  EXPECT_EQ(a.qp_state, IBV_QPS_INIT);
  EXPECT_EQ(a.pkey_index, 3);
  EXPECT_EQ(a.port_num, 1);
  EXPECT_EQ(a.qp_access_flags & IBV_ACCESS_REMOTE_WRITE, IBV_ACCESS_REMOTE_WRITE);
  EXPECT_EQ(a.qp_access_flags & IBV_ACCESS_REMOTE_ATOMIC, IBV_ACCESS_REMOTE_ATOMIC) << "atomic signals need it";
  EXPECT_EQ(mask, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

TEST(IbQp, RtrAttrRoceCarriesSlTcGid) {
  epIbConnInfo r = sampleInfo();
  ibv_qp_attr a;
  int mask;
  epIbQpParams p = roceParams();
  epIbRtrAttr(p, r, 5, &a, &mask);
  EXPECT_EQ(a.qp_state, IBV_QPS_RTR);
  EXPECT_EQ(a.path_mtu, IBV_MTU_2048) << "min of both ends";
  EXPECT_EQ(a.dest_qp_num, r.qpn);
  EXPECT_EQ(a.rq_psn, r.psn);
  EXPECT_EQ(a.max_dest_rd_atomic, 16);
  EXPECT_EQ(a.ah_attr.sl, 3);
  EXPECT_EQ(a.ah_attr.is_global, 1);
  EXPECT_EQ(a.ah_attr.grh.sgid_index, 5);
  EXPECT_EQ(a.ah_attr.grh.hop_limit, 255);
  EXPECT_EQ(a.ah_attr.grh.traffic_class, 104) << "congestion control off: TC as given";
  EXPECT_EQ(memcmp(a.ah_attr.grh.dgid.raw, r.gid, 16), 0);
  EXPECT_TRUE(mask & IBV_QP_AV);
  EXPECT_TRUE(mask & IBV_QP_MAX_DEST_RD_ATOMIC);
  p.congestionControl = true;
  epIbRtrAttr(p, r, 5, &a, &mask);
  EXPECT_EQ(a.ah_attr.grh.traffic_class, 104 | 2) << "EP_IB_CC=1 marks ECT(0)";
}

TEST(IbQp, RtrAttrInfinibandUsesLid) {
  epIbQpParams p = roceParams();
  p.linkLayer = IBV_LINK_LAYER_INFINIBAND;
  p.useGrh = false;
  p.mtu = IBV_MTU_1024;
  epIbConnInfo r = sampleInfo();
  r.linkLayer = IBV_LINK_LAYER_INFINIBAND;
  ibv_qp_attr a;
  int mask;
  epIbRtrAttr(p, r, 0, &a, &mask);
  EXPECT_EQ(a.ah_attr.is_global, 0);
  EXPECT_EQ(a.ah_attr.dlid, 0xbeef);
  EXPECT_EQ(a.ah_attr.sl, 3) << "the service level picks the VL on IB";
  EXPECT_EQ(a.path_mtu, IBV_MTU_1024);
}

TEST(IbQp, RtsAttr) {
  ibv_qp_attr a;
  int mask;
  epIbRtsAttr(roceParams(), 0x777, &a, &mask);
  EXPECT_EQ(a.qp_state, IBV_QPS_RTS);
  EXPECT_EQ(a.timeout, 18);
  EXPECT_EQ(a.retry_cnt, 6);
  EXPECT_EQ(a.rnr_retry, 7);
  EXPECT_EQ(a.sq_psn, 0x777u);
  EXPECT_EQ(a.max_rd_atomic, 16);
  EXPECT_EQ(mask, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                      IBV_QP_MAX_QP_RD_ATOMIC);
}

TEST(IbQp, ConnectWalksTheStateMachine) {
  ibv_context* ctx = fakeib::openOnly(fakeib::singlePortNic());
  const epIbvFns* ibv = fakeib::table();
  ibv_pd* pd = ibv->allocPd(ctx);
  ibv_cq* cq = ibv->createCq(ctx, 64, nullptr, nullptr, 0);
  ibv_qp *a = nullptr, *b = nullptr;
  ASSERT_EQ(epIbQpCreate(ibv, pd, cq, cq, 16, 1, &a), epSuccess);
  ASSERT_EQ(epIbQpCreate(ibv, pd, cq, cq, 16, 1, &b), epSuccess);
  epIbQpParams p;
  epIbConnInfo rb;
  rb.linkLayer = IBV_LINK_LAYER_INFINIBAND;
  rb.mtu = IBV_MTU_4096;
  rb.qpn = b->qp_num;
  rb.psn = 9;
  rb.lid = 2;
  ASSERT_EQ(epIbQpConnect(ibv, a, p, 1, rb), epSuccess);
  auto m = fakeib::modifies(a->qp_num);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].second.qp_state, IBV_QPS_INIT);
  EXPECT_EQ(m[1].second.qp_state, IBV_QPS_RTR);
  EXPECT_EQ(m[1].second.dest_qp_num, b->qp_num);
  EXPECT_EQ(m[2].second.qp_state, IBV_QPS_RTS);
  EXPECT_EQ(fakeib::stats().badTransitions, 0u);
  // A second connect of the same QP is out of order: reported, not ignored.
  EXPECT_EQ(epIbQpConnect(ibv, a, p, 1, rb), epSystemError);
}

// Knobs are read once per process, so their parsing is checked in a child
// process that runs only the test below with the environment set.
TEST(IbQp, ParamsFromEnvironment) {
  std::string self = "/proc/" + std::to_string(getpid()) + "/exe";
  std::string cmd = "EP_TEST_IB_ENV_CHILD=1 EP_IB_SL=3 EP_IB_SL_LL=5 EP_IB_TC=106 EP_IB_TC_LL=40 EP_IB_CC=1 "
                    "EP_IB_TIMEOUT=14 EP_IB_RETRY_CNT=5 EP_IB_MTU=2048 EP_IB_PKEY=2 " +
                    self + " --gtest_filter=IbQpEnvChild.* > /dev/null 2>&1";
  EXPECT_EQ(system(cmd.c_str()), 0) << "child checks failed; rerun: " << cmd;
  std::string bad = "EP_TEST_IB_ENV_CHILD=2 EP_IB_SL=16 " + self + " --gtest_filter=IbQpEnvChild.* > /dev/null 2>&1";
  EXPECT_EQ(system(bad.c_str()), 0) << "out-of-range SL not refused; rerun: " << bad;
}

TEST(IbQpEnvChild, Parse) {
  const char* mode = getenv("EP_TEST_IB_ENV_CHILD");
  if (mode == nullptr) GTEST_SKIP() << "runs only as the child of IbQp.ParamsFromEnvironment";
  epIbQpParams ht, ll;
  std::string why;
  epResult_t r1 = epIbQpParamsFromEnv(1, IBV_LINK_LAYER_ETHERNET, IBV_MTU_4096, 3, 8, 0, &ht, &why);
  if (std::string(mode) == "2") {
    EXPECT_EQ(r1, epInvalidArgument);
    EXPECT_NE(why.find("EP_IB_SL"), std::string::npos);
    return;
  }
  ASSERT_EQ(r1, epSuccess) << why;
  ASSERT_EQ(epIbQpParamsFromEnv(1, IBV_LINK_LAYER_ETHERNET, IBV_MTU_4096, 3, 8, 1, &ll, &why), epSuccess) << why;
  EXPECT_EQ(ht.sl, 3);
  EXPECT_EQ(ll.sl, 5);
  EXPECT_EQ(ht.tc, 106);
  EXPECT_EQ(ll.tc, 40);
  EXPECT_TRUE(ht.congestionControl);
  EXPECT_EQ(epIbEffectiveTc(ht), 106 | 2);
  EXPECT_EQ(ht.timeout, 14);
  EXPECT_EQ(ht.retryCnt, 5);
  EXPECT_EQ(ht.mtu, IBV_MTU_2048);
  EXPECT_EQ(ht.pkeyIndex, 2);
  EXPECT_EQ(ht.maxRdAtomic, 8);
  EXPECT_TRUE(ht.useGrh);
  EXPECT_EQ(ht.gidIndex, 3);
}

}  // namespace
