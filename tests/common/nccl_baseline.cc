/*************************************************************************
 * epcomm tests: the NCCL baseline, with NCCL loaded at run time.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/nccl_baseline.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <vector>

#include <nccl.h>  // types only: every function comes from dlsym

struct epTestNccl {
  void* lib = nullptr;
  std::string path;
  int version = 0;
  ncclComm_t comm = nullptr;
  int nranks = 0;
  ncclResult_t (*getVersion)(int*) = nullptr;
  ncclResult_t (*getUniqueId)(ncclUniqueId*) = nullptr;
  ncclResult_t (*commInitRank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*commDestroy)(ncclComm_t) = nullptr;
  ncclResult_t (*send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*groupStart)() = nullptr;
  ncclResult_t (*groupEnd)() = nullptr;
  const char* (*errorString)(ncclResult_t) = nullptr;
};

namespace {
template <typename F>
bool sym(void* lib, const char* name, F* f) {
  *f = (F)dlsym(lib, name);
  return *f != nullptr;
}

epResult_t load(epTestNccl* n, std::string* why) {
  const char* env = getenv("EP_NCCL_LIB");
  n->path = env && *env ? env : "libnccl.so.2";
  n->lib = dlopen(n->path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!n->lib) {
    *why = std::string("dlopen(") + n->path + ") failed: " + dlerror() +
           " (set EP_NCCL_LIB or LD_LIBRARY_PATH to the dir of libnccl.so.2)";
    return epNotSupported;
  }
  bool ok = sym(n->lib, "ncclGetVersion", &n->getVersion) && sym(n->lib, "ncclGetUniqueId", &n->getUniqueId) &&
            sym(n->lib, "ncclCommInitRank", &n->commInitRank) && sym(n->lib, "ncclCommDestroy", &n->commDestroy) &&
            sym(n->lib, "ncclSend", &n->send) && sym(n->lib, "ncclRecv", &n->recv) &&
            sym(n->lib, "ncclGroupStart", &n->groupStart) && sym(n->lib, "ncclGroupEnd", &n->groupEnd) &&
            sym(n->lib, "ncclGetErrorString", &n->errorString);
  if (!ok) {
    *why = n->path + " lacks a needed symbol (send/recv need NCCL >= 2.7)";
    return epNotSupported;
  }
  n->getVersion(&n->version);
  Dl_info info;
  if (dladdr((void*)n->getVersion, &info) && info.dli_fname) n->path = info.dli_fname;
  return epSuccess;
}
}  // namespace

epResult_t epTestNcclInit(epTestOob* oob, int rank, int nranks, epTestNccl** out, std::string* why) {
  *out = nullptr;
  epTestNccl* n = new epTestNccl();
  n->nranks = nranks;
  epResult_t mine = load(n, why);
  // Agree on loading before anyone waits for a unique id.
  bool anyFailed = false;
  epResult_t r = epTestOobAnyTrue(oob, mine != epSuccess, &anyFailed);
  if (r != epSuccess || anyFailed) {
    if (mine == epSuccess && why->empty()) *why = "NCCL could not be loaded on another rank";
    epTestNcclDestroy(n);
    return r != epSuccess ? r : epNotSupported;
  }
  ncclUniqueId id;
  memset(&id, 0, sizeof(id));
  ncclResult_t nr = ncclSuccess;
  if (rank == 0) nr = n->getUniqueId(&id);
  if (nr != ncclSuccess) fprintf(stderr, "[rank 0] ncclGetUniqueId: %s\n", n->errorString(nr));
  if ((r = epTestOobBroadcast(oob, &id, sizeof(id), 0)) != epSuccess) {
    epTestNcclDestroy(n);
    return r;
  }
  nr = n->commInitRank(&n->comm, nranks, id, rank);
  if (nr != ncclSuccess) {
    *why = std::string("ncclCommInitRank: ") + n->errorString(nr);
    n->comm = nullptr;
    epTestNcclDestroy(n);
    return epSystemError;
  }
  *out = n;
  return epSuccess;
}

std::string epTestNcclDescribe(const epTestNccl* n) {
  char buf[64];
  int v = n->version;
  // NCCL >= 2.9 encodes X*10000 + Y*100 + Z.
  snprintf(buf, sizeof(buf), "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
  return std::string(buf) + " (" + n->path + ")";
}

epResult_t epTestNcclAllToAllv(epTestNccl* n, const void* send, const int* sendRows, const int* sendOff, void* recv,
                               const int* recvRows, const int* recvOff, size_t rowBytes, cudaStream_t stream) {
  ncclResult_t r = n->groupStart();
  for (int p = 0; p < n->nranks && r == ncclSuccess; p++) {
    if (sendRows[p] > 0)
      r = n->send((const char*)send + (size_t)sendOff[p] * rowBytes, (size_t)sendRows[p] * rowBytes, ncclUint8, p,
                  n->comm, stream);
    if (r == ncclSuccess && recvRows[p] > 0)
      r = n->recv((char*)recv + (size_t)recvOff[p] * rowBytes, (size_t)recvRows[p] * rowBytes, ncclUint8, p, n->comm,
                  stream);
  }
  ncclResult_t e = n->groupEnd();
  if (r == ncclSuccess) r = e;
  if (r != ncclSuccess) {
    fprintf(stderr, "NCCL alltoallv failed: %s\n", n->errorString(r));
    return epSystemError;
  }
  return epSuccess;
}

void epTestNcclDestroy(epTestNccl* n) {
  if (!n) return;
  if (n->comm) n->commDestroy(n->comm);
  // The library stays loaded: NCCL keeps threads and atexit handlers.
  delete n;
}
