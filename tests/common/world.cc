/*************************************************************************
 * epcomm tests: process placement from the launcher's environment.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/world.h"

#include <cstdio>
#include <cstdlib>
#include <string>

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
  epTestDefaultCommId();
  epUniqueId id;
  epResult_t r = epGetUniqueId(&id);
  if (r != epSuccess) return r;
  return epCommInitRank(comm, w.size, id, w.rank, config);
}

void epTestDefaultCommId() {
  if (getenv("EP_COMM_ID") == nullptr) {
    const char* port = getenv("EP_TEST_PORT");
    char buf[64];
    snprintf(buf, sizeof(buf), "127.0.0.1:%s", port ? port : "29517");
    setenv("EP_COMM_ID", buf, 0);
  }
}

epResult_t epTestCommInitAt(int rank, int nranks, int portOffset, const epConfig_t* config, epComm_t* comm) {
  epTestDefaultCommId();
  const std::string saved = getenv("EP_COMM_ID");
  size_t colon = saved.rfind(':');
  if (colon == std::string::npos || portOffset < 2) return epInvalidArgument;
  const std::string moved = saved.substr(0, colon + 1) + std::to_string(atoi(saved.c_str() + colon + 1) + portOffset);
  // The id carries the root address; keep the moved address in the
  // environment through init too, in case rank 0 starts its root from it.
  setenv("EP_COMM_ID", moved.c_str(), 1);
  epUniqueId id;
  epResult_t r = epGetUniqueId(&id);
  if (r == epSuccess) r = epCommInitRank(comm, nranks, id, rank, config);
  setenv("EP_COMM_ID", saved.c_str(), 1);
  return r;
}

std::string epTestNoGpuReason(const char* needs) {
  int n = 0;
  cudaError_t ce = cudaGetDeviceCount(&n);
  if (ce == cudaSuccess && n > 0) return std::string();
  (void)cudaGetLastError();
  return std::string("no CUDA device: cudaGetDeviceCount() -> ") +
         (ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices") + "; " + needs;
}

std::string epTestErrText(epResult_t r, epComm_t comm) {
  std::string s = epGetErrorString(r);
  const char* m = epGetLastError(comm);
  if (m && *m) s += std::string(" (") + m + ")";
  return s;
}
