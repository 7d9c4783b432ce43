/*************************************************************************
 * epcomm tests: a mismatch collector usable without GoogleTest.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/check.h"

#include <cstdarg>
#include <cstdio>

void epTestCheck::fail(const char* fmt, ...) {
  if (bad++ >= keep) return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  messages += "\n    ";
  messages += buf;
}

std::string epTestCheck::summary() const {
  if (bad == 0) return "ok";
  return std::to_string(bad) + " mismatch(es); first:" + messages;
}
