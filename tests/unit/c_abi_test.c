/*************************************************************************
 * epcomm: a C99 translation unit that includes epcomm.h and links
 * libepcomm.so, as a C user would. Exits non-zero on the first failure.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <stdio.h>
#include <string.h>

#include "epcomm.h"

static int failures = 0;
#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                      \
    }                                                                  \
  } while (0)

int main(void) {
  int version = 0;
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  epComm_t comm = NULL;
  epComm_t comms[2] = {NULL, NULL};
  epUniqueId id;
  int checks = 0;

  CHECK(epGetVersion(&version) == epSuccess); checks++;
  CHECK(version == EP_VERSION_CODE); checks++;
  CHECK(epGetVersion(NULL) == epInvalidArgument); checks++;
  CHECK(strlen(epGetLastError(NULL)) > 0); checks++;
  CHECK(strcmp(epGetErrorString(epSuccess), "no error") == 0); checks++;
  CHECK(epGetErrorString(epTimeout) != NULL && strstr(epGetErrorString(epTimeout), "timeout") != NULL); checks++;
  CHECK(cfg.size == sizeof(epConfig_t) && cfg.magic == EP_CONFIG_MAGIC); checks++;
  CHECK(sizeof(epUniqueId) == EP_UNIQUE_ID_BYTES); checks++;

  memset(&id, 0, sizeof(id));
  CHECK(epCommInitRank(NULL, 1, id, 0, &cfg) == epInvalidArgument); checks++;
  CHECK(epCommInitRank(&comm, 0, id, 0, &cfg) == epInvalidArgument); checks++;
  CHECK(epCommDestroy(NULL) == epInvalidArgument); checks++;

  /* A real one-rank communicator in this process (CPU-only ranks without a GPU). */
  cfg.bootstrapTimeoutMs = 10000;
  CHECK(epCommInitAll(comms, 1, NULL, &cfg) == epSuccess); checks++;
  if (comms[0]) {
    int n = 0, rank = -1;
    CHECK(epCommCount(comms[0], &n) == epSuccess && n == 1); checks++;
    CHECK(epCommUserRank(comms[0], &rank) == epSuccess && rank == 0); checks++;
    CHECK(epCommDestroy(comms[0]) == epSuccess); checks++;
  }
  printf("ep_c_abi_test: %d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
