/*************************************************************************
 * epcomm: expert-parallel communication for Mixture-of-Experts models.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Public C ABI. Usable from C99 and C++. Every call returns epResult_t.
 *************************************************************************/
#ifndef EPCOMM_H_
#define EPCOMM_H_

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EP_MAJOR 0
#define EP_MINOR 1
#define EP_PATCH 0
#define EP_SUFFIX ""
#define EP_VERSION(X, Y, Z) ((X) * 10000 + (Y) * 100 + (Z))
#define EP_VERSION_CODE EP_VERSION(EP_MAJOR, EP_MINOR, EP_PATCH)

/* Status codes. Values are part of the ABI: never renumber. */
typedef enum {
  epSuccess = 0,
  epCudaError = 1,        /* a CUDA call failed */
  epSystemError = 2,      /* a system call failed (socket, file, dlopen) */
  epInternalError = 3,    /* a bug in epcomm */
  epInvalidArgument = 4,  /* a bad value was passed to a call */
  epInvalidUsage = 5,     /* the call is not valid in the current state */
  epRemoteError = 6,      /* a peer reported an error or went away */
  epTimeout = 7,          /* a peer or a device wait did not complete in time */
  epInProgress = 8,       /* an asynchronous operation has not finished */
  epNotSupported = 9,     /* the feature is not available on this system/build */
  epNumResults = 10
} epResult_t;

/* Element types used by the data-path calls. */
typedef enum {
  epInt32 = 0,
  epInt64 = 1,
  epFloat32 = 2,
  epBfloat16 = 3,
  epFloat8E4M3 = 4, /* OCP e4m3fn, as __nv_fp8_e4m3 */
  epUint8 = 5,
  epNumDataTypes = 6
} epDataType_t;

/* Opaque communicator. */
typedef struct epComm* epComm_t;

#define EP_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[EP_UNIQUE_ID_BYTES];
} epUniqueId;

/* Configuration. Always initialise with EP_CONFIG_INITIALIZER; fields left at
 * EP_CONFIG_UNDEF_INT / EP_CONFIG_UNDEF_PTR mean "use the EP_* environment
 * variable, else the default" (docs/env.md lists them). */
#define EP_CONFIG_UNDEF_INT (-2147483647 - 1)
#define EP_CONFIG_UNDEF_PTR NULL
#define EP_CONFIG_MAGIC 0xe9c0ffeeu
#define EP_CONFIG_VERSION 1

typedef struct {
  size_t size;           /* sizeof(epConfig_t), set by the initializer */
  unsigned int magic;    /* EP_CONFIG_MAGIC, set by the initializer */
  unsigned int version;  /* EP_CONFIG_VERSION, set by the initializer */
  /* Bootstrap and faults */
  int timeoutMs;          /* EP_TIMEOUT_MS: device waits and peer waits */
  int bootstrapTimeoutMs; /* EP_BOOTSTRAP_TIMEOUT (ms): ranks that never arrive */
  /* High-throughput mode */
  int numSms;              /* EP_NUM_SMS: default SM budget of HT kernels */
  int htMaxTokensPerRank;  /* EP_HT_MAX_TOKENS: largest T a rank may dispatch in HT mode */
  long long nvlBufferBytes; /* EP_NVL_BUFFER_BYTES: HT NVLink buffer per rank (0: from the size hint) */
  /* Low-latency mode */
  int llMaxTokensPerRank;  /* EP_LL_MAX_TOKENS: M, the LL max tokens per rank (0: LL disabled) */
  int llHidden;            /* hidden size the LL buffers are sized for */
  int llNumExperts;        /* number of experts the LL buffers are sized for */
  int llMaxTopk;           /* largest top-k used with LL calls */
  /* Networking */
  const char* net;         /* EP_NET: "ib", "emulated" or NULL for auto */
  int emulateNodes;        /* EP_EMULATE_NODES: split one host into N virtual nodes */
  const char* commName;    /* label used in log lines */
} epConfig_t;

#define EP_CONFIG_INITIALIZER                                                              \
  {                                                                                        \
    sizeof(epConfig_t), EP_CONFIG_MAGIC, EP_CONFIG_VERSION,                                \
        EP_CONFIG_UNDEF_INT,                           /* timeoutMs */                     \
        EP_CONFIG_UNDEF_INT,                           /* bootstrapTimeoutMs */            \
        EP_CONFIG_UNDEF_INT,                           /* numSms */                        \
        EP_CONFIG_UNDEF_INT,                           /* htMaxTokensPerRank */            \
        (long long)EP_CONFIG_UNDEF_INT,                /* nvlBufferBytes */                \
        EP_CONFIG_UNDEF_INT,                           /* llMaxTokensPerRank */            \
        EP_CONFIG_UNDEF_INT,                           /* llHidden */                      \
        EP_CONFIG_UNDEF_INT,                           /* llNumExperts */                  \
        EP_CONFIG_UNDEF_INT,                           /* llMaxTopk */                     \
        EP_CONFIG_UNDEF_PTR,                           /* net */                           \
        EP_CONFIG_UNDEF_INT,                           /* emulateNodes */                  \
        EP_CONFIG_UNDEF_PTR                            /* commName */                      \
  }

