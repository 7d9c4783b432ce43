/*************************************************************************
 * epcomm: host identity (see hash.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/hash.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include "core/param.h"

uint64_t epProcessToken() {
  // A random seed per process image, mixed with the CURRENT pid: a child made
  // by fork() inherits the seed but not the pid, and two containers that
  // share a pid number differ by their seeds.
  static const uint64_t seed = [] {
    uint64_t t = 0;
    FILE* f = fopen("/dev/urandom", "rb");
    if (f) {
      if (fread(&t, sizeof(t), 1, f) != 1) t = 0;
      fclose(f);
    }
    // Without /dev/urandom: this object's address (ASLR) and the time.
    return t ^ epHashMix(((uint64_t)(uintptr_t)&f << 16) ^ (uint64_t)time(nullptr));
  }();
  return epHashMix(seed ^ (uint64_t)getpid()) | 1;
}

uint64_t epHostHash() {
  const char* override = epGetEnv("EP_HOSTID");
  if (override) return epHashMix(epHashBytes(override, strlen(override)));
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  uint64_t h = epHashBytes(host, strlen(host));
  // The boot id distinguishes machines that share a hostname (containers).
  FILE* f = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f) {
    char boot[64] = {0};
    if (fgets(boot, sizeof(boot), f)) h = epHashBytes(boot, strlen(boot), h);
    fclose(f);
  }
  return epHashMix(h);
}
