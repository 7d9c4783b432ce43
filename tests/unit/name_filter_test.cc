/*************************************************************************
 * epcomm unit tests: EP_IB_HCA / EP_SOCKET_IFNAME list grammar.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include "core/name_filter.h"

TEST(NameFilter, EmptyMatchesAll) {
  EXPECT_TRUE(epNameFilter::parse(nullptr).matches("mlx5_0", 1));
  EXPECT_TRUE(epNameFilter::parse("").matches("anything"));
}

TEST(NameFilter, PrefixByDefault) {
  epNameFilter f = epNameFilter::parse("mlx5_1");
  EXPECT_TRUE(f.matches("mlx5_1"));
  EXPECT_TRUE(f.matches("mlx5_10"));
  EXPECT_FALSE(f.matches("mlx5_0"));
}

TEST(NameFilter, ExactWithEquals) {
  epNameFilter f = epNameFilter::parse("=mlx5_1, mlx5_3");
  EXPECT_TRUE(f.matches("mlx5_1"));
  EXPECT_FALSE(f.matches("mlx5_10"));
  EXPECT_TRUE(f.matches("mlx5_3"));
}

TEST(NameFilter, ExcludeWithCaret) {
  epNameFilter f = epNameFilter::parse("^mlx5_0,mlx5_1");
  EXPECT_FALSE(f.matches("mlx5_0"));
  EXPECT_FALSE(f.matches("mlx5_11"));
  EXPECT_TRUE(f.matches("mlx5_2"));
  epNameFilter g = epNameFilter::parse("^=mlx5_1");
  EXPECT_FALSE(g.matches("mlx5_1"));
  EXPECT_TRUE(g.matches("mlx5_10"));
}

TEST(NameFilter, Ports) {
  epNameFilter f = epNameFilter::parse("mlx5_0:1,mlx5_2");
  EXPECT_TRUE(f.matches("mlx5_0", 1));
  EXPECT_FALSE(f.matches("mlx5_0", 2));
  EXPECT_TRUE(f.matches("mlx5_2", 2));
  EXPECT_TRUE(f.matches("mlx5_0", -1));  // port unknown: the name decides
  EXPECT_EQ(f.entries.size(), 2u);
  EXPECT_EQ(f.entries[0].port, 1);
}
