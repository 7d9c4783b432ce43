/*************************************************************************
 * epcomm GPU suites: the communicators the HT tests share.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/gpu/ht_env.h"

#include <cstdlib>

namespace {
// Port offsets under EP_COMM_ID (world.h): 0 main comm, 1 oob, 2 fault comm.
const int kFaultCommPortOffset = 2;

epConfig_t htTestConfig(int nranks, int timeoutMs) {
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.htMaxTokensPerRank = EP_HT_TEST_MAX_TOKENS;
  // Size the NVLink buffer for the largest rows and SM budget the suites use.
  size_t bytes = 0;
  if (epGetBufferSizeHint(nranks, EP_HT_TEST_MAX_HIDDEN, epBfloat16, 8, 32, &bytes) == epSuccess && bytes > 0)
    cfg.nvlBufferBytes = (long long)bytes;
  if (timeoutMs > 0) cfg.timeoutMs = timeoutMs;
  cfg.commName = "ht-tests";
  return cfg;
}

class HtEnvTeardown : public testing::Environment {
 public:
  void TearDown() override {
    HtEnv& e = htEnv();
    if (!e.initialised || !e.skipReason.empty()) return;
    htResetFaultComm();
    if (e.stream) cudaStreamSynchronize(e.stream);
    if (e.comm) epCommDestroy(e.comm);
    e.comm = nullptr;
    if (e.stream) cudaStreamDestroy(e.stream);
    e.stream = nullptr;
    epTestOobDestroy(e.oob);
    e.oob = nullptr;
  }
};
testing::Environment* const gTeardown = testing::AddGlobalTestEnvironment(new HtEnvTeardown);
}  // namespace

int htExpertsFor(int nranks, int want) { return (want + nranks - 1) / nranks * nranks; }

HtEnv& htEnv() {
  static HtEnv e;
  if (e.initialised) return e;
  e.initialised = true;
  e.world = epTestWorldFromEnv();
  e.rank = e.world.rank;
  e.nranks = e.world.size;
  e.skipReason = epTestNoGpuReason("this GPU suite needs one GPU per rank (mpirun -np N build/test/ep_gpu_tests)");
  if (!e.skipReason.empty()) return e;
  epTestDefaultCommId();
  epResult_t r = epTestOobInit(e.world, 120000, &e.oob);
  if (r != epSuccess) {
    e.initError = "test out-of-band exchange failed: " + std::string(epGetErrorString(r));
    return e;
  }
  epConfig_t cfg = htTestConfig(e.nranks, 0);
  r = epTestCommInit(e.world, &cfg, &e.comm);
  if (r != epSuccess) {
    e.initError = "epCommInitRank failed: " + epTestErrText(r, nullptr);
    e.comm = nullptr;
    return e;
  }
  epCommNodeCount(e.comm, &e.nNodes);
  if (cudaStreamCreateWithFlags(&e.stream, cudaStreamNonBlocking) != cudaSuccess)
    e.initError = "cudaStreamCreate failed";
  return e;
}

epComm_t htFaultComm(std::string* error) {
  HtEnv& e = htEnv();
  if (e.faultComm) return e.faultComm;
  // Bounded waits: a fault test that wedges a peer must end in epTimeout.
  const char* t = getenv("EP_TEST_FAULT_TIMEOUT_MS");
  epConfig_t cfg = htTestConfig(e.nranks, t ? atoi(t) : 5000);
  cfg.commName = "ht-fault-tests";
  epResult_t r = epTestCommInitAt(e.rank, e.nranks, kFaultCommPortOffset, &cfg, &e.faultComm);
  if (r != epSuccess) {
    *error = "fault comm init failed: " + epTestErrText(r, nullptr);
    e.faultComm = nullptr;
  }
  return e.faultComm;
}

void htResetFaultComm() {
  HtEnv& e = htEnv();
  if (!e.faultComm) return;
  if (e.stream) cudaStreamSynchronize(e.stream);
  epCommDestroy(e.faultComm);
  e.faultComm = nullptr;
}
