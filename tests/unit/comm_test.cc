/*************************************************************************
 * epcomm unit tests: communicators (CPU-only ranks), bad input, placement.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

#include "bootstrap/bootstrap.h"
#include "core/comm.h"
#include "core/hash.h"
#include "core/cuda_util.h"
#include "device/status.h"
#include "epcomm.h"
#include "tests/unit/fork_ranks.h"
#include "topo/topo.h"

namespace {

std::string lastError(epComm_t c = nullptr) { return epGetLastError(c); }

// Init through EP_COMM_ID in a forked child (each child derives the same id).
epResult_t childInit(const std::string& commId, int rank, int n, const epConfig_t* cfg, epComm_t* comm) {
  setenv("EP_COMM_ID", commId.c_str(), 1);
  epUniqueId id;
  epResult_t r = epGetUniqueId(&id);
  if (r != epSuccess) return r;
  return epCommInitRank(comm, n, id, rank, cfg);
}

epConfig_t quickConfig() {
  epConfig_t c = EP_CONFIG_INITIALIZER;
  c.bootstrapTimeoutMs = 5000;
  return c;
}

bool haveGpu() { return epCudaDeviceCount() > 0; }

}  // namespace

TEST(Comm, InitAllCpuRanksAndQueries) {
  if (haveGpu()) GTEST_SKIP() << "CUDA device present: this case covers GPU-less ranks";
  const int n = 4;
  epComm_t comms[n];
  epConfig_t cfg = quickConfig();
  ASSERT_EQ(epCommInitAll(comms, n, nullptr, &cfg), epSuccess) << lastError();
  for (int i = 0; i < n; i++) {
    int v = -9;
    EXPECT_EQ(epCommUserRank(comms[i], &v), epSuccess);
    EXPECT_EQ(v, i);
    EXPECT_EQ(epCommCount(comms[i], &v), epSuccess);
    EXPECT_EQ(v, n);
    EXPECT_EQ(epCommCuDevice(comms[i], &v), epSuccess);
    EXPECT_EQ(v, -1);
    EXPECT_EQ(epCommLocalRank(comms[i], &v), epSuccess);
    EXPECT_EQ(v, i);
    EXPECT_EQ(epCommLocalSize(comms[i], &v), epSuccess);
    EXPECT_EQ(v, n);
    EXPECT_EQ(epCommNodeIndex(comms[i], &v), epSuccess);
    EXPECT_EQ(v, 0);
    EXPECT_EQ(epCommNodeCount(comms[i], &v), epSuccess);
    EXPECT_EQ(v, 1);
    std::vector<int> peers(n, -1);
    EXPECT_EQ(epCommNvlinkPeers(comms[i], peers.data(), n), epSuccess);
    for (int r = 0; r < n; r++) EXPECT_EQ(peers[r], r == i ? 1 : 0) << "no GPU: only self is reachable";
    size_t bytes = 99;
    EXPECT_EQ(epCommMemoryUsage(comms[i], &bytes), epSuccess);
    EXPECT_EQ(bytes, 0u);
    epResult_t async = epInternalError;
    EXPECT_EQ(epCommGetAsyncError(comms[i], &async), epSuccess);
    EXPECT_EQ(async, epSuccess);
    EXPECT_EQ(comms[i]->commHash, comms[0]->commHash);
    EXPECT_NE(comms[i]->commHash, 0u);
  }
  // Destroy is collective (closing barrier): run the ranks' destroys concurrently.
  std::vector<std::thread> ts;
  std::vector<epResult_t> res(n);
  for (int i = 0; i < n; i++) ts.emplace_back([&, i] { res[i] = epCommDestroy(comms[i]); });
  for (auto& t : ts) t.join();
  for (int i = 0; i < n; i++) EXPECT_EQ(res[i], epSuccess);
}

TEST(Comm, EmulatedNodesSplitEachHost) {
  if (haveGpu()) GTEST_SKIP() << "CUDA device present: this case covers GPU-less ranks";
  epComm_t comms[4];
  epConfig_t cfg = quickConfig();
  cfg.emulateNodes = 2;
  ASSERT_EQ(epCommInitAll(comms, 4, nullptr, &cfg), epSuccess) << lastError();
  int expectNode[4] = {0, 0, 1, 1}, expectLocal[4] = {0, 1, 0, 1};
  for (int i = 0; i < 4; i++) {
    int v;
    epCommNodeCount(comms[i], &v);
    EXPECT_EQ(v, 2);
    epCommNodeIndex(comms[i], &v);
    EXPECT_EQ(v, expectNode[i]);
    epCommLocalRank(comms[i], &v);
    EXPECT_EQ(v, expectLocal[i]);
    epCommLocalSize(comms[i], &v);
    EXPECT_EQ(v, 2);
  }
  for (int i = 0; i < 4; i++) EXPECT_EQ(epCommAbort(comms[i]), epSuccess);
}

TEST(Comm, EmulatedNodesMustDivide) {
  epComm_t comms[4];
  epConfig_t cfg = quickConfig();
  cfg.emulateNodes = 3;
  EXPECT_EQ(epCommInitAll(comms, 4, nullptr, &cfg), epInvalidUsage);
  for (int i = 0; i < 4; i++) EXPECT_EQ(comms[i], nullptr);
  // The reason, found in a per-rank init thread, reaches the caller's thread.
  EXPECT_NE(lastError().find("EP_EMULATE_NODES=3 does not divide"), std::string::npos) << lastError();
}

TEST(Comm, MultiProcessInitRank) {
  for (int n : {2, 5, 8}) {
    std::string commId = epFreeCommId();
    auto res = epForkRanks(n, [&](int rank, std::string* report) {
      epConfig_t cfg = quickConfig();
      epComm_t comm = nullptr;
      if (childInit(commId, rank, n, &cfg, &comm) != epSuccess) {
        *report = lastError();
        return 1;
      }
      int v = -1, node = -1, local = -1;
      epCommCount(comm, &v);
      epCommNodeIndex(comm, &node);
      epCommLocalRank(comm, &local);
      if (v != n || node != 0 || local != rank) return 2;
      // commHash must agree: gather it through the bootstrap.
      std::vector<uint64_t> h(n);
      h[rank] = comm->commHash;
      if (epBootstrapAllGather(comm->bootstrap, h.data(), sizeof(uint64_t)) != epSuccess) return 3;
      for (uint64_t x : h)
        if (x != h[0]) return 4;
      return epCommDestroy(comm) == epSuccess ? 0 : 5;
    });
    for (int r = 0; r < n; r++) EXPECT_EQ(res[r].exitCode, 0) << "n=" << n << " rank " << r << ": " << res[r].report;
  }
}

// Two "hosts" (EP_HOSTID differs) of 2 ranks each, interleaved rank order.
TEST(Comm, PlacementAcrossHosts) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(4, [&](int rank, std::string* report) {
    setenv("EP_HOSTID", rank % 2 ? "hostB" : "hostA", 1);
    epConfig_t cfg = quickConfig();
    epComm_t comm = nullptr;
    if (childInit(commId, rank, 4, &cfg, &comm) != epSuccess) {
      *report = lastError();
      return 1;
    }
    int node, nodes, local, lsize;
    epCommNodeIndex(comm, &node);
    epCommNodeCount(comm, &nodes);
    epCommLocalRank(comm, &local);
    epCommLocalSize(comm, &lsize);
    *report = std::to_string(node) + "/" + std::to_string(nodes) + " " + std::to_string(local) + "/" +
              std::to_string(lsize);
    epCommDestroy(comm);
    return 0;
  });
  const char* expect[4] = {"0/2 0/2", "1/2 0/2", "0/2 1/2", "1/2 1/2"};
  for (int r = 0; r < 4; r++) {
    EXPECT_EQ(res[r].exitCode, 0) << res[r].report;
    EXPECT_EQ(res[r].report, expect[r]) << "rank " << r;
  }
}

TEST(Comm, MismatchedConfigAcrossRanks) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(3, [&](int rank, std::string* report) {
    epConfig_t cfg = quickConfig();
    cfg.numSms = rank == 2 ? 16 : 20;
    epComm_t comm = nullptr;
    epResult_t r = childInit(commId, rank, 3, &cfg, &comm);
    *report = lastError();
    return r == epInvalidUsage && comm == nullptr ? 0 : 10 + (int)r;
  });
  for (int r = 0; r < 3; r++) {
    EXPECT_EQ(res[r].exitCode, 0) << res[r].report;
    EXPECT_NE(res[r].report.find("mismatched config across ranks"), std::string::npos) << res[r].report;
    EXPECT_NE(res[r].report.find("numSms"), std::string::npos) << res[r].report;
    EXPECT_NE(res[r].report.find("rank 2"), std::string::npos) << res[r].report;
  }
}

TEST(Comm, MissingRankTimesOut) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(2, [&](int rank, std::string* report) {
    epConfig_t cfg = quickConfig();
    cfg.bootstrapTimeoutMs = 1500;
    epComm_t comm = nullptr;
    epResult_t r = childInit(commId, rank, 3, &cfg, &comm);  // rank 2 never comes
    *report = lastError();
    return r == epTimeout ? 0 : 10 + (int)r;
  }, 30);
  for (int r = 0; r < 2; r++) {
    EXPECT_EQ(res[r].exitCode, 0) << res[r].report;
    EXPECT_NE(res[r].report.find("rank(s) 2 of 3"), std::string::npos) << res[r].report;
  }
}

// "Same process" (raw peer pointers instead of IPC) is decided by a token:
// stable within a process, different in a forked child (which inherits the
// parent's memory, so a cached value alone would not do).
TEST(Comm, ProcessTokenIsStableAndDiffersAfterFork) {
  const uint64_t mine = epProcessToken();
  EXPECT_EQ(mine, epProcessToken());
  EXPECT_NE(0ull, mine);
  auto res = epForkRanks(2, [&](int rank, std::string* report) {
    const uint64_t t = epProcessToken();
    *report = std::to_string(t);
    return t != mine && t == epProcessToken() ? 0 : 1;
  });
  for (int r = 0; r < 2; r++) EXPECT_EQ(0, res[r].exitCode) << "child " << r << " token " << res[r].report;
  EXPECT_NE(res[0].report, res[1].report) << "two children got the same token";
}

TEST(Comm, DestroyTimesOutWhenPeerIsGone) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(2, [&](int rank, std::string* report) {
    epConfig_t cfg = quickConfig();
    cfg.bootstrapTimeoutMs = 500;
    epComm_t comm = nullptr;
    if (childInit(commId, rank, 2, &cfg, &comm) != epSuccess) return 1;
    if (rank == 1) {
      sleep(2);  // alive but never destroys
      return 0;
    }
    epResult_t r = epCommDestroy(comm);
    *report = lastError();
    return r == epTimeout ? 0 : 10 + (int)r;
  }, 30);
  EXPECT_EQ(res[0].exitCode, 0) << res[0].report;
  EXPECT_NE(res[0].report.find("rank(s) 1"), std::string::npos) << res[0].report;
}

/* ---------------------------------------------------------------- bad input */

