/*************************************************************************
 * epcomm unit tests: rank placement (hosts, virtual nodes).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <cstring>

#include "core/placement.h"

namespace {
std::vector<epRankIdentity> ids(const std::vector<uint64_t>& hosts) {
  std::vector<epRankIdentity> v(hosts.size());
  for (size_t r = 0; r < hosts.size(); r++) {
    memset(&v[r], 0, sizeof(v[r]));
    v[r].hostHash = hosts[r];
    v[r].cudaDev = (int)r;
    snprintf(v[r].hostName, sizeof(v[r].hostName), "host%llu", (unsigned long long)hosts[r]);
  }
  return v;
}
}  // namespace

TEST(Placement, HostsNumberedByFirstRank) {
  epPlacement p;
  ASSERT_EQ(epPlacementCompute(ids({7, 7, 3, 3, 7, 3}), 1, &p), epSuccess);
  EXPECT_EQ(p.nNodes, 2);
  EXPECT_EQ(p.rankNode, (std::vector<int>{0, 0, 1, 1, 0, 1}));
  EXPECT_EQ(p.rankLocal, (std::vector<int>{0, 1, 0, 1, 2, 2}));
  EXPECT_EQ(p.nodeSize, (std::vector<int>{3, 3}));
}

TEST(Placement, EmulatedNodesSplitInRankOrder) {
  epPlacement p;
  ASSERT_EQ(epPlacementCompute(ids({1, 1, 1, 1, 2, 2, 2, 2}), 2, &p), epSuccess);
  EXPECT_EQ(p.nNodes, 4);
  EXPECT_EQ(p.rankNode, (std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3}));
  EXPECT_EQ(p.rankLocal, (std::vector<int>{0, 1, 0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(p.rankHost, (std::vector<int>{0, 0, 0, 0, 1, 1, 1, 1}));
  ASSERT_EQ(epPlacementCompute(ids({1, 1, 1, 1}), 4, &p), epSuccess);
  EXPECT_EQ(p.nNodes, 4);
  EXPECT_EQ(p.rankLocal, (std::vector<int>{0, 0, 0, 0}));
}

TEST(Placement, EmulatedNodesMustDivideEveryHost) {
  epPlacement p;
  EXPECT_EQ(epPlacementCompute(ids({1, 1, 1, 2, 2, 2}), 2, &p), epInvalidUsage);
  EXPECT_EQ(epPlacementCompute(ids({1, 1}), 0, &p), epInvalidArgument);
}
