/*************************************************************************
 * epcomm unit tests: GPU memory registration decision (dmabuf vs peer
 * memory) and the capability probes.
 *************************************************************************/
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>

#include "tests/unit/ib_fake_verbs.h"
#include "transports/ib/ib_gdr.h"
#include "transports/ib/ib_reg.h"

namespace {

epIbRegPath pick(bool dev, int knob, bool nic, bool gpu, bool peer, epResult_t* r, std::string* why) {
  epIbRegCaps c;
  c.nicDmabuf = nic;
  c.gpuDmabuf = gpu;
  c.peermem = peer;
  epIbRegPath p = EP_IB_REG_HOST;
  *r = epIbChooseRegPath(dev, knob, c, &p, why);
  return p;
}

TEST(IbReg, DecisionMatrix) {
  epResult_t r;
  std::string why;
  EXPECT_EQ(pick(false, -1, false, false, false, &r, &why), EP_IB_REG_HOST);
  EXPECT_EQ(r, epSuccess) << "host memory always registers";
  EXPECT_EQ(pick(true, -1, true, true, true, &r, &why), EP_IB_REG_DMABUF);
  EXPECT_EQ(pick(true, -1, true, false, true, &r, &why), EP_IB_REG_PEERMEM) << "GPU without dmabuf";
  EXPECT_EQ(pick(true, -1, false, true, true, &r, &why), EP_IB_REG_PEERMEM) << "NIC without dmabuf";
  EXPECT_EQ(pick(true, 0, true, true, true, &r, &why), EP_IB_REG_PEERMEM) << "EP_IB_DMABUF=0";
  pick(true, -1, false, false, false, &r, &why);
  EXPECT_EQ(r, epNotSupported);
  EXPECT_NE(why.find("nvidia_peermem"), std::string::npos) << why;
  pick(true, 1, true, false, true, &r, &why);
  EXPECT_EQ(r, epNotSupported) << "dmabuf required but unusable";
  EXPECT_NE(why.find("EP_IB_DMABUF=1"), std::string::npos) << why;
  EXPECT_EQ(pick(true, 1, true, true, false, &r, &why), EP_IB_REG_DMABUF);
  pick(true, 0, true, true, false, &r, &why);
  EXPECT_EQ(r, epNotSupported);
  EXPECT_NE(why.find("disabled by EP_IB_DMABUF=0"), std::string::npos) << why;
}

TEST(IbReg, NicDmabufProbe) {
  ibv_context* ctx = fakeib::openOnly(fakeib::singlePortNic());
  const epIbvFns* ibv = fakeib::table();
  ibv_pd* pd = ibv->allocPd(ctx);
  fakeib::setDmabuf(true, EBADF);  // the kernel looked at the fd: supported
  EXPECT_TRUE(epIbNicDmabufSupported(ibv, pd));
  fakeib::setDmabuf(true, EOPNOTSUPP);
  EXPECT_FALSE(epIbNicDmabufSupported(ibv, pd));
  fakeib::setDmabuf(true, EPROTONOSUPPORT);
  EXPECT_FALSE(epIbNicDmabufSupported(ibv, pd));
  fakeib::setDmabuf(false, 0);  // old rdma-core: no symbol
  EXPECT_FALSE(epIbNicDmabufSupported(ibv, pd));
  EXPECT_FALSE(epIbNicDmabufSupported(nullptr, pd));
}

TEST(IbReg, PeermemProbe) {
  char tmpl[] = "/tmp/ep_ib_reg_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string root = tmpl;
  EXPECT_FALSE(epIbPeermemLoaded(root));
  ASSERT_EQ(system(("mkdir -p " + root + "/module/nvidia_peermem").c_str()), 0);
  std::ofstream(root + "/module/nvidia_peermem/version") << "1.0\n";
  EXPECT_TRUE(epIbPeermemLoaded(root));
  system(("rm -rf " + root).c_str());
}

TEST(IbReg, HostRegistrationGoesThroughRegMr) {
  ibv_context* ctx = fakeib::openOnly(fakeib::singlePortNic());
  const epIbvFns* ibv = fakeib::table();
  ibv_pd* pd = ibv->allocPd(ctx);
  std::vector<char> buf(4096);
  ibv_mr* mr = nullptr;
  ASSERT_EQ(epIbRegister(ibv, pd, buf.data(), buf.size(), EP_IB_REG_HOST, &mr), epSuccess);
  ASSERT_NE(mr, nullptr);
  EXPECT_EQ(mr->addr, (void*)buf.data());
  EXPECT_EQ(mr->length, buf.size());
}

}  // namespace
