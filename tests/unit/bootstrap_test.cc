/*************************************************************************
 * epcomm unit tests: TCP bootstrap with 2-8 forked processes on localhost.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "bootstrap/socket.h"
#include "bootstrap/wire.h"
#include "core/debug.h"
#include "tests/unit/fork_ranks.h"

namespace {

constexpr int kTimeoutMs = 1500;

// Every rank fills its slot with a rank-dependent pattern; after the
// allgather every slot must hold its owner's pattern.
int collectivesBody(int rank, int n, epBootstrap* bs, std::string* report) {
  for (size_t bytes : {size_t(1), size_t(8), size_t(1000), size_t(70000)}) {
    std::vector<unsigned char> buf(bytes * n, 0xee);
    for (size_t i = 0; i < bytes; i++) buf[rank * bytes + i] = (unsigned char)(rank * 31 + i * 7);
    if (epBootstrapAllGather(bs, buf.data(), bytes) != epSuccess) {
      *report = "allgather failed";
      return 2;
    }
    for (int r = 0; r < n; r++)
      for (size_t i = 0; i < bytes; i++)
        if (buf[r * bytes + i] != (unsigned char)(r * 31 + i * 7)) {
          *report = "allgather slot " + std::to_string(r) + " byte " + std::to_string(i) + " wrong";
          return 3;
        }
  }
  for (int root = 0; root < n; root++) {
    std::vector<int> v(100, rank == root ? root * 1000 + 7 : -1);
    if (epBootstrapBroadcast(bs, v.data(), v.size() * sizeof(int), root) != epSuccess) {
      *report = "broadcast failed";
      return 4;
    }
    for (int x : v)
      if (x != root * 1000 + 7) {
        *report = "broadcast from " + std::to_string(root) + " wrong";
        return 5;
      }
  }
  for (int i = 0; i < 3; i++)
    if (epBootstrapBarrier(bs) != epSuccess) {
      *report = "barrier failed";
      return 6;
    }
  return 0;
}

// Ranks agree on the id through EP_COMM_ID: every child derives the same id.
epResult_t joinWithCommId(const std::string& commId, int rank, int n, int timeoutMs, epBootstrap** bs) {
  setenv("EP_COMM_ID", commId.c_str(), 1);
  epUniqueId id;
  epResult_t r = epBootstrapGetUniqueId(&id);
  if (r != epSuccess) return r;
  return epBootstrapInit(&id, rank, n, timeoutMs, bs);
}

}  // namespace

class BootstrapRanks : public ::testing::TestWithParam<int> {};

TEST_P(BootstrapRanks, AllGatherBroadcastBarrier) {
  int n = GetParam();
  std::string commId = epFreeCommId();
  auto res = epForkRanks(n, [&](int rank, std::string* report) {
    epBootstrap* bs = nullptr;
    if (joinWithCommId(commId, rank, n, 10000, &bs) != epSuccess) {
      *report = std::string("init: ") + epThreadLastError();
      return 1;
    }
    int rc = collectivesBody(rank, n, bs, report);
    epBootstrapDestroy(bs);
    return rc;
  });
  for (int r = 0; r < n; r++) EXPECT_EQ(res[r].exitCode, 0) << "rank " << r << ": " << res[r].report;
}
INSTANTIATE_TEST_SUITE_P(Sizes, BootstrapRanks, ::testing::Values(2, 3, 4, 8));

// The root started by epGetUniqueId in the parent serves children that got the id by fork.
TEST(Bootstrap, UniqueIdFromParentRoot) {
  unsetenv("EP_COMM_ID");
  epUniqueId id;
  ASSERT_EQ(epBootstrapGetUniqueId(&id), epSuccess);
  auto res = epForkRanks(3, [&](int rank, std::string* report) {
    epBootstrap* bs = nullptr;
    if (epBootstrapInit(&id, rank, 3, 10000, &bs) != epSuccess) {
      *report = epThreadLastError();
      return 1;
    }
    int rc = collectivesBody(rank, 3, bs, report);
    epBootstrapDestroy(bs);
    return rc;
  });
  for (int r = 0; r < 3; r++) EXPECT_EQ(res[r].exitCode, 0) << "rank " << r << ": " << res[r].report;
}

TEST(Bootstrap, MissingRankTimesOutNamingIt) {
  std::string commId = epFreeCommId();
  // 4 ranks expected, rank 2 never starts.
  auto res = epForkRanks(3, [&](int i, std::string* report) {
    int rank = i < 2 ? i : 3;
    epBootstrap* bs = nullptr;
    epResult_t r = joinWithCommId(commId, rank, 4, kTimeoutMs, &bs);
    *report = epThreadLastError();
    return r == epTimeout ? 0 : 10 + (int)r;
  }, 30);
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(res[i].exitCode, 0) << "process " << i << ": " << res[i].report;
    EXPECT_NE(res[i].report.find("rank(s) 2 of 4"), std::string::npos) << res[i].report;
  }
}

TEST(Bootstrap, MissingRankZeroTimesOut) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(2, [&](int i, std::string* report) {
    epBootstrap* bs = nullptr;
    epResult_t r = joinWithCommId(commId, i + 1, 3, 500, &bs);
    *report = epThreadLastError();
    return r == epTimeout ? 0 : 10 + (int)r;
  }, 30);
  for (int i = 0; i < 2; i++) {
    EXPECT_EQ(res[i].exitCode, 0) << res[i].report;
    EXPECT_NE(res[i].report.find("rank 0"), std::string::npos) << res[i].report;
  }
}

// A rank that stops calling collectives: rank 0 names it, every rank gets epTimeout.
TEST(Bootstrap, RankMissingFromCollectiveTimesOut) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(3, [&](int rank, std::string* report) {
    epBootstrap* bs = nullptr;
    if (joinWithCommId(commId, rank, 3, kTimeoutMs, &bs) != epSuccess) return 1;
    if (rank == 1) {
      sleep(6);  // never enters the barrier in time
      return 0;
    }
    epResult_t r = epBootstrapBarrier(bs);
    *report = epThreadLastError();
    // After a failure the bootstrap refuses further use instead of desynchronising.
    if (r == epTimeout && epBootstrapBarrier(bs) == epSuccess) return 3;
    return r == epTimeout ? 0 : 10 + (int)r;
  }, 30);
  EXPECT_EQ(res[0].exitCode, 0) << res[0].report;
  EXPECT_EQ(res[2].exitCode, 0) << res[2].report;
  EXPECT_NE(res[0].report.find("rank(s) 1 of 3"), std::string::npos) << res[0].report;
  EXPECT_NE(res[2].report.find("rank(s) 1 of 3"), std::string::npos) << res[2].report;
}

TEST(Bootstrap, PeerExitIsRemoteError) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(3, [&](int rank, std::string* report) {
    epBootstrap* bs = nullptr;
    if (joinWithCommId(commId, rank, 3, 5000, &bs) != epSuccess) return 1;
    if (rank == 2) _exit(0);  // dies without destroying: its sockets close
    epResult_t r = epBootstrapBarrier(bs);
    *report = epThreadLastError();
    return r == epRemoteError ? 0 : 10 + (int)r;
  }, 30);
  EXPECT_EQ(res[0].exitCode, 0) << res[0].report;
  EXPECT_EQ(res[1].exitCode, 0) << res[1].report;
  EXPECT_NE(res[0].report.find("rank 2"), std::string::npos) << res[0].report;
}

TEST(Bootstrap, AbortReachesEveryRank) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(4, [&](int rank, std::string* report) {
    epBootstrap* bs = nullptr;
    if (joinWithCommId(commId, rank, 4, 5000, &bs) != epSuccess) return 1;
    if (rank == 3) {
      epBootstrapAbort(bs);
      sleep(1);
      epBootstrapDestroy(bs);
      return 0;
    }
    epResult_t r = epBootstrapBarrier(bs);
    *report = epThreadLastError();
    return r == epRemoteError ? 0 : 10 + (int)r;
  }, 30);
  for (int r = 0; r < 3; r++) {
    EXPECT_EQ(res[r].exitCode, 0) << "rank " << r << ": " << res[r].report;
    EXPECT_NE(res[r].report.find("aborted by rank 3"), std::string::npos) << res[r].report;
  }
}

TEST(Bootstrap, MismatchedCollectiveSizesAreInvalidUsage) {
  std::string commId = epFreeCommId();
  auto res = epForkRanks(2, [&](int rank, std::string* report) {
    epBootstrap* bs = nullptr;
    if (joinWithCommId(commId, rank, 2, 5000, &bs) != epSuccess) return 1;
    std::vector<char> buf(64 * 2);
    epResult_t r = epBootstrapAllGather(bs, buf.data(), rank == 0 ? 32 : 64);
    *report = epThreadLastError();
    return r != epSuccess ? 0 : 2;
  }, 30);
  EXPECT_EQ(res[0].exitCode, 0);
  EXPECT_EQ(res[1].exitCode, 0);
  EXPECT_NE(res[0].report.find("different order or with different sizes"), std::string::npos) << res[0].report;
}

// A connection with the wrong magic is refused (and logged); the real ranks still form the comm.
TEST(Bootstrap, WrongMagicRefused) {
  unsetenv("EP_COMM_ID");
  epUniqueId id;
  ASSERT_EQ(epBootstrapGetUniqueId(&id), epSuccess);
  epUniqueId forged = id;
  reinterpret_cast<epBootstrapHandle*>(forged.internal)->magic ^= 0x5a5a;
  auto res = epForkRanks(3, [&](int i, std::string* report) {
    epBootstrap* bs = nullptr;
    if (i == 2) {  // the intruder claims rank 1 with a forged id, before the real rank 1 arrives
      epResult_t r = epBootstrapInit(&forged, 1, 2, 3000, &bs);
      *report = epThreadLastError();
      return r == epInvalidUsage ? 0 : 10 + (int)r;
    }
    if (i == 1) usleep(1500 * 1000);  // the intruder comes first, even on a loaded machine
    if (epBootstrapInit(&id, i, 2, 5000, &bs) != epSuccess) {
      *report = epThreadLastError();
      return 1;
    }
    int rc = collectivesBody(i, 2, bs, report);
    epBootstrapDestroy(bs);
    return rc;
  }, 30);
  EXPECT_EQ(res[0].exitCode, 0) << res[0].report;
  EXPECT_EQ(res[1].exitCode, 0) << res[1].report;
  EXPECT_EQ(res[2].exitCode, 0) << res[2].report;
  EXPECT_NE(res[2].report.find("wrong magic"), std::string::npos) << res[2].report;
}

// Two processes claiming the same rank: the second is refused by the root.
TEST(Bootstrap, DuplicateRankRefused) {
  unsetenv("EP_COMM_ID");
  epUniqueId id;
  ASSERT_EQ(epBootstrapGetUniqueId(&id), epSuccess);
  auto res = epForkRanks(3, [&](int i, std::string* report) {
    int rank = i == 2 ? 0 : i;
    if (i == 2) usleep(700 * 1000);   // after the real rank 0 ...
    if (i == 1) usleep(2000 * 1000);  // ... and before rank 1 completes the communicator
    epBootstrap* bs = nullptr;
    epResult_t r = epBootstrapInit(&id, rank, 2, 5000, &bs);
    *report = epThreadLastError();
    if (i == 2) return r == epInvalidUsage ? 0 : 10 + (int)r;
    if (r != epSuccess) return 1;
    r = epBootstrapBarrier(bs);
    epBootstrapDestroy(bs);
    return r == epSuccess ? 0 : 2;
  }, 30);
  for (int i = 0; i < 3; i++) EXPECT_EQ(res[i].exitCode, 0) << "process " << i << ": " << res[i].report;
  EXPECT_NE(res[2].report.find("already joined"), std::string::npos) << res[2].report;
}

TEST(Bootstrap, UniqueIdUsedTwiceInProcess) {
  unsetenv("EP_COMM_ID");
  epUniqueId id;
  ASSERT_EQ(epBootstrapGetUniqueId(&id), epSuccess);
  epBootstrap* bs = nullptr;
  ASSERT_EQ(epBootstrapInit(&id, 0, 1, 5000, &bs), epSuccess);
  EXPECT_EQ(epBootstrapBarrier(bs), epSuccess);
  epBootstrapDestroy(bs);
  bs = nullptr;
  EXPECT_EQ(epBootstrapInit(&id, 0, 1, 5000, &bs), epInvalidUsage);
  EXPECT_EQ(bs, nullptr);
  EXPECT_NE(std::string(epThreadLastError()).find("already used"), std::string::npos) << epThreadLastError();
}

TEST(Bootstrap, GarbageIdRejected) {
  epUniqueId id;
  memset(&id, 0x41, sizeof(id));
  epBootstrap* bs = nullptr;
  EXPECT_EQ(epBootstrapInit(&id, 0, 1, 1000, &bs), epInvalidArgument);
  memset(&id, 0, sizeof(id));
  EXPECT_EQ(epBootstrapInit(&id, 0, 1, 1000, &bs), epInvalidArgument);
}

TEST(Bootstrap, CommIdGivesSameIdSequence) {
  setenv("EP_COMM_ID", "127.0.0.1:29999", 1);
  auto ids = epForkRanks(2, [](int, std::string* report) {
    for (int k = 0; k < 3; k++) {
      epUniqueId id;
      if (epBootstrapGetUniqueId(&id) != epSuccess) return 1;
      char hex[17];
      snprintf(hex, sizeof(hex), "%016llx",
               (unsigned long long)reinterpret_cast<epBootstrapHandle*>(id.internal)->magic);
      *report += std::string(hex) + ";";
    }
    return 0;
  });
  unsetenv("EP_COMM_ID");
  ASSERT_EQ(ids[0].exitCode, 0);
  ASSERT_EQ(ids[1].exitCode, 0);
  EXPECT_EQ(ids[0].report, ids[1].report);  // the same n-th id in every process
  EXPECT_NE(ids[0].report.substr(0, 16), ids[0].report.substr(17, 16));  // consecutive ids differ
}

TEST(Bootstrap, BadCommIdIsInvalidArgument) {
  for (const char* bad : {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", ":123", "no.such.host.invalid:1234"}) {
    setenv("EP_COMM_ID", bad, 1);
    epUniqueId id;
    EXPECT_EQ(epBootstrapGetUniqueId(&id), epInvalidArgument) << bad;
  }
  unsetenv("EP_COMM_ID");
}

TEST(BootstrapSocket, ParseHostPort) {
  epSockAddr a;
  ASSERT_EQ(epSockParseHostPort("127.0.0.1:4242", &a), epSuccess);
  EXPECT_EQ(epSockAddrStr(a), "127.0.0.1:4242");
  EXPECT_TRUE(epSockAddrIsLoopback(a));
  ASSERT_EQ(epSockParseHostPort("[::1]:4243", &a), epSuccess);
  EXPECT_EQ(epSockAddrStr(a), "[::1]:4243");
  ASSERT_EQ(epSockParseHostPort("localhost:80", &a), epSuccess);
  EXPECT_EQ(epSockAddrPort(a), 80);
}

// The root refuses a wrong-magic hello with a reply saying why, and logs it:
// the root runs in a re-executed child with EP_DEBUG=WARN and a log file.
TEST(Bootstrap, WrongMagicRefusedAndLogged) {
  if (getenv("EP_UNITTEST_CHILD")) {  // the child: rank 0 of 2, root at EP_COMM_ID; rank 1 never comes
    epUniqueId id;
    ASSERT_EQ(epBootstrapGetUniqueId(&id), epSuccess);
    epBootstrap* bs = nullptr;
    EXPECT_EQ(epBootstrapInit(&id, 0, 2, 2500, &bs), epTimeout);
    return;
  }
  int port = epFreePort();
  char dir[] = "/tmp/ep_bs_logXXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string log = std::string(dir) + "/root.log";
  pid_t pid = fork();
  if (pid == 0) {
    setenv("EP_UNITTEST_CHILD", "1", 1);
    setenv("EP_DEBUG", "WARN", 1);
    setenv("EP_DEBUG_FILE", log.c_str(), 1);
    setenv("EP_COMM_ID", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
    execl("/proc/self/exe", "ep_unit_tests", "--gtest_filter=Bootstrap.WrongMagicRefusedAndLogged", (char*)nullptr);
    _exit(127);
  }
  epSockAddr root;
  ASSERT_EQ(epSockParseHostPort(("127.0.0.1:" + std::to_string(port)).c_str(), &root), epSuccess);
  int fd = -1;
  ASSERT_EQ(epSockConnect(root, epNowMs() + 10000, &fd), epSuccess);
  epRootHello h;
  memset(&h, 0, sizeof(h));
  h.magic = 0x0123456789abcdefull;  // not the id's magic
  h.wire = EP_BOOTSTRAP_WIRE;
  h.rank = 1;
  h.nranks = 2;
  h.timeoutMs = 1000;
  ASSERT_EQ(epSockSend(fd, &h, sizeof(h), epNowMs() + 5000), epSuccess);
  epRootReply reply;
  ASSERT_EQ(epSockRecv(fd, &reply, sizeof(reply), epNowMs() + 5000), epSuccess);
  epSockClose(&fd);
  EXPECT_EQ(reply.code, epInvalidUsage);
  reply.msg[sizeof(reply.msg) - 1] = '\0';
  EXPECT_NE(std::string(reply.msg).find("wrong magic 0x0123456789abcdef"), std::string::npos) << reply.msg;
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "root child failed, status " << status;
  FILE* f = fopen(log.c_str(), "r");
  ASSERT_NE(f, nullptr) << log;
  std::string text;
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, k);
  fclose(f);
  EXPECT_NE(text.find("refused connection from 127.0.0.1"), std::string::npos) << text;
  EXPECT_NE(text.find("wrong magic"), std::string::npos) << text;
  EXPECT_NE(text.find("rank(s) 1 of 2 did not join"), std::string::npos) << text;  // the wrong-magic peer did not count
  unlink(log.c_str());
  rmdir(dir);
}

TEST(BootstrapSocket, SocketIfname) {
  epSockAddr a;
  std::string ifName;
  setenv("EP_SOCKET_IFNAME", "=lo", 1);
  ASSERT_EQ(epSockFindInterface(false, &a, &ifName), epSuccess);
  EXPECT_EQ(ifName, "lo");
  EXPECT_TRUE(epSockAddrIsLoopback(a));
  EXPECT_EQ(epSockAddrPort(a), 0);
  setenv("EP_SOCKET_IFNAME", "no_such_if", 1);
  EXPECT_EQ(epSockFindInterface(false, &a, &ifName), epInvalidArgument);
  EXPECT_NE(std::string(epThreadLastError()).find("EP_SOCKET_IFNAME=no_such_if"), std::string::npos);
  setenv("EP_SOCKET_IFNAME", "^lo", 1);  // excluding loopback: some other interface, or a clear error
  epResult_t r = epSockFindInterface(false, &a, &ifName);
  if (r == epSuccess) EXPECT_NE(ifName, "lo");
  else EXPECT_EQ(r, epInvalidArgument);
  unsetenv("EP_SOCKET_IFNAME");
  ASSERT_EQ(epSockFindInterface(true, &a, &ifName), epSuccess);
  EXPECT_TRUE(epSockAddrIsLoopback(a));
}

TEST(Bootstrap, SingleRankAndBadBroadcastRoot) {
  unsetenv("EP_COMM_ID");
  epUniqueId id;
  ASSERT_EQ(epBootstrapGetLocalUniqueId(&id), epSuccess);
  epBootstrap* bs = nullptr;
  ASSERT_EQ(epBootstrapInit(&id, 0, 1, 5000, &bs), epSuccess);
  EXPECT_EQ(epBootstrapRank(bs), 0);
  EXPECT_EQ(epBootstrapSize(bs), 1);
  int v = 5;
  EXPECT_EQ(epBootstrapAllGather(bs, &v, sizeof(v)), epSuccess);
  EXPECT_EQ(v, 5);
  EXPECT_EQ(epBootstrapBroadcast(bs, &v, sizeof(v), 1), epInvalidArgument);
  EXPECT_EQ(epBootstrapBarrier(bs), epSuccess);
  EXPECT_EQ(epBootstrapDestroy(bs), epSuccess);
}
