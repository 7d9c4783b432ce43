/*************************************************************************
 * epcomm: host identity (see hash.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/hash.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "core/param.h"

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
