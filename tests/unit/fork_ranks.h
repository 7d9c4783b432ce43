/*************************************************************************
 * epcomm unit tests: run N ranks as forked processes on localhost.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Each child runs fn(rank, &report) and exits with its return value; the
 * report string travels back through a pipe so the parent can assert on
 * error messages. A child still running after `timeoutSec` is killed and
 * reported with exit code -1: a hang fails the test, it never blocks it.
 * Children must not rely on env knobs that the parent process may already
 * have cached (EP_PARAM): pass values through epConfig_t instead.
 *************************************************************************/
#ifndef EP_TESTS_FORK_RANKS_H_
#define EP_TESTS_FORK_RANKS_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

struct epForkResult {
  int exitCode = -1;  /* -1: killed (timeout) or crashed */
  std::string report;
};

std::vector<epForkResult> epForkRanks(int n, const std::function<int(int rank, std::string* report)>& fn,
                                      int timeoutSec = 60);

/* Runs one test of this binary in a fresh exec (EP_UNITTEST_CHILD=1 plus `env`
 * set), for cases that depend on env knobs, which are cached per process.
 * The test body checks getenv("EP_UNITTEST_CHILD") to know it is the child.
 * Returns true when the child exited 0. */
bool epRunTestInFreshProcess(const char* test, const std::vector<std::pair<const char*, const char*>>& env);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int epFreePort();

/* "127.0.0.1:<free port>" for EP_COMM_ID. */
std::string epFreeCommId();

#endif  // EP_TESTS_FORK_RANKS_H_
