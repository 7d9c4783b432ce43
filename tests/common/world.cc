/*************************************************************************
 * epcomm tests: process placement from the launcher's environment.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/world.h"

#include <cstdio>
#include <cstdlib>

#include <cuda_runtime_api.h>

namespace {
int envInt(const char* const* names, int deflt) {
  for (const char* const* n = names; *n; n++) {
    const char* v = getenv(*n);
    if (v && *v) return atoi(v);
  }
  return deflt;
}
}  // namespace

epTestWorld epTestWorldFromEnv() {
  static const char* kRank[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "EP_RANK", nullptr};
  static const char* kSize[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "EP_NRANKS", nullptr};
  static const char* kLocal[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "EP_LOCAL_RANK", nullptr};
  static const char* kLocalSize[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "EP_LOCAL_NRANKS", nullptr};
  epTestWorld w;
  w.rank = envInt(kRank, 0);
  w.size = envInt(kSize, 1);
  w.localRank = envInt(kLocal, w.rank);
  w.localSize = envInt(kLocalSize, w.size);
  return w;
}

int epTestCudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

epResult_t epTestCommInit(const epTestWorld& w, const epConfig_t* config, epComm_t* comm) {
  int ndev = epTestCudaDeviceCount();
  if (ndev > 0 && cudaSetDevice(w.localRank % ndev) != cudaSuccess) return epCudaError;
  if (getenv("EP_COMM_ID") == nullptr) {
    const char* port = getenv("EP_TEST_PORT");
    char buf[64];
    snprintf(buf, sizeof(buf), "127.0.0.1:%s", port ? port : "29517");
    setenv("EP_COMM_ID", buf, 0);
  }
  epUniqueId id;
  epResult_t r = epGetUniqueId(&id);
  if (r != epSuccess) return r;
  return epCommInitRank(comm, w.size, id, w.rank, config);
}
