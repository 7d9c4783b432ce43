/*************************************************************************
 * epcomm unit tests: verbs port enumeration (fake NIC), EP_IB_HCA
 * filtering and PCI-nearest NIC choice.
 *************************************************************************/
#include <gtest/gtest.h>

#include "tests/unit/ib_fake_verbs.h"
#include "transports/ib/ib_devices.h"

namespace {

fakeib::DevCfg dev(const char* name, int nports, int activeMask = -1, int ll = IBV_LINK_LAYER_INFINIBAND) {
  fakeib::DevCfg d;
  d.name = name;
  for (int p = 0; p < nports; p++) {
    fakeib::PortCfg pc;
    pc.linkLayer = ll;
    pc.state = (activeMask >> p) & 1 ? IBV_PORT_ACTIVE : IBV_PORT_DOWN;
    pc.gids.push_back(fakeib::gidLinkLocal((uint8_t)p));
    d.ports.push_back(pc);
  }
  return d;
}

std::vector<std::string> names(const std::vector<epIbPort>& ports) {
  std::vector<std::string> v;
  for (auto& p : ports) v.push_back(p.dev + ":" + std::to_string(p.port));
  return v;
}

std::vector<std::string> list(const char* hca) {
  std::vector<epIbPort> ports;
  std::string why;
  epIbListPorts(fakeib::table(), epNameFilter::parse(hca), "/nonexistent", &ports, &why);
  return names(ports);
}

TEST(IbDevices, NoLibraryOrNoDeviceIsACleanNotSupported) {
  std::vector<epIbPort> ports;
  std::string why;
  EXPECT_EQ(epIbListPorts(nullptr, epNameFilter::parse(nullptr), "/sys", &ports, &why), epNotSupported);
  EXPECT_NE(why.find("libibverbs"), std::string::npos) << why;
  fakeib::reset({});
  EXPECT_EQ(epIbListPorts(fakeib::table(), epNameFilter::parse(nullptr), "/sys", &ports, &why), epNotSupported);
  EXPECT_NE(why.find("no RDMA devices"), std::string::npos) << why;
  EXPECT_TRUE(ports.empty());
}

TEST(IbDevices, ActivePortsOnly) {
  fakeib::reset({dev("mlx5_0", 2, 0b10), dev("mlx5_1", 1, 0)});
  EXPECT_EQ(list(nullptr), (std::vector<std::string>{"mlx5_0:2"}));
  std::vector<epIbPort> ports;
  std::string why;
  fakeib::reset({dev("mlx5_0", 1, 0)});
  EXPECT_EQ(epIbListPorts(fakeib::table(), epNameFilter::parse(nullptr), "/x", &ports, &why), epNotSupported);
  EXPECT_NE(why.find("none ACTIVE"), std::string::npos) << why;
}

TEST(IbDevices, HcaFilterGrammar) {
  fakeib::reset({dev("mlx5_0", 1), dev("mlx5_1", 2), dev("mlx5_10", 1), dev("bnxt_re0", 1, -1, IBV_LINK_LAYER_ETHERNET)});
  EXPECT_EQ(list(nullptr).size(), 5u);
  EXPECT_EQ(list("mlx5"), (std::vector<std::string>{"mlx5_0:1", "mlx5_1:1", "mlx5_1:2", "mlx5_10:1"}));
  // Prefix match: mlx5_1 also selects mlx5_10; '=' makes it exact.
  EXPECT_EQ(list("mlx5_1"), (std::vector<std::string>{"mlx5_1:1", "mlx5_1:2", "mlx5_10:1"}));
  EXPECT_EQ(list("=mlx5_1"), (std::vector<std::string>{"mlx5_1:1", "mlx5_1:2"}));
  EXPECT_EQ(list("=mlx5_1:2"), (std::vector<std::string>{"mlx5_1:2"}));
  EXPECT_EQ(list("^mlx5"), (std::vector<std::string>{"bnxt_re0:1"}));
  EXPECT_EQ(list("^=mlx5_1,bnxt_re0"), (std::vector<std::string>{"mlx5_0:1", "mlx5_10:1"}));
  EXPECT_EQ(list("^=mlx5_1,bnxt").size(), 3u) << "exact names: bnxt does not exclude bnxt_re0";
  EXPECT_TRUE(list("=mlx5_2").empty());
}

TEST(IbDevices, PortAttributesRecorded) {
  fakeib::DevCfg d = dev("roce0", 1, -1, IBV_LINK_LAYER_ETHERNET);
  d.ports[0].mtu = IBV_MTU_1024;
  d.ports[0].lid = 0;
  d.maxQpWr = 777;
  fakeib::reset({d});
  std::vector<epIbPort> ports;
  std::string why;
  ASSERT_EQ(epIbListPorts(fakeib::table(), epNameFilter::parse(nullptr), "/x", &ports, &why), epSuccess);
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_EQ(ports[0].linkLayer, IBV_LINK_LAYER_ETHERNET);
  EXPECT_EQ(ports[0].activeMtu, IBV_MTU_1024);
  EXPECT_EQ(ports[0].maxQpWr, 777);
  EXPECT_EQ(ports[0].gidTblLen, 1);
  EXPECT_EQ(ports[0].pciPath, "");  // no sysfs entry
}

TEST(IbDevices, PciDistance) {
  const std::string sw = "/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0";
  const std::string gpu = sw + "/0000:02:00.0/0000:03:00.0";
  const std::string nicSameSwitch = sw + "/0000:02:01.0/0000:04:00.0";
  const std::string nicSameRoot = "/sys/devices/pci0000:00/0000:00:02.0/0000:05:00.0";
  const std::string nicOtherRoot = "/sys/devices/pci0000:80/0000:80:01.0/0000:81:00.0";
  int dSwitch = epIbPciDistance(gpu, nicSameSwitch);
  int dRoot = epIbPciDistance(gpu, nicSameRoot);
  int dOther = epIbPciDistance(gpu, nicOtherRoot);
  EXPECT_EQ(dSwitch, 4);
  EXPECT_GT(dRoot, dSwitch);
  EXPECT_GE(dOther, 1000) << "another root complex must rank behind every same-root NIC";
  EXPECT_EQ(epIbPciDistance("", nicSameRoot), -1);
  EXPECT_EQ(epIbPciDistance(gpu, gpu), 0);
}

TEST(IbDevices, ChoosePortNearestThenRoundRobin) {
  const std::string root = "/sys/devices/pci0000:00";
  std::vector<epIbPort> ports(4);
  ports[0].dev = "far";
  ports[0].pciPath = "/sys/devices/pci0000:80/0000:80:01.0/0000:81:00.0";
  ports[1].dev = "nicA";
  ports[1].pciPath = root + "/0000:00:01.0/0000:01:00.0/0000:02:01.0/0000:04:00.0";
  ports[2].dev = "nicB";
  ports[2].pciPath = root + "/0000:00:01.0/0000:01:00.0/0000:02:02.0/0000:05:00.0";
  ports[3].dev = "unknown";  // no sysfs path: behind every known one
  const std::string gpu = root + "/0000:00:01.0/0000:01:00.0/0000:02:00.0/0000:03:00.0";
  // nicA and nicB tie for this GPU: local ranks alternate between them.
  EXPECT_EQ(ports[epIbChoosePort(ports, gpu, 0)].dev, "nicA");
  EXPECT_EQ(ports[epIbChoosePort(ports, gpu, 1)].dev, "nicB");
  EXPECT_EQ(ports[epIbChoosePort(ports, gpu, 2)].dev, "nicA");
  const std::string gpuFar = "/sys/devices/pci0000:80/0000:80:01.0/0000:82:00.0";
  EXPECT_EQ(ports[epIbChoosePort(ports, gpuFar, 0)].dev, "far");
  // Unknown GPU location: every known NIC ties; still a valid choice.
  EXPECT_GE(epIbChoosePort(ports, "", 0), 0);
  EXPECT_EQ(epIbChoosePort({}, gpu, 0), -1);
}

}  // namespace
