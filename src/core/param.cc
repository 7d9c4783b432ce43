/*************************************************************************
 * epcomm: environment knob parsing (see param.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/param.h"

#include <cerrno>
#include <cstdlib>

#include "core/debug.h"

int64_t epParamLoad(const char* name, int64_t deflt) {
  const char* s = getenv(name);
  if (s == nullptr || *s == '\0') return deflt;
  errno = 0;
  char* end = nullptr;
  long long v = strtoll(s, &end, 0);
  if (errno != 0 || end == s || *end != '\0') {
    EP_WARN("Invalid value '%s' for %s, using default %lld", s, name, (long long)deflt);
    return deflt;
  }
  EP_INFO(EP_LOG_ENV, "%s set by environment to %lld", name, v);
  return v;
}

const char* epGetEnv(const char* name) {
  const char* s = getenv(name);
  if (s == nullptr || *s == '\0') return nullptr;
  EP_INFO(EP_LOG_ENV, "%s set by environment to %s", name, s);
  return s;
}
