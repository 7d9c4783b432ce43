/*************************************************************************
 * epcomm unit tests that need several processes from a launcher:
 *   mpirun --oversubscribe -np 4 build/test/ep_unit_tests --gtest_filter='MpiWorld.*'
 *   scripts/eprun -np 4 build/test/ep_unit_tests --gtest_filter='MpiWorld.*'
 * (tests/run_mpi_tests.sh does this for `make test`). MPI is only the
 * launcher: ranks meet through epcomm's bootstrap at EP_COMM_ID. Run as a
 * single process, each case skips and says why.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "core/comm.h"
#include "core/hash.h"
#include "tests/common/world.h"

namespace {
class MpiWorld : public ::testing::Test {
 protected:
  void SetUp() override {
    w_ = epTestWorldFromEnv();
    if (w_.size < 2) GTEST_SKIP() << "not started by a multi-process launcher (mpirun/eprun): single process";
  }
  epTestWorld w_;
};
}  // namespace

TEST_F(MpiWorld, InitRankQueriesAndCollectives) {
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.bootstrapTimeoutMs = 20000;
  epComm_t comm = nullptr;
  ASSERT_EQ(epTestCommInit(w_, &cfg, &comm), epSuccess) << epGetLastError(nullptr);
  int rank = -1, n = -1, local = -1, lsize = -1, nodes = -1;
  EXPECT_EQ(epCommUserRank(comm, &rank), epSuccess);
  EXPECT_EQ(epCommCount(comm, &n), epSuccess);
  EXPECT_EQ(epCommLocalRank(comm, &local), epSuccess);
  EXPECT_EQ(epCommLocalSize(comm, &lsize), epSuccess);
  EXPECT_EQ(epCommNodeCount(comm, &nodes), epSuccess);
  EXPECT_EQ(rank, w_.rank);
  EXPECT_EQ(n, w_.size);
  EXPECT_EQ(local, w_.localRank);
  EXPECT_EQ(lsize, w_.localSize);
  EXPECT_EQ(nodes, w_.size / w_.localSize);
  // Every rank's process token through the bootstrap matches the placement record.
  std::vector<uint64_t> procs(n);
  procs[rank] = comm->rankProc[rank];
  EXPECT_EQ(procs[rank], epProcessToken());
  ASSERT_EQ(epBootstrapAllGather(comm->bootstrap, procs.data(), sizeof(uint64_t)), epSuccess);
  for (int r = 0; r < n; r++) EXPECT_EQ(procs[r], comm->rankProc[r]);
  int64_t token = rank == n - 1 ? 0x1234567 : 0;
  ASSERT_EQ(epBootstrapBroadcast(comm->bootstrap, &token, sizeof(token), n - 1), epSuccess);
  EXPECT_EQ(token, 0x1234567);
  EXPECT_EQ(epCommDestroy(comm), epSuccess) << epGetLastError(nullptr);
}