TEST(CommBadInput, NullPointers) {
  epUniqueId id;
  memset(&id, 0, sizeof(id));
  EXPECT_EQ(epGetUniqueId(nullptr), epInvalidArgument);
  EXPECT_NE(lastError().find("uniqueId"), std::string::npos) << lastError();
  EXPECT_EQ(epCommInitRank(nullptr, 1, id, 0, nullptr), epInvalidArgument);
  EXPECT_NE(lastError().find("newcomm"), std::string::npos) << lastError();
  EXPECT_EQ(epCommInitAll(nullptr, 2, nullptr, nullptr), epInvalidArgument);
  int v;
  EXPECT_EQ(epCommUserRank(nullptr, &v), epInvalidArgument);
  EXPECT_NE(lastError().find("comm is NULL"), std::string::npos) << lastError();
  EXPECT_EQ(epCommCount(nullptr, &v), epInvalidArgument);
  EXPECT_EQ(epCommCuDevice(nullptr, &v), epInvalidArgument);
  EXPECT_EQ(epCommLocalRank(nullptr, &v), epInvalidArgument);
  EXPECT_EQ(epCommLocalSize(nullptr, &v), epInvalidArgument);
  EXPECT_EQ(epCommNodeIndex(nullptr, &v), epInvalidArgument);
  EXPECT_EQ(epCommNodeCount(nullptr, &v), epInvalidArgument);
  EXPECT_EQ(epCommNvlinkPeers(nullptr, &v, 1), epInvalidArgument);
  size_t b;
  EXPECT_EQ(epCommMemoryUsage(nullptr, &b), epInvalidArgument);
  epResult_t a;
  EXPECT_EQ(epCommGetAsyncError(nullptr, &a), epInvalidArgument);
}

