/*************************************************************************
 * epcomm unit tests: topology from hwloc XML fixtures, GPU -> NIC map.
 * SPDX-License-Identifier: Apache-2.0
 *
 * The XML files in tests/fixtures/topo are written by gen_fixtures.py there. Paths are
 * relative to the repository root (make test runs from there); EP_SRC_DIR
 * overrides it.
 *************************************************************************/
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/debug.h"
#include "topo/nic_assign.h"
#include "core/comm.h"
#include "tests/unit/fork_ranks.h"
#include "topo/topo.h"

namespace {

std::string fixture(const char* name) {
  const char* root = getenv("EP_SRC_DIR");
  return std::string(root ? root : ".") + "/tests/fixtures/topo/" + name;
}

std::shared_ptr<epTopoMachine> load(const char* name, const char* hca = "") {
  std::string path = fixture(name);
  epTopoOptions opt;
  opt.xmlFile = path.c_str();
  opt.hcaFilter = hca;  // "" = no filter, independent of the caller's EP_IB_HCA
  opt.useCuda = false;
  std::shared_ptr<epTopoMachine> m;
  epResult_t r = epTopoMachineLoad(opt, &m);
  EXPECT_EQ(r, epSuccess) << epThreadLastError();
  return m;
}

// GPU -> primary NIC name.
std::vector<std::string> primaryNics(const epTopoMachine& m) {
  std::vector<std::string> v;
  for (const auto& nics : m.gpuNics) v.push_back(nics.empty() ? "-" : m.nics[nics[0]].name);
  return v;
}

}  // namespace

TEST(TopoXml, DgxH100Inventory) {
  auto m = load("dgx_h100.xml");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->hostName, "dgx-h100-fixture");
  EXPECT_EQ(m->packages, 2);
  EXPECT_EQ(m->numaNodes, 2);
  EXPECT_EQ(m->pus, 32);
  ASSERT_EQ(m->gpus.size(), 8u);
  ASSERT_EQ(m->nics.size(), 8u);  // the management Ethernet NIC is not a verbs device
  const char* gpuBus[8] = {"0000:1a:00.0", "0000:1b:00.0", "0000:42:00.0", "0000:43:00.0",
                           "0000:9a:00.0", "0000:9b:00.0", "0000:c2:00.0", "0000:c3:00.0"};
  for (int g = 0; g < 8; g++) {
    EXPECT_EQ(m->gpus[g].busId, gpuBus[g]);
    EXPECT_EQ(m->gpus[g].cudaDev, -1);
    EXPECT_EQ(m->gpus[g].numa, g < 4 ? 0 : 1);
    EXPECT_EQ(m->gpus[g].cpuset, g < 4 ? "0-15" : "16-31");
  }
  for (const epTopoNic& n : m->nics) EXPECT_EQ(n.activePorts, std::vector<int>{1}) << n.name;
  ASSERT_EQ(m->numa.size(), 2u);
  EXPECT_EQ(m->numa[0].os, 0);
  EXPECT_EQ(m->numa[0].cpuset, "0-15");
  EXPECT_EQ(m->numa[1].cpuset, "16-31");
  EXPECT_EQ(m->numa[1].bytes, 1ull << 40);
}

TEST(TopoXml, DgxH100GpuNicMap) {
  auto m = load("dgx_h100.xml");
  ASSERT_TRUE(m);
  // Each PCIe switch holds 2 GPUs and 2 NICs at equal distance: the tie is
  // split round-robin, so every GPU gets its own NIC on its own switch.
  std::vector<std::string> expect = {"mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_10", "mlx5_11"};
  EXPECT_EQ(primaryNics(*m), expect);
  for (int g = 0; g < 8; g++) {
    ASSERT_EQ(m->gpuNics[g].size(), 1u);
    EXPECT_EQ(m->path[g][m->gpuNics[g][0]], EP_PATH_PIX) << "GPU " << g;
    EXPECT_EQ(m->nearest[g].size(), 2u);
  }
  // Path classes from GPU0: same switch, other switch same socket, other socket.
  auto nic = [&](const char* name) {
    for (size_t i = 0; i < m->nics.size(); i++)
      if (m->nics[i].name == name) return (int)i;
    return -1;
  };
  EXPECT_EQ(m->path[0][nic("mlx5_3")], EP_PATH_PIX);
  EXPECT_EQ(m->path[0][nic("mlx5_4")], EP_PATH_NODE);
  EXPECT_EQ(m->path[0][nic("mlx5_9")], EP_PATH_SYS);
  EXPECT_LT(m->hops[0][nic("mlx5_3")], m->hops[0][nic("mlx5_4")]);
}

TEST(TopoXml, HcaFilterExclude) {
  auto m = load("dgx_h100.xml", "^mlx5_3");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->nics.size(), 7u);
  // GPUs 0 and 1 now share the one NIC left on their switch.
  std::vector<std::string> expect = {"mlx5_0", "mlx5_0", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_10", "mlx5_11"};
  EXPECT_EQ(primaryNics(*m), expect);
}

