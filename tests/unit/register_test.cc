/*************************************************************************
 * epcomm unit tests: argument checking of epCommRegister / epCommDeregister
 * on CPU-only communicators (the GPU cases are in tests/gpu/ht_register_test.cc).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>

#include <string>

#include "core/cuda_util.h"
#include "epcomm.h"

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

}  // namespace