TEST(CommBadInput, NullOutputOnLiveComm) {
  epComm_t comm;
  epConfig_t cfg = quickConfig();
  ASSERT_EQ(epCommInitAll(&comm, 1, nullptr, &cfg), epSuccess) << lastError();
  EXPECT_EQ(epCommUserRank(comm, nullptr), epInvalidArgument);
  // The message is kept on the communicator (and on the thread).
  EXPECT_NE(lastError(comm).find("epCommUserRank"), std::string::npos) << lastError(comm);
  EXPECT_EQ(epCommCount(comm, nullptr), epInvalidArgument);
  EXPECT_EQ(epCommNvlinkPeers(comm, nullptr, 1), epInvalidArgument);
  int peers[4];
  EXPECT_EQ(epCommNvlinkPeers(comm, peers, 4), epInvalidArgument);
  EXPECT_NE(lastError(comm).find("nranks 4"), std::string::npos) << lastError(comm);
  EXPECT_EQ(epCommGetAsyncError(comm, nullptr), epInvalidArgument);
  EXPECT_EQ(epCommDestroy(comm), epSuccess);
}

TEST(CommBadInput, NranksAndRankRange) {
  epUniqueId id;
  memset(&id, 0, sizeof(id));
  epComm_t comm = reinterpret_cast<epComm_t>(0x1);
  EXPECT_EQ(epCommInitRank(&comm, 0, id, 0, nullptr), epInvalidArgument);
  EXPECT_EQ(comm, nullptr);  // never left dangling
  EXPECT_NE(lastError().find("nranks"), std::string::npos) << lastError();
  EXPECT_EQ(epCommInitRank(&comm, -3, id, 0, nullptr), epInvalidArgument);
  EXPECT_EQ(epCommInitRank(&comm, 4, id, 4, nullptr), epInvalidArgument);
  EXPECT_NE(lastError().find("rank 4 out of range"), std::string::npos) << lastError();
  EXPECT_EQ(epCommInitRank(&comm, 4, id, -1, nullptr), epInvalidArgument);
  epComm_t comms[2];
  EXPECT_EQ(epCommInitAll(comms, 0, nullptr, nullptr), epInvalidArgument);
  int badDev[1] = {64};
  EXPECT_EQ(epCommInitAll(comms, 1, badDev, nullptr), epInvalidArgument);
  EXPECT_NE(lastError().find("devlist[0]"), std::string::npos) << lastError();
}

