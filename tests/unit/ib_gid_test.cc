/*************************************************************************
 * epcomm unit tests: RoCE/IB GID selection.
 *************************************************************************/
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "tests/unit/ib_fake_verbs.h"
#include "transports/ib/ib_gid.h"

namespace {

epIbGidEntry entry(int idx, std::array<uint8_t, 16> raw, int ver) {
  epIbGidEntry e;
  e.index = idx;
  memcpy(e.raw, raw.data(), 16);
  e.roceVersion = ver;
  return e;
}

int choose(const std::vector<epIbGidEntry>& t, int ll, int forced, int ver, epResult_t* res, std::string* why) {
  int idx = -1;
  *res = epIbChooseGid(t, ll, forced, ver, &idx, why);
  return idx;
}

TEST(IbGid, RoceAutoPrefersV2Ipv4) {
  std::array<uint8_t, 16> zero{};
  std::array<uint8_t, 16> v6global{};
  v6global[0] = 0x20;
  v6global[1] = 0x01;
  v6global[15] = 9;
  std::vector<epIbGidEntry> t = {entry(0, fakeib::gidLinkLocal(1), 1), entry(1, fakeib::gidLinkLocal(1), 2),
                                 entry(2, fakeib::gidV4(10, 0, 0, 1), 1), entry(3, zero, 2),
                                 entry(4, v6global, 2), entry(5, fakeib::gidV4(10, 0, 0, 1), 2)};
  epResult_t r;
  std::string why;
  EXPECT_EQ(choose(t, IBV_LINK_LAYER_ETHERNET, -1, 2, &r, &why), 5);
  EXPECT_EQ(r, epSuccess);
  EXPECT_EQ(choose(t, IBV_LINK_LAYER_ETHERNET, -1, 1, &r, &why), 2) << "RoCE v1 wanted";
  t.pop_back();  // no v2 IPv4: global IPv6 v2 beats link-local and other versions
  EXPECT_EQ(choose(t, IBV_LINK_LAYER_ETHERNET, -1, 2, &r, &why), 4);
  t.pop_back();
  // Only link-local v2 or routable v1 left: the wanted version wins, link-local or not.
  EXPECT_EQ(choose(t, IBV_LINK_LAYER_ETHERNET, -1, 2, &r, &why), 1);
}

TEST(IbGid, ForcedIndexAndErrors) {
  std::array<uint8_t, 16> zero{};
  std::vector<epIbGidEntry> t = {entry(0, fakeib::gidLinkLocal(1), 2), entry(1, zero, 2),
                                 entry(3, fakeib::gidV4(1, 2, 3, 4), 2)};
  epResult_t r;
  std::string why;
  EXPECT_EQ(choose(t, IBV_LINK_LAYER_ETHERNET, 0, 2, &r, &why), 0);
  EXPECT_EQ(r, epSuccess);
  choose(t, IBV_LINK_LAYER_ETHERNET, 1, 2, &r, &why);
  EXPECT_EQ(r, epInvalidArgument) << "an all-zero GID is not valid on RoCE";
  EXPECT_NE(why.find("EP_IB_GID_INDEX=1"), std::string::npos) << why;
  choose(t, IBV_LINK_LAYER_ETHERNET, 7, 2, &r, &why);
  EXPECT_EQ(r, epInvalidArgument);
  choose({entry(0, zero, 2)}, IBV_LINK_LAYER_ETHERNET, -1, 2, &r, &why);
  EXPECT_EQ(r, epNotSupported);
  EXPECT_NE(why.find("no valid GID"), std::string::npos) << why;
}

TEST(IbGid, InfinibandUsesPortGid) {
  epResult_t r;
  std::string why;
  EXPECT_EQ(choose({}, IBV_LINK_LAYER_INFINIBAND, -1, 2, &r, &why), 0);
  EXPECT_EQ(r, epSuccess);
  std::vector<epIbGidEntry> t = {entry(0, fakeib::gidLinkLocal(1), 0), entry(1, fakeib::gidLinkLocal(2), 0)};
  EXPECT_EQ(choose(t, IBV_LINK_LAYER_INFINIBAND, 1, 2, &r, &why), 1) << "routed IB: forced index honoured";
}

TEST(IbGid, ReadsTableAndRoceTypesFromSysfs) {
  char tmpl[] = "/tmp/ep_ib_gid_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string root = tmpl;
  std::string dir = root + "/class/infiniband/roce0/ports/1/gid_attrs/types";
  ASSERT_EQ(system(("mkdir -p " + dir).c_str()), 0);
  std::ofstream(dir + "/0") << "IB/RoCE v1\n";
  std::ofstream(dir + "/1") << "RoCE v2\n";
  fakeib::DevCfg d;
  d.name = "roce0";
  fakeib::PortCfg p;
  p.linkLayer = IBV_LINK_LAYER_ETHERNET;
  p.gids = {fakeib::gidV4(10, 1, 1, 1), fakeib::gidV4(10, 1, 1, 1), fakeib::gidLinkLocal(3)};
  d.ports.push_back(p);
  ibv_context* ctx = fakeib::openOnly(d);
  const epIbvFns* ibv = fakeib::table();
  std::vector<epIbGidEntry> t;
  ASSERT_EQ(epIbReadGids(ibv, ctx, root, "roce0", 1, 3, &t), epSuccess);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].roceVersion, 1);
  EXPECT_EQ(t[1].roceVersion, 2);
  EXPECT_EQ(t[2].roceVersion, 0);
  int idx = -1;
  std::string why;
  ASSERT_EQ(epIbChooseGid(t, IBV_LINK_LAYER_ETHERNET, -1, 2, &idx, &why), epSuccess);
  EXPECT_EQ(idx, 1);
  EXPECT_EQ(epIbGidString(t[1].raw), "::ffff:10.1.1.1");
  system(("rm -rf " + root).c_str());
}

}  // namespace
