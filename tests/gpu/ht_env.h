/*************************************************************************
 * epcomm GPU suites: the communicators and helpers the HT tests share.
 * SPDX-License-Identifier: Apache-2.0
 *
 * One main communicator per process for the whole binary, created on first
 * use (collectively: every rank runs the same tests) and destroyed by a gtest
 * environment at exit. Tests that provoke device-side errors or timeouts use
 * the separate "fault" communicator so that the main one stays clean.
 *
 * EP_HT_REQUIRE_GPU() at the top of every test: without a GPU it skips with
 * "no CUDA device: <reason>"; if the communicator could not be created it
 * fails with the reason.
 *************************************************************************/
#ifndef EP_TESTS_GPU_HT_ENV_H_
#define EP_TESTS_GPU_HT_ENV_H_

#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "epcomm.h"
#include "tests/common/oob.h"
#include "tests/common/world.h" /* epTestErrText, epTestNoGpuReason */

/* Largest tokens per rank the HT suites use (the comm's htMaxTokensPerRank). */
#define EP_HT_TEST_MAX_TOKENS 4096
/* Largest hidden size the HT suites use (sizes the NVLink buffer). */
#define EP_HT_TEST_MAX_HIDDEN 8192

struct HtEnv {
  bool initialised = false;
  std::string skipReason;  /* non-empty: no GPU */
  std::string initError;   /* non-empty: comm creation failed */
  epTestWorld world;
  int rank = 0, nranks = 1, nNodes = 1;
  epComm_t comm = nullptr;
  epComm_t faultComm = nullptr;
  epTestOob* oob = nullptr;
  cudaStream_t stream = nullptr;
};

/* Initialises on first call (collective). */
HtEnv& htEnv();
/* The fault communicator (collective on first call); nullptr + message on failure. */
epComm_t htFaultComm(std::string* error);
/* Destroys the fault communicator (collective) so the next htFaultComm() is fresh. */
void htResetFaultComm();

/* Registrations of one test (epCommRegister), released in reverse order by
 * the destructor. Collective: every rank adds the same buffers in the same
 * order. Declare it after the buffers it registers (destroyed first). */
struct HtRegs {
  epComm_t comm = nullptr;
  std::vector<void*> handles;
  explicit HtRegs(epComm_t c) : comm(c) {}
  HtRegs(const HtRegs&) = delete;
  HtRegs& operator=(const HtRegs&) = delete;
  epResult_t add(void* p, size_t bytes) {
    void* h = nullptr;
    epResult_t r = epCommRegister(comm, p, bytes, &h);
    if (r == epSuccess) handles.push_back(h);
    return r;
  }
  void clear() {
    for (size_t i = handles.size(); i-- > 0;) (void)epCommDeregister(comm, handles[i]);
    handles.clear();
  }
  ~HtRegs() { clear(); }
};

/* Experts for this many ranks: `want` if divisible, else the next multiple of nranks. */
int htExpertsFor(int nranks, int want);


#define EP_HT_REQUIRE_GPU()                                                    \
  do {                                                                         \
    HtEnv& env_ = htEnv();                                                     \
    if (!env_.skipReason.empty()) GTEST_SKIP() << env_.skipReason;             \
    if (!env_.initError.empty()) FAIL() << env_.initError;                     \
  } while (0)

#define EP_HT_ASSERT_CUDA(call)                                                \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    ASSERT_EQ(cudaSuccess, e_) << #call << ": " << cudaGetErrorString(e_);     \
  } while (0)
#define EP_HT_ASSERT_OK(call, comm)                                            \
  do {                                                                         \
    epResult_t r_ = (call);                                                    \
    ASSERT_EQ(epSuccess, r_) << #call << " -> " << epTestErrText(r_, comm);            \
  } while (0)

#endif  // EP_TESTS_GPU_HT_ENV_H_
