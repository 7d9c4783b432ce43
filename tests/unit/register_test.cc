/*************************************************************************
 * epcomm unit tests: argument checking of epCommRegister / epCommDeregister
 * on CPU-only communicators (the GPU cases are in tests/gpu/ht_register_test.cc).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "core/cuda_util.h"
#include "epcomm.h"
#include "tests/unit/fork_ranks.h"

namespace {

epConfig_t quickConfig() {
  epConfig_t c = EP_CONFIG_INITIALIZER;
  c.bootstrapTimeoutMs = 5000;
  return c;
}

TEST(RegisterBadInput, NullCommunicator) {
  char buf[64];
  void* h = &buf;
  EXPECT_EQ(epInvalidArgument, epCommRegister(nullptr, buf, sizeof(buf), &h));
  EXPECT_EQ(epInvalidArgument, epCommDeregister(nullptr, h));
}

TEST(RegisterBadInput, NullHandleOutput) {
  epComm_t comm;
  epConfig_t cfg = quickConfig();
  ASSERT_EQ(epSuccess, epCommInitAll(&comm, 1, nullptr, &cfg)) << epGetLastError(nullptr);
  char buf[64];
  EXPECT_EQ(epInvalidArgument, epCommRegister(comm, buf, sizeof(buf), nullptr));
  EXPECT_NE(std::string::npos, std::string(epGetLastError(comm)).find("handle")) << epGetLastError(comm);
  EXPECT_EQ(epSuccess, epCommDestroy(comm));
}

TEST(RegisterBadInput, GpuLessRankCannotRegister) {
  if (epCudaDeviceCount() > 0) GTEST_SKIP() << "CUDA device present: this case covers GPU-less ranks";
  epComm_t comm;
  epConfig_t cfg = quickConfig();
  ASSERT_EQ(epSuccess, epCommInitAll(&comm, 1, nullptr, &cfg)) << epGetLastError(nullptr);
  char buf[64];
  void* h = &buf;
  EXPECT_EQ(epInvalidUsage, epCommRegister(comm, buf, sizeof(buf), &h));
  EXPECT_EQ(nullptr, h) << "a failed registration leaves *handle NULL";
  EXPECT_NE(std::string::npos, std::string(epGetLastError(comm)).find("no CUDA device")) << epGetLastError(comm);
  EXPECT_EQ(epSuccess, epCommDestroy(comm));
}

TEST(RegisterBadInput, DeregisterUnknownHandle) {
  epComm_t comm;
  epConfig_t cfg = quickConfig();
  ASSERT_EQ(epSuccess, epCommInitAll(&comm, 1, nullptr, &cfg)) << epGetLastError(nullptr);
  char notAHandle[16];
  EXPECT_EQ(epInvalidArgument, epCommDeregister(comm, nullptr));
  EXPECT_NE(std::string::npos, std::string(epGetLastError(comm)).find("not a live registration"))
      << epGetLastError(comm);
  EXPECT_EQ(epInvalidArgument, epCommDeregister(comm, notAHandle));
  EXPECT_EQ(epSuccess, epCommDestroy(comm));
}

// A rank whose local checks fail (here: NULL handle on rank 0) still takes
// part in the registration's exchange, so its peers fail with it at once,
// naming the first rank that failed, instead of waiting for it until the
// bootstrap timeout. (Other ranks fail locally too on GPU-less machines; the
// point is that every rank returns the SAME code, well before the timeout.)
TEST(RegisterBadInput, LocalFailureOnOneRankFailsEveryRankPromptly) {
  const std::string commId = epFreeCommId();
  const int n = 3;
  auto res = epForkRanks(n, [&](int rank, std::string* report) {
    setenv("EP_COMM_ID", commId.c_str(), 1);
    epUniqueId id;
    if (epGetUniqueId(&id) != epSuccess) return 10;
    epConfig_t cfg = quickConfig();
    cfg.bootstrapTimeoutMs = 20000;  // a rank left waiting would take this long
    epComm_t comm = nullptr;
    if (epCommInitRank(&comm, n, id, rank, &cfg) != epSuccess) {
      *report = epGetLastError(nullptr);
      return 11;
    }
    char buf[64];
    void* h = &buf;
    const auto t0 = std::chrono::steady_clock::now();
    const epResult_t r = epCommRegister(comm, buf, sizeof(buf), rank == 0 ? nullptr : &h);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    *report = std::to_string((int)r) + " in " + std::to_string(sec) + " s: " + epGetLastError(comm);
    epCommDestroy(comm);
    if (r != epInvalidArgument) return 1;  // rank 0's code, on every rank (rank 0 is the first failure)
    if (sec > 5.0) return 2;
    if (rank != 0 && h != nullptr) return 3;
    return 0;
  });
  for (int r = 0; r < n; r++) EXPECT_EQ(0, res[r].exitCode) << "rank " << r << ": " << res[r].report;
}

}  // namespace