TEST(CommBadInput, ConfigNotFromInitializer) {
  epUniqueId id;
  memset(&id, 0, sizeof(id));
  epComm_t comm;
  epConfig_t cfg;
  memset(&cfg, 0x5a, sizeof(cfg));
  EXPECT_EQ(epCommInitRank(&comm, 1, id, 0, &cfg), epInvalidArgument);
  EXPECT_NE(lastError().find("EP_CONFIG_INITIALIZER"), std::string::npos) << lastError();
  epConfig_t newer = EP_CONFIG_INITIALIZER;
  newer.version = EP_CONFIG_VERSION + 3;
  EXPECT_EQ(epCommInitRank(&comm, 1, id, 0, &newer), epInvalidUsage);
  epComm_t comms[1];
  EXPECT_EQ(epCommInitAll(comms, 1, nullptr, &newer), epInvalidUsage);
}

TEST(CommBadInput, GarbageUniqueId) {
  epUniqueId id;
  memset(&id, 0x33, sizeof(id));
  epComm_t comm;
  EXPECT_EQ(epCommInitRank(&comm, 1, id, 0, nullptr), epInvalidArgument);
  EXPECT_NE(lastError().find("unique id is not valid"), std::string::npos) << lastError();
}

TEST(CommBadInput, UniqueIdUsedTwice) {
  unsetenv("EP_COMM_ID");
  epUniqueId id;
  ASSERT_EQ(epGetUniqueId(&id), epSuccess);
  epConfig_t cfg = quickConfig();
  epComm_t comm;
  ASSERT_EQ(epCommInitRank(&comm, 1, id, 0, &cfg), epSuccess) << lastError();
  EXPECT_EQ(epCommDestroy(comm), epSuccess);
  epComm_t again = nullptr;
  EXPECT_EQ(epCommInitRank(&again, 1, id, 0, &cfg), epInvalidUsage);
  EXPECT_EQ(again, nullptr);
  EXPECT_NE(lastError().find("already used"), std::string::npos) << lastError();
}