TEST(TopoXml, HcaFilterPrefixFallsBackToFartherNics) {
  auto m = load("dgx_h100.xml", "mlx5_1");  // prefix: mlx5_10 and mlx5_11 only
  ASSERT_TRUE(m);
  ASSERT_EQ(m->nics.size(), 2u);
  // Switch-3 GPUs keep their PIX NICs; all others tie on {mlx5_10, mlx5_11}
  // and alternate, per distance group.
  std::vector<std::string> expect = {"mlx5_10", "mlx5_11", "mlx5_10", "mlx5_11",
                                     "mlx5_10", "mlx5_11", "mlx5_10", "mlx5_11"};
  EXPECT_EQ(primaryNics(*m), expect);
  EXPECT_EQ(m->path[4][m->gpuNics[4][0]], EP_PATH_NODE);
  EXPECT_EQ(m->path[0][m->gpuNics[0][0]], EP_PATH_SYS);
  EXPECT_EQ(m->path[6][m->gpuNics[6][0]], EP_PATH_PIX);
}

TEST(TopoXml, HcaFilterExactAndPorts) {
  auto exact = load("dgx_h100.xml", "=mlx5_1");  // no NIC is named exactly mlx5_1
  ASSERT_TRUE(exact);
  EXPECT_TRUE(exact->nics.empty());
  for (const auto& v : exact->gpuNics) EXPECT_TRUE(v.empty());
  auto port2 = load("dgx_h100.xml", "mlx5_0:2");  // port 2 is not active
  ASSERT_TRUE(port2);
  EXPECT_TRUE(port2->nics.empty());
  auto port1 = load("dgx_h100.xml", "=mlx5_0:1,mlx5_9:1");
  ASSERT_TRUE(port1);
  EXPECT_EQ(port1->nics.size(), 2u);
}

TEST(TopoXml, NoNicBox) {
  auto m = load("no_nic.xml");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->gpus.size(), 4u);
  EXPECT_TRUE(m->nics.empty());
  ASSERT_EQ(m->gpuNics.size(), 4u);
  for (const auto& v : m->gpuNics) EXPECT_TRUE(v.empty());
  for (const epTopoGpu& g : m->gpus) {
    EXPECT_EQ(g.numa, 0);
    EXPECT_EQ(g.cpuset, "0-15");
  }
  EXPECT_EQ(m->nvlinkSource, "none");
}

TEST(TopoXml, MissingFileIsInvalidArgument) {
  epTopoOptions opt;
  opt.xmlFile = "/nonexistent/topo.xml";
  opt.useCuda = false;
  std::shared_ptr<epTopoMachine> m;
  EXPECT_EQ(epTopoMachineLoad(opt, &m), epInvalidArgument);
  EXPECT_NE(std::string(epThreadLastError()).find("/nonexistent/topo.xml"), std::string::npos);
}

TEST(TopoLive, ThisMachineLoads) {
  epTopoOptions opt;
  opt.hcaFilter = "";
  std::shared_ptr<epTopoMachine> m;
  ASSERT_EQ(epTopoMachineLoad(opt, &m), epSuccess) << epThreadLastError();
  EXPECT_EQ(m->source, getenv("EP_TOPO_FILE") ? getenv("EP_TOPO_FILE") : "live");
  EXPECT_GE(m->pus, 1);
  EXPECT_GE(m->numaNodes, 1);
  EXPECT_EQ(m->gpuNics.size(), m->gpus.size());
  EXPECT_EQ(m->nvlink.size(), m->gpus.size());
}

TEST(NicAssign, RoundRobinWithinTies) {
  // 3 GPUs tie on 2 NICs; a 4th GPU has its own NIC.
  std::vector<std::vector<int>> path = {{1, 1, 5}, {1, 1, 5}, {1, 1, 5}, {5, 5, 1}};
  std::vector<std::vector<int>> hops = {{4, 4, 9}, {4, 4, 9}, {4, 4, 9}, {9, 9, 2}};
  std::vector<std::vector<int>> nearest, assigned;
  epTopoAssignNics(path, hops, &nearest, &assigned);
  EXPECT_EQ(assigned, (std::vector<std::vector<int>>{{0}, {1}, {0}, {2}}));
  EXPECT_EQ(nearest[0], (std::vector<int>{0, 1}));
}

TEST(NicAssign, MoreNicsThanGpusSpreadsThem) {
  std::vector<std::vector<int>> path = {{1, 1, 1, 1}, {1, 1, 1, 1}};
  std::vector<std::vector<int>> hops = {{4, 4, 4, 4}, {4, 4, 4, 4}};
  std::vector<std::vector<int>> nearest, assigned;
  epTopoAssignNics(path, hops, &nearest, &assigned);
  EXPECT_EQ(assigned, (std::vector<std::vector<int>>{{0, 1}, {2, 3}}));
}

