/*************************************************************************
 * epcomm: logging. EP_DEBUG=WARN|INFO|TRACE, EP_DEBUG_SUBSYS=INIT,NET,...
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every line carries host, pid, rank and CUDA device. WARN also records the
 * message as the "last error" of the communicator the calling thread is
 * working for (see epLogScope), or of the thread when there is none: there is
 * no process-global error buffer.
 *************************************************************************/
#ifndef EP_DEBUG_H_
#define EP_DEBUG_H_

#include <cstddef>
#include <cstdint>

enum epLogLevel { EP_LOG_NONE = 0, EP_LOG_VERSION = 1, EP_LOG_WARN = 2, EP_LOG_INFO = 3, EP_LOG_TRACE = 4 };

/* Subsystems, selectable with EP_DEBUG_SUBSYS (comma list, leading ^ negates). */
enum epLogSubsys : uint32_t {
  EP_LOG_INIT = 1u << 0,
  EP_LOG_BOOTSTRAP = 1u << 1,
  EP_LOG_TOPO = 1u << 2,
  EP_LOG_ENV = 1u << 3,
  EP_LOG_ALLOC = 1u << 4,
  EP_LOG_HT = 1u << 5,
  EP_LOG_LL = 1u << 6,
  EP_LOG_NET = 1u << 7,
  EP_LOG_PROXY = 1u << 8,
  EP_LOG_EPLB = 1u << 9,
  EP_LOG_CALL = 1u << 10,
  EP_LOG_ALL = 0xffffffffu
};

/* Size of a last-error buffer (per communicator and per thread). */
#define EP_LAST_ERROR_BYTES 1024

/* Who the calling thread is working for: used for the line prefix and to
 * route WARN text into the right last-error buffer. */
struct epLogContext {
  int rank;        /* -1: no communicator */
  int cudaDev;     /* -1: unknown */
  char* lastError; /* EP_LAST_ERROR_BYTES buffer, or nullptr for the thread's own */
};

/* RAII: installs a context for the duration of an API call, restoring the
 * previous one on exit (calls may nest, e.g. epCommInitAll -> per-rank init). */
class epLogScope {
 public:
  epLogScope(int rank, int cudaDev, char* lastError);
  ~epLogScope();
  epLogScope(const epLogScope&) = delete;
  epLogScope& operator=(const epLogScope&) = delete;

 private:
  epLogContext saved_;
};

int epLogLevelGet();
bool epLogEnabled(int level, uint32_t subsys);
void epLog(int level, uint32_t subsys, const char* file, int line, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The calling thread's last-error buffer (never null). */
char* epThreadLastError();

#define EP_WARN(...) epLog(EP_LOG_WARN, EP_LOG_ALL, __FILE__, __LINE__, __VA_ARGS__)
#define EP_INFO(subsys, ...)                                                         \
  do {                                                                               \
    if (epLogEnabled(EP_LOG_INFO, (subsys))) epLog(EP_LOG_INFO, (subsys), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define EP_TRACE(subsys, ...)                                                        \
  do {                                                                               \
    if (epLogEnabled(EP_LOG_TRACE, (subsys))) epLog(EP_LOG_TRACE, (subsys), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

#endif  // EP_DEBUG_H_