TEST(CommBadInput, DestroyNullOrDestroyed) {
  EXPECT_EQ(epCommDestroy(nullptr), epInvalidArgument);
  EXPECT_NE(lastError().find("comm is NULL"), std::string::npos) << lastError();
  EXPECT_EQ(epCommAbort(nullptr), epInvalidArgument);
  // A pointer to something that is not a communicator is refused, not dereferenced further.
  alignas(16) unsigned char fake[sizeof(epComm)];
  memset(fake, 0, sizeof(fake));
  EXPECT_EQ(epCommDestroy(reinterpret_cast<epComm_t>(fake)), epInvalidArgument);
  EXPECT_NE(lastError().find("not a live communicator"), std::string::npos) << lastError();
}

TEST(Comm, AsyncErrorFromDeviceStatusIsReportedOnce) {
  epComm_t comm;
  epConfig_t cfg = quickConfig();
  ASSERT_EQ(epCommInitAll(&comm, 1, nullptr, &cfg), epSuccess) << lastError();
  // Without a GPU there is no mapped status block; stand one in, as a kernel would fill it.
  epDeviceStatus fakeStatus = {EP_DEVERR_BAD_EXPERT_ID, 12, 1, 257, 1};
  epDeviceStatus* saved = comm->devStatus;
  epDeviceStatus backup;
  if (saved) backup = *saved;
  epDeviceStatus* target = saved ? saved : &fakeStatus;
  if (saved) *saved = fakeStatus;
  else comm->devStatus = target;
  epResult_t a = epSuccess;
  EXPECT_EQ(epCommGetAsyncError(comm, &a), epSuccess);
  EXPECT_EQ(a, epInvalidArgument);
  EXPECT_NE(lastError(comm).find("expert id 257 out of range at token 12"), std::string::npos) << lastError(comm);
  EXPECT_EQ(target->kind, EP_DEVERR_NONE);  // cleared
  EXPECT_EQ(epCommGetAsyncError(comm, &a), epSuccess);
  EXPECT_EQ(a, epSuccess);
  // Host-side errors (proxy threads) come through the same call.
  epCommSetAsyncError(comm, epRemoteError, "proxy: peer %d went away", 3);
  epCommSetAsyncError(comm, epTimeout, "second error is dropped");
  EXPECT_EQ(epCommGetAsyncError(comm, &a), epSuccess);
  EXPECT_EQ(a, epRemoteError);
  EXPECT_NE(lastError(comm).find("peer 3 went away"), std::string::npos);
  EXPECT_EQ(epCommGetAsyncError(comm, &a), epSuccess);
  EXPECT_EQ(a, epSuccess);
  if (saved) *saved = backup;
  else comm->devStatus = nullptr;
  EXPECT_EQ(epCommDestroy(comm), epSuccess);
}

