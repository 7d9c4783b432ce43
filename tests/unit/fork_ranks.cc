/*************************************************************************
 * epcomm unit tests: forked ranks (see fork_ranks.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/unit/fork_ranks.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

std::vector<epForkResult> epForkRanks(int n, const std::function<int(int, std::string*)>& fn, int timeoutSec) {
  std::vector<epForkResult> res(n);
  std::vector<pid_t> pids(n, -1);
  std::vector<int> pipes(n, -1);
  fflush(stdout);
  fflush(stderr);
  for (int r = 0; r < n; r++) {
    int p[2];
    if (pipe(p) != 0) return res;
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      std::string report;
      int code = fn(r, &report);
      if (!report.empty() && write(p[1], report.data(), report.size()) < 0) code = 100;
      close(p[1]);
      _exit(code);  // skip gtest's and the parent's atexit handlers
    }
    close(p[1]);
    pids[r] = pid;
    pipes[r] = p[0];
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSec);
  int left = n;
  std::vector<char> done(n, 0);
  while (left > 0) {
    for (int r = 0; r < n; r++) {
      if (done[r]) continue;
      // Drain the pipe so a chatty child never blocks on it.
      char buf[4096];
      fcntl(pipes[r], F_SETFL, O_NONBLOCK);
      ssize_t k;
      while ((k = read(pipes[r], buf, sizeof(buf))) > 0) res[r].report.append(buf, (size_t)k);
      int status = 0;
      if (waitpid(pids[r], &status, WNOHANG) == pids[r]) {
        while ((k = read(pipes[r], buf, sizeof(buf))) > 0) res[r].report.append(buf, (size_t)k);
        res[r].exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (WIFSIGNALED(status)) res[r].report += " [killed by signal " + std::to_string(WTERMSIG(status)) + "]";
        close(pipes[r]);
        done[r] = 1;
        left--;
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      for (int r = 0; r < n; r++)
        if (!done[r]) {
          kill(pids[r], SIGKILL);
          waitpid(pids[r], nullptr, 0);
          close(pipes[r]);
          res[r].exitCode = -1;
          res[r].report += " [hung: killed after timeout]";
        }
      break;
    }
    usleep(2000);
  }
  return res;
}

bool epRunTestInFreshProcess(const char* test, const std::vector<std::pair<const char*, const char*>>& env) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("EP_UNITTEST_CHILD", "1", 1);
    for (const auto& kv : env) setenv(kv.first, kv.second, 1);
    std::string filter = std::string("--gtest_filter=") + test;
    execl("/proc/self/exe", "ep_unit_tests", filter.c_str(), (char*)nullptr);
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int epFreePort() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(s, (sockaddr*)&a, sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(s, (sockaddr*)&a, &len);
  close(s);
  return ntohs(a.sin_port);
}

std::string epFreeCommId() { return "127.0.0.1:" + std::to_string(epFreePort()); }
