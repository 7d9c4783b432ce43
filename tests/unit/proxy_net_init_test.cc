/*************************************************************************
 * epcomm unit tests: epNetInit on CPU communicators: transport selection
 * errors surface with the knob to change, and a failed init leaves no
 * half-built state behind.
 *************************************************************************/
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "core/comm.h"
#include "core/cuda_util.h"
#include "transports/ib/ib_backend.h"
#include "transports/proxy/net.h"

namespace {

void destroyAll(epComm_t* comms, int n) {
  std::vector<std::thread> ts;
  for (int i = 0; i < n; i++) ts.emplace_back([&, i] { epCommDestroy(comms[i]); });
  for (auto& t : ts) t.join();
}

TEST(ProxyNetInit, NoNicAndNoEmulationNamesEpNet) {
  if (epCudaDeviceCount() > 0) GTEST_SKIP() << "CUDA device present: this case covers GPU-less ranks";
  epComm_t comm;
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.bootstrapTimeoutMs = 5000;
  ASSERT_EQ(epCommInitAll(&comm, 1, nullptr, &cfg), epSuccess) << epGetLastError(nullptr);
  std::string why;
  if (epIbProbe(comm, &why) == epSuccess) {
    epCommDestroy(comm);
    GTEST_SKIP() << "this machine has a usable RDMA port: the no-NIC error cannot be provoked";
  }
  {
    EP_COMM_SCOPE(comm);  // as the API entry point that calls epNetInit does
    EXPECT_EQ(epNetInit(comm, 2, 0), epNotSupported);
  }
  std::string msg = epGetLastError(comm);
  EXPECT_NE(msg.find("EP_NET"), std::string::npos) << msg;
  EXPECT_NE(msg.find(why), std::string::npos) << "the probe's reason is lost: " << msg;
  EXPECT_EQ(comm->net, nullptr);
  EXPECT_EQ(epCommDestroy(comm), epSuccess);
}

TEST(ProxyNetInit, EmulationNeedsGpusAndFailsCleanly) {
  if (epCudaDeviceCount() > 0) GTEST_SKIP() << "CUDA device present: this case covers GPU-less ranks";
  epComm_t comms[2];
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.bootstrapTimeoutMs = 5000;
  cfg.emulateNodes = 2;  // implies the emulated transport
  ASSERT_EQ(epCommInitAll(comms, 2, nullptr, &cfg), epSuccess) << epGetLastError(nullptr);
  std::vector<epResult_t> res(2);
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; i++)
    ts.emplace_back([&, i] {
      EP_COMM_SCOPE(comms[i]);
      res[i] = epNetInit(comms[i], 1, 1);
    });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 2; i++) {
    EXPECT_EQ(res[i], epInvalidUsage);
    std::string msg = epGetLastError(comms[i]);
    EXPECT_NE(msg.find("needs a GPU on every rank"), std::string::npos) << msg;
    EXPECT_EQ(comms[i]->net, nullptr) << "a failed init must not leave state that a retry would accept";
  }
  destroyAll(comms, 2);
}

TEST(ProxyNetInit, ArgumentChecks) {
  epComm_t comm;
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.bootstrapTimeoutMs = 5000;
  if (epCudaDeviceCount() > 0) GTEST_SKIP() << "CUDA device present: this case covers GPU-less ranks";
  ASSERT_EQ(epCommInitAll(&comm, 1, nullptr, &cfg), epSuccess);
  EXPECT_EQ(epNetInit(comm, 0, 0), epInvalidArgument);
  EXPECT_EQ(epNetInit(comm, 1000, 100), epInvalidArgument);
  int id;
  char buf[64];
  EXPECT_EQ(epNetRegisterWindow(comm, buf, sizeof(buf), &id), epInvalidUsage) << "before epNetInit";
  epNetDevice dev;
  EXPECT_EQ(epNetGetDevice(comm, &dev), epInvalidUsage);
  EXPECT_EQ(epNetCheck(comm), epSuccess);
  EXPECT_EQ(epCommDestroy(comm), epSuccess);
}

}  // namespace