TEST(NicAssign, HopsBreakTiesWithinAClass) {
  std::vector<std::vector<int>> path = {{2, 2}};
  std::vector<std::vector<int>> hops = {{6, 4}};
  std::vector<std::vector<int>> nearest, assigned;
  epTopoAssignNics(path, hops, &nearest, &assigned);
  EXPECT_EQ(assigned[0], std::vector<int>{1});
  epTopoAssignNics({{}}, {{}}, &nearest, &assigned);  // a GPU and no NIC
  EXPECT_TRUE(assigned[0].empty());
}

// The ep-topo tool on the DGX fixture: JSON keys the GPU-host checks rely on.
TEST(TopoTool, JsonOnFixture) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  ASSERT_GT(n, 0);
  self[n] = '\0';
  std::string dir(self);
  dir = dir.substr(0, dir.rfind('/'));
  std::string tool = dir + "/../bin/ep-topo";
  if (access(tool.c_str(), X_OK) != 0) GTEST_SKIP() << "ep-topo not built next to the tests (" << tool << ")";
  std::string cmd = tool + " --no-cuda --hca '' --json --xml " + fixture("dgx_h100.xml");
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, k);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_NE(out.find("\"bus_id\": \"0000:1b:00.0\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"nics\": [\"mlx5_3\"], \"nearest_nics\": [\"mlx5_0\",\"mlx5_3\"], \"nic_path\": \"PIX\""),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\"numa\": [{\"os_index\": 0, \"cpuset\": \"0-15\""), std::string::npos) << out;
}

// A communicator's NICs are spread over the GPUs it uses on the node, the same
// way in every process, whatever order or subset each process sees.
TEST(TopoXml, AssignAmongCommunicatorGpus) {
  auto m = load("dgx_h100.xml");
  ASSERT_TRUE(m);
  auto names = [&](const std::vector<int>& v) {
    std::string s;
    for (int n : v) s += (s.empty() ? "" : ",") + m->nics[n].name;
    return s;
  };
  // Two GPUs of one switch: one NIC each.
  auto two = epTopoAssignAmong(*m, {"0000:1b:00.0", "0000:1a:00.0"});
  EXPECT_EQ(names(two[0]), "mlx5_3");
  EXPECT_EQ(names(two[1]), "mlx5_0");
  // Alone on its switch, a GPU gets both NICs there.
  auto one = epTopoAssignAmong(*m, {"0000:1b:00.0"});
  EXPECT_EQ(names(one[0]), "mlx5_0,mlx5_3");
  // A GPU the machine does not know gets nothing (and does not disturb the others).
  auto odd = epTopoAssignAmong(*m, {"0000:ff:00.0", "0000:c2:00.0", "0000:c3:00.0"});
  EXPECT_TRUE(odd[0].empty());
  EXPECT_EQ(names(odd[1]), "mlx5_10");
  EXPECT_EQ(names(odd[2]), "mlx5_11");
}

// EP_TOPO_FILE reaches communicator init: the rank's view comes from the file,
// and a file that does not load fails init instead of being ignored.
TEST(TopoComm, TopoFileAtInit) {
  if (getenv("EP_UNITTEST_CHILD")) {
    epComm_t comm = nullptr;
    epConfig_t cfg = EP_CONFIG_INITIALIZER;
    epResult_t r = epCommInitAll(&comm, 1, nullptr, &cfg);
    if (std::string(getenv("EP_TOPO_FILE")).find("nonexistent") != std::string::npos) {
      EXPECT_EQ(r, epInvalidArgument);
      EXPECT_NE(std::string(epGetLastError(nullptr)).find("EP_TOPO_FILE"), std::string::npos);
      return;
    }
    ASSERT_EQ(r, epSuccess) << epGetLastError(nullptr);
    ASSERT_NE(comm->topo, nullptr);
    EXPECT_EQ(comm->topo->machine->hostName, "dgx-h100-fixture");
    EXPECT_EQ(comm->topo->machine->gpus.size(), 8u);
    EXPECT_EQ(comm->topo->machine->nics.size(), 7u);  // EP_IB_HCA=^mlx5_11 applies too
    EXPECT_EQ(epCommDestroy(comm), epSuccess);
    return;
  }
  EXPECT_TRUE(epRunTestInFreshProcess("TopoComm.TopoFileAtInit",
                                      {{"EP_TOPO_FILE", fixture("dgx_h100.xml").c_str()}, {"EP_IB_HCA", "^mlx5_11"}}));
  EXPECT_TRUE(epRunTestInFreshProcess("TopoComm.TopoFileAtInit", {{"EP_TOPO_FILE", "/nonexistent/x.xml"}}));
}