/* ---------------------------------------------------------------- Version, errors */
epResult_t epGetVersion(int* version);
const char* epGetErrorString(epResult_t result);
/* Text of the last error seen on `comm`; with comm == NULL, the last error of
 * the calling thread. Never NULL; "" when there was none. */
const char* epGetLastError(epComm_t comm);

/* ---------------------------------------------------------------- Communicator */
/* Rank 0 calls this and passes the id to every rank out of band. */
epResult_t epGetUniqueId(epUniqueId* uniqueId);

/* One process per GPU: uses the current CUDA device (if any). `config` may be NULL. */
epResult_t epCommInitRank(epComm_t* comm, int nranks, epUniqueId commId, int rank, const epConfig_t* config);

/* One process driving `ndev` GPUs (devlist NULL: devices 0..ndev-1). comms[ndev]. */
epResult_t epCommInitAll(epComm_t* comms, int ndev, const int* devlist, const epConfig_t* config);

/* Frees everything the communicator owns. Waits for nothing in flight on the
 * device: synchronise your streams first. epCommAbort also tells peers to stop. */
epResult_t epCommDestroy(epComm_t comm);
epResult_t epCommAbort(epComm_t comm);

epResult_t epCommUserRank(epComm_t comm, int* rank);
epResult_t epCommCount(epComm_t comm, int* count);
epResult_t epCommCuDevice(epComm_t comm, int* device); /* -1 when the rank has no GPU */
epResult_t epCommLocalRank(epComm_t comm, int* localRank);
epResult_t epCommLocalSize(epComm_t comm, int* localSize);
epResult_t epCommNodeIndex(epComm_t comm, int* node);
epResult_t epCommNodeCount(epComm_t comm, int* nodes);
/* isNvlinkPeer[nranks]: 1 where `peer` is reachable over NVLink/P2P from this rank. */
epResult_t epCommNvlinkPeers(epComm_t comm, int* isNvlinkPeer, int nranks);
/* Errors detected on the device by earlier calls (bad expert ids, capacity
 * overflow, timeouts). Call after synchronising the stream. Returns the error
 * code in *asyncError (epSuccess when none) and clears it; the message is in
 * epGetLastError(comm). */
epResult_t epCommGetAsyncError(epComm_t comm, epResult_t* asyncError);
/* Bytes of device memory the communicator has allocated so far. */
epResult_t epCommMemoryUsage(epComm_t comm, size_t* bytes);

/* ---------------------------------------------------------------- Buffer registration
 * Registers [buff, buff + size) of this rank's device memory with the
 * communicator, so that HT dispatch can write straight into output buffers
 * that lie in registered memory and HT combine can read its input straight
 * from the peers (no copy through the symmetric buffer's rings; see
 * epcomm/ht.h "Registered buffers").
 * - Collective: every rank calls it, in the same order, with its own region
 *   (sizes may differ). All ranks succeed or all fail with the same code.
 * - The memory must come from cudaMalloc (or a caching allocator built on it,
 *   such as PyTorch's) on this rank's device: it is exported with CUDA IPC.
 *   Host, managed and cuMem/VMM memory give epNotSupported or
 *   epInvalidArgument with a message; so does a region that overlaps one
 *   already registered on this rank.
 * - One-time cost (IPC export, bootstrap exchange, peers map the allocation
 *   once); nothing happens per data-path call. *handle identifies the region.
 * - Keep the memory allocated until epCommDeregister (or epCommDestroy, which
 *   releases every registration). */
epResult_t epCommRegister(epComm_t comm, void* buff, size_t size, void** handle);
/* Collective, in the same order on every rank. Host-synchronising: every
 * rank first waits for all work queued on its GPU (cudaDeviceSynchronize),
 * so when it returns no kernel on any rank still uses the region and the
 * memory may be freed. Not capturable in a CUDA graph. */
epResult_t epCommDeregister(epComm_t comm, void* handle);

#ifdef __cplusplus
} /* extern "C" */
#endif

/* Data-path families. Each header is self-contained and includes this one. */
#include "epcomm/ht.h"
#include "epcomm/ll.h"
#include "epcomm/eplb.h"

#endif /* EPCOMM_H_ */
