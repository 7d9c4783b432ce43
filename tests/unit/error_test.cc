/*************************************************************************
 * epcomm unit tests: error strings, last-error text per thread and comm.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>

#include "core/async_error.h"
#include "epcomm.h"

TEST(Errors, EveryCodeHasItsOwnString) {
  std::set<std::string> seen;
  for (int r = 0; r < epNumResults; r++) {
    const char* s = epGetErrorString((epResult_t)r);
    ASSERT_NE(s, nullptr);
    EXPECT_GT(strlen(s), 5u) << r;
    EXPECT_TRUE(seen.insert(s).second) << "duplicate string for code " << r;
  }
  EXPECT_STREQ(epGetErrorString((epResult_t)999), "unknown result code");
  EXPECT_STREQ(epGetErrorString(epTimeout), "timeout: a peer or a device wait did not complete in time");
}

TEST(Errors, VersionMatchesHeader) {
  int v = 0;
  EXPECT_EQ(epGetVersion(&v), epSuccess);
  EXPECT_EQ(v, EP_VERSION_CODE);
  EXPECT_EQ(v, EP_MAJOR * 10000 + EP_MINOR * 100 + EP_PATCH);
  EXPECT_EQ(epGetVersion(nullptr), epInvalidArgument);
}

TEST(Errors, LastErrorIsPerThread) {
  EXPECT_EQ(epGetVersion(nullptr), epInvalidArgument);
  std::string mine = epGetLastError(nullptr);
  EXPECT_NE(mine.find("version"), std::string::npos) << mine;
  std::string other;
  std::thread t([&] {
    other = epGetLastError(nullptr);  // a fresh thread has seen no error
    epComm_t c = nullptr;
    EXPECT_EQ(epCommCount(c, nullptr), epInvalidArgument);
  });
  t.join();
  EXPECT_EQ(other, "");
  EXPECT_EQ(std::string(epGetLastError(nullptr)), mine);  // the other thread's error did not leak here
}

TEST(AsyncErrors, DeviceStatusMessagesNameTheCulprit) {
  char msg[512];
  epDeviceStatus s = {EP_DEVERR_BAD_EXPERT_ID, 17, 3, 300, 1};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epInvalidArgument);
  EXPECT_NE(std::string(msg).find("expert id 300"), std::string::npos) << msg;
  EXPECT_NE(std::string(msg).find("token 17"), std::string::npos) << msg;
  EXPECT_NE(std::string(msg).find("slot 3"), std::string::npos) << msg;
  s = {EP_DEVERR_CAPACITY_OVERFLOW, 4096, 0, 5000, 2};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epInvalidUsage);
  EXPECT_NE(std::string(msg).find("5000 rows needed"), std::string::npos) << msg;
  EXPECT_NE(std::string(msg).find("LL"), std::string::npos) << msg;
  s = {EP_DEVERR_TIMEOUT, 5, 6, 99, 3};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epTimeout);
  EXPECT_NE(std::string(msg).find("channel 5"), std::string::npos) << msg;
  EXPECT_NE(std::string(msg).find("peer rank 6"), std::string::npos) << msg;
  s = {EP_DEVERR_NODE_LIMIT, 9, 4, 6, 1};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epInvalidArgument);
  EXPECT_NE(std::string(msg).find("token 9"), std::string::npos) << msg;
  s = {EP_DEVERR_BAD_HANDLE, 0, 0, 0, 1};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epInvalidUsage);
  // LL mode mismatch, a dispatch: mine FP8 + dedup + lines (7), theirs BF16 + dedup, release (2).
  s = {EP_DEVERR_LL_MODE_MISMATCH, 1, 3, 7 | (2 << 8), 2};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epInvalidUsage);
  EXPECT_NE(std::string(msg).find("rank 1 made this dispatch with fp8=1 dedup=1 protocol=lines"), std::string::npos)
      << msg;
  EXPECT_NE(std::string(msg).find("rank 3 with fp8=0 dedup=1 protocol=release"), std::string::npos) << msg;
  // ... a combine (bit 16): mine per-expert rows, release (0); theirs reduced, lines (5).
  s = {EP_DEVERR_LL_MODE_MISMATCH, 0, 2, 0 | (5 << 8) | (1 << 16), 2};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epInvalidUsage);
  EXPECT_NE(std::string(msg).find("rank 0 made this combine with reduceOnSender=0 protocol=release"),
            std::string::npos)
      << msg;
  EXPECT_NE(std::string(msg).find("rank 2 with reduceOnSender=1 protocol=lines"), std::string::npos) << msg;
  s = {EP_DEVERR_NONE, 0, 0, 0, 0};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epSuccess);
  s = {77, 0, 0, 0, 0};
  EXPECT_EQ(epDeviceStatusDescribe(s, msg, sizeof(msg)), epInternalError);
}
