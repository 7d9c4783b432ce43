/*************************************************************************
 * epcomm tests: a mismatch collector usable without GoogleTest.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Counts every mismatch and keeps the text of the first few, so a failing
 * check says what, where, expected and got -- in gtest (EXPECT_TRUE(c.ok())
 * << c.summary()) and in the perf binaries' -c mode alike.
 *************************************************************************/
#ifndef EP_TESTS_CHECK_H_
#define EP_TESTS_CHECK_H_

#include <string>

struct epTestCheck {
  long long bad = 0;
  int keep = 8; /* messages kept */
  std::string messages;
  void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  bool ok() const { return bad == 0; }
  /* "N mismatches; first: ..." or "ok". */
  std::string summary() const;
};

#endif  // EP_TESTS_CHECK_H_