TEST(Comm, CleanupsRunNewestFirst) {
  epComm_t comm;
  epConfig_t cfg = quickConfig();
  ASSERT_EQ(epCommInitAll(&comm, 1, nullptr, &cfg), epSuccess) << lastError();
  static std::vector<int> order;
  order.clear();
  epCommAddCleanup(comm, [](epComm*) { order.push_back(1); });
  epCommAddCleanup(comm, [](epComm*) { order.push_back(2); });
  EXPECT_EQ(epCommDestroy(comm), epSuccess);
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

// Ranks made by epCommInitAll live in one process: destroying them one after
// the other from one thread must not wait for a closing barrier.
TEST(Comm, InitAllSequentialDestroyIsPrompt) {
  if (haveGpu()) GTEST_SKIP() << "CUDA device present: this case covers GPU-less ranks";
  epComm_t comms[3];
  epConfig_t cfg = EP_CONFIG_INITIALIZER;  // default bootstrap timeout (minutes)
  ASSERT_EQ(epCommInitAll(comms, 3, nullptr, &cfg), epSuccess) << lastError();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; i++) EXPECT_EQ(epCommDestroy(comms[i]), epSuccess) << lastError();
  // A liveness bound, not a speed check: a closing barrier would block for the 120 s timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
}

/* ---------------------------------------------------------------- with GPUs (skipped here) */

// One process over every visible GPU: device placement, NVLink reachability as
// CUDA reports it, topology view, mapped device-status block.
TEST(CommGpu, InitAllOverEveryGpu) {
  int n = epCudaDeviceCount();
  if (n == 0) GTEST_SKIP() << "no CUDA device: cudaGetDeviceCount found none (or no driver)";
  std::vector<epComm_t> comms(n);
  epConfig_t cfg = quickConfig();
  cfg.bootstrapTimeoutMs = 30000;
  ASSERT_EQ(epCommInitAll(comms.data(), n, nullptr, &cfg), epSuccess) << lastError();
  for (int i = 0; i < n; i++) {
    int dev = -2;
    EXPECT_EQ(epCommCuDevice(comms[i], &dev), epSuccess);
    EXPECT_EQ(dev, i);
    ASSERT_NE(comms[i]->devStatus, nullptr);
    ASSERT_NE(comms[i]->devStatusDev, nullptr);
    ASSERT_NE(comms[i]->topo, nullptr);
    EXPECT_GE(comms[i]->topo->gpu, 0) << "GPU " << comms[i]->rankBusId[i] << " not found in the topology";
    std::vector<int> peers(n);
    EXPECT_EQ(epCommNvlinkPeers(comms[i], peers.data(), n), epSuccess);
    for (int j = 0; j < n; j++) {
      int can = 1;
      if (j != i) {
        ASSERT_EQ(cudaDeviceCanAccessPeer(&can, i, j), cudaSuccess);
      }
      EXPECT_EQ(peers[j], can) << "rank " << i << " peer " << j;
    }
    // A kernel would write the status block through devStatusDev; the host view is the same memory.
    comms[i]->devStatus->family = 2;
    comms[i]->devStatus->a = 4096;
    comms[i]->devStatus->value = 5000;
    comms[i]->devStatus->kind = EP_DEVERR_CAPACITY_OVERFLOW;
    epResult_t a = epSuccess;
    EXPECT_EQ(epCommGetAsyncError(comms[i], &a), epSuccess);
    EXPECT_EQ(a, epInvalidUsage);
    EXPECT_NE(lastError(comms[i]).find("5000 rows needed"), std::string::npos) << lastError(comms[i]);
  }
  for (int i = 0; i < n; i++) EXPECT_EQ(epCommDestroy(comms[i]), epSuccess) << lastError();
}
