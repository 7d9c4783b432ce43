/*************************************************************************
 * epcomm GPU suites: GoogleTest main, one process per rank.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Launch: `mpirun -np N build/test/ep_gpu_tests`, `scripts/eprun -np N ...`,
 * or plainly (1 rank). Every rank runs the same tests in the same order
 * (pass the same --gtest_filter everywhere): the tests are collective.
 * Rank 0 prints gtest's usual output; other ranks print only their failures,
 * prefixed "[rank N]" (EP_TEST_ALL_OUTPUT=1: full output from every rank).
 * Without a GPU every GPU test reports itself skipped, with the reason.
 *************************************************************************/
#include <cstdio>
#include <cstdlib>

#include <gtest/gtest.h>

#include "tests/common/world.h"

namespace {
// Failures only, with the rank: the other ranks' view of a collective test.
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
            r.message());
  }
  void OnTestEnd(const testing::TestInfo& t) override {
    if (t.result()->Failed()) fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, t.test_suite_name(), t.name());
  }

 private:
  int rank_;
};
}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  epTestWorld w = epTestWorldFromEnv();
  const char* all = getenv("EP_TEST_ALL_OUTPUT");
  if (w.rank != 0 && !(all && atoi(all))) {
    testing::TestEventListeners& l = testing::UnitTest::GetInstance()->listeners();
    delete l.Release(l.default_result_printer());
    l.Append(new RankFailurePrinter(w.rank));
  }
  return RUN_ALL_TESTS();
}
