/*************************************************************************
 * epcomm: logging implementation (see debug.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/debug.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <strings.h>

namespace {

struct LogSettings {
  int level = EP_LOG_NONE;
  uint32_t subsysMask = EP_LOG_INIT | EP_LOG_BOOTSTRAP | EP_LOG_ENV;
  char host[64] = {0};
  FILE* file = stderr;
};

uint32_t parseSubsys(const char* s) {
  static const struct { const char* name; uint32_t bit; } kNames[] = {
      {"INIT", EP_LOG_INIT}, {"BOOTSTRAP", EP_LOG_BOOTSTRAP}, {"TOPO", EP_LOG_TOPO}, {"ENV", EP_LOG_ENV},
      {"ALLOC", EP_LOG_ALLOC}, {"HT", EP_LOG_HT}, {"LL", EP_LOG_LL}, {"NET", EP_LOG_NET},
      {"PROXY", EP_LOG_PROXY}, {"EPLB", EP_LOG_EPLB}, {"CALL", EP_LOG_CALL}, {"ALL", EP_LOG_ALL}};
  bool invert = (*s == '^');
  if (invert) s++;
  uint32_t mask = 0;
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", s);
  char* save = nullptr;
  for (char* tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(nullptr, ",", &save)) {
    for (const auto& n : kNames)
      if (strcasecmp(tok, n.name) == 0) mask |= n.bit;
  }
  return invert ? ~mask : mask;
}

// Read once, on first use; the settings never change afterwards.
const LogSettings& settings() {
  static LogSettings s = [] {
    LogSettings r;
    const char* lvl = getenv("EP_DEBUG");
    if (lvl) {
      if (strcasecmp(lvl, "VERSION") == 0) r.level = EP_LOG_VERSION;
      else if (strcasecmp(lvl, "WARN") == 0) r.level = EP_LOG_WARN;
      else if (strcasecmp(lvl, "INFO") == 0) r.level = EP_LOG_INFO;
      else if (strcasecmp(lvl, "TRACE") == 0) r.level = EP_LOG_TRACE;
    }
    const char* sub = getenv("EP_DEBUG_SUBSYS");
    if (sub && *sub) r.subsysMask = parseSubsys(sub);
    if (r.level >= EP_LOG_TRACE && !(sub && *sub)) r.subsysMask = EP_LOG_ALL;
    gethostname(r.host, sizeof(r.host) - 1);
    char* dot = strchr(r.host, '.');
    if (dot) *dot = '\0';
    const char* path = getenv("EP_DEBUG_FILE");
    if (path && *path) {
      // %h -> host, %p -> pid
      char name[512];
      size_t o = 0;
      for (const char* p = path; *p && o + 32 < sizeof(name); p++) {
        if (p[0] == '%' && p[1] == 'h') { o += snprintf(name + o, sizeof(name) - o, "%s", r.host); p++; }
        else if (p[0] == '%' && p[1] == 'p') { o += snprintf(name + o, sizeof(name) - o, "%d", (int)getpid()); p++; }
        else name[o++] = *p;
      }
      name[o] = '\0';
      FILE* f = fopen(name, "w");
      if (f) r.file = f;
    }
    return r;
  }();
  return s;
}

thread_local char tlsLastError[EP_LAST_ERROR_BYTES];
thread_local epLogContext tlsContext = {-1, -1, nullptr};
std::mutex& writeMutex() {
  static std::mutex m;
  return m;
}

}  // namespace

epLogScope::epLogScope(int rank, int cudaDev, char* lastError) : saved_(tlsContext) {
  tlsContext.rank = rank;
  tlsContext.cudaDev = cudaDev;
  tlsContext.lastError = lastError;
}
epLogScope::~epLogScope() { tlsContext = saved_; }

int epLogLevelGet() { return settings().level; }

bool epLogEnabled(int level, uint32_t subsys) {
  const LogSettings& s = settings();
  return level <= s.level && (subsys & s.subsysMask) != 0;
}

char* epThreadLastError() { return tlsLastError; }

void epLog(int level, uint32_t subsys, const char* file, int line, const char* fmt, ...) {
  char msg[EP_LAST_ERROR_BYTES];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (level == EP_LOG_WARN) {
    // Record the error where the caller will look for it.
    char* dst = tlsContext.lastError ? tlsContext.lastError : tlsLastError;
    snprintf(dst, EP_LAST_ERROR_BYTES, "%s", msg);
    if (tlsContext.lastError) snprintf(tlsLastError, EP_LAST_ERROR_BYTES, "%s", msg);
  }
  const LogSettings& s = settings();
  if (level > s.level || (level != EP_LOG_WARN && !(subsys & s.subsysMask))) return;
  const char* tag = level == EP_LOG_WARN ? "WARN" : level == EP_LOG_TRACE ? "TRACE" : "INFO";
  std::lock_guard<std::mutex> lock(writeMutex());
  if (level == EP_LOG_WARN)
    fprintf(s.file, "%s:%d:r%d [%d] EP %s %s:%d %s\n", s.host, (int)getpid(), tlsContext.rank,
            tlsContext.cudaDev, tag, file, line, msg);
  else
    fprintf(s.file, "%s:%d:r%d [%d] EP %s %s\n", s.host, (int)getpid(), tlsContext.rank, tlsContext.cudaDev,
            tag, msg);
  fflush(s.file);
}
