/*************************************************************************
 * epcomm unit tests: epEplbAllReduceLoad across forked CPU ranks (a
 * communicator without GPUs), including mismatched counts.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/debug.h"
#include "epcomm.h"
#include "tests/unit/fork_ranks.h"

namespace {

epResult_t join(const std::string& commId, int rank, int n, epComm_t* comm) {
  setenv("EP_COMM_ID", commId.c_str(), 1);
  epUniqueId id;
  epResult_t r = epGetUniqueId(&id);
  if (r != epSuccess) return r;
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.bootstrapTimeoutMs = 20000;
  return epCommInitRank(comm, n, id, rank, &cfg);
}

class EplbAllReduce : public ::testing::TestWithParam<int> {};

TEST_P(EplbAllReduce, SumsLoadTablesInRankOrder) {
  const int n = GetParam();
  const std::string commId = epFreeCommId();
  const size_t L = 3, E = 256;
  auto res = epForkRanks(n, [&](int rank, std::string* report) {
    epComm_t comm = nullptr;
    if (join(commId, rank, n, &comm) != epSuccess) {
      *report = std::string("init: ") + epGetLastError(nullptr);
      return 1;
    }
    std::vector<long long> local(L * E), global(L * E, -1);
    for (size_t i = 0; i < L * E; i++) local[i] = (long long)(rank + 1) * 1000003LL * (long long)(i + 1);
    if (epEplbAllReduceLoad(comm, local.data(), global.data(), L * E) != epSuccess) {
      *report = std::string("allreduce: ") + epGetLastError(comm);
      return 2;
    }
    const long long ranksum = (long long)n * (n + 1) / 2;
    for (size_t i = 0; i < L * E; i++)
      if (global[i] != ranksum * 1000003LL * (long long)(i + 1)) {
        *report = "entry " + std::to_string(i) + " = " + std::to_string(global[i]);
        return 3;
      }
    // In place.
    if (epEplbAllReduceLoad(comm, local.data(), local.data(), L * E) != epSuccess || local != global) {
      *report = "in-place allreduce differs";
      return 4;
    }
    epCommDestroy(comm);
    return 0;
  });
  for (int r = 0; r < n; r++) EXPECT_EQ(res[r].exitCode, 0) << "rank " << r << ": " << res[r].report;
}
INSTANTIATE_TEST_SUITE_P(Ranks, EplbAllReduce, ::testing::Values(1, 2, 4));

TEST(EplbAllReduceErrors, MismatchedCountsFailOnEveryRank) {
  const std::string commId = epFreeCommId();
  auto res = epForkRanks(3, [&](int rank, std::string* report) {
    epComm_t comm = nullptr;
    if (join(commId, rank, 3, &comm) != epSuccess) {
      *report = std::string("init: ") + epGetLastError(nullptr);
      return 1;
    }
    std::vector<long long> v(16, 1);
    epResult_t r = epEplbAllReduceLoad(comm, v.data(), v.data(), rank == 1 ? 15 : 16);
    *report = epGetLastError(comm);
    epCommDestroy(comm);
    return r == epInvalidArgument ? 0 : 10 + (int)r;
  });
  for (int r = 0; r < 3; r++) {
    EXPECT_EQ(res[r].exitCode, 0) << "rank " << r << ": " << res[r].report;
    EXPECT_NE(res[r].report.find("every rank must pass the same count"), std::string::npos) << res[r].report;
  }
}

TEST(EplbAllReduceErrors, NullComm) {
  long long x = 0;
  EXPECT_NE(epEplbAllReduceLoad(nullptr, &x, &x, 1), epSuccess);
}

}  // namespace
