/*************************************************************************
 * epcomm: EP_* environment knobs. Each is read once, on first use, and cached.
 * SPDX-License-Identifier: Apache-2.0
 *
 *   EP_PARAM(Timeout, "TIMEOUT_MS", 100000)  defines  int64_t epParamTimeout()
 *   -> reads EP_TIMEOUT_MS; a value that does not parse logs a WARN and keeps the default.
 * Every knob must be listed in docs/env.md.
 *************************************************************************/
#ifndef EP_PARAM_H_
#define EP_PARAM_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

/* Reads env var `name` as an int64; returns `deflt` when unset or malformed. */
int64_t epParamLoad(const char* name, int64_t deflt);
/* getenv() with an INFO/ENV log the first time a value is seen. NULL when unset or empty. */
const char* epGetEnv(const char* name);

#define EP_PARAM(Name, env, deflt)                                       \
  static inline int64_t epParam##Name() {                                \
    static std::once_flag once_;                                         \
    static int64_t value_;                                               \
    std::call_once(once_, [] { value_ = epParamLoad("EP_" env, deflt); }); \
    return value_;                                                       \
  }

/* String knob: defines `const char* epParam##Name()`, NULL when unset or empty.
 * Read once and cached like EP_PARAM. */
#define EP_STRING_PARAM(Name, env)                                          \
  static inline const char* epParam##Name() {                              \
    static std::once_flag once_;                                            \
    static std::string value_;                                              \
    static bool set_ = false;                                               \
    std::call_once(once_, [] {                                              \
      const char* s = epGetEnv("EP_" env);                                  \
      if (s) { value_ = s; set_ = true; }                                   \
    });                                                                     \
    return set_ ? value_.c_str() : nullptr;                                 \
  }

#endif  // EP_PARAM_H_
