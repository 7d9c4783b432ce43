/*************************************************************************
 * epcomm: HT intranode state of a communicator (comm->ht): the symmetric
 * NVLink buffer and its layout. Created on the first HT data-path call
 * (collective: every rank makes that call), freed by epCommDestroy through
 * epCommAddCleanup.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_INTRANODE_HT_STATE_H_
#define EP_INTRANODE_HT_STATE_H_

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "core/checks.h"
#include "epcomm.h"
#include "intranode/ht_types.h"
#include "transports/nvlink/nvl_buffer.h"

struct epComm;

/* Ring slots the size hint provisions per (channel, peer) ring. */
#define EP_HT_HINT_RING_SLOTS 32
/* Fewest slots a ring may have for a call to run (the combine reducers keep
 * up to a few tokens per warp in flight). */
#define EP_HT_MIN_RING_SLOTS 24
/* Channels the buffer is partitioned into at least (so that SM sweeps up to
 * this need no new buffer). */
#define EP_HT_MIN_BUFFER_CHANNELS 32

struct epHtState {
  epNvlBuffer nvl;
  epHtBufLayout lay;
  epHtPeers peers;
  uint32_t notifyEpoch = 0; /* last notify epoch used (same sequence on every rank) */
  /* Call epochs on the device, [EP_HT_EPOCH_KINDS][EP_HT_MAX_CHANNELS] (dispatch,
   * combine, notify): the kernels advance them, so a CUDA-graph replay gets a
   * fresh epoch like an eager call (ht_device.cuh, CallEpoch). */
  uint32_t* epochDev = nullptr;
  /* A notify was enqueued after the last dispatch kernel: the next direct
   * dispatch may read its call epoch and handshake before pdl_wait (the
   * previous dispatch completed before that notify started). */
  bool notifiedSinceDispatch = false;
  int lastDirect[2] = {0, 0};     /* 1: the last dispatch / combine took the direct path (tests, logs) */
  int smemOptin = 0;        /* max dynamic shared memory per block */
  int deviceSms = 0;
  unsigned attrDone = 0;     /* kernels whose smem limit was raised on this device (bit per kernel) */
  /* Dev profiling (EP_HT_DEV_PROF=1): device counters and host sums per kernel. */
  unsigned long long* prof = nullptr;
  double profSum[2][32] = {};
  int profCalls[2] = {0, 0};
};

/* Bits of epHtState::attrDone. */
enum { EP_HT_ATTR_COUNT = 1u << 0, EP_HT_ATTR_DISPATCH = 1u << 1, EP_HT_ATTR_COMBINE = 1u << 4 };

/* Lets `kernel` use up to st->smemOptin bytes of shared memory, static included (above
 * the 48 KB default), once per state: `bit` in attrDone records it. */
template <class Kernel>
epResult_t epHtAllowLargeSmem(epHtState* st, unsigned bit, Kernel kernel) {
  if (st->attrDone & bit) return epSuccess;
  // The limit covers static + dynamic shared memory: ask for what the static part leaves.
  cudaFuncAttributes fa;
  CUDACHECK(cudaFuncGetAttributes(&fa, kernel));
  CUDACHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 st->smemOptin - (int)fa.sharedSizeBytes));
  st->attrDone |= bit;
  return epSuccess;
}

/* Bytes of the direct-path handshake area (records, flags, done words). */
size_t epHtDirectBytes(int nranks, int maxChannels);
/* Device epoch counters of a kind (EP_HT_KIND_*, or EP_HT_EPOCH_NOTIFY). */
enum { EP_HT_EPOCH_NOTIFY = 2, EP_HT_EPOCH_KINDS = 3 };
inline uint32_t* epHtEpochCounters(epHtState* st, int kind) { return st->epochDev + (size_t)kind * EP_HT_MAX_CHANNELS; }
/* Bytes of header (everything but the rings) for this many ranks and channels. */
size_t epHtHeaderBytes(int nranks, int maxChannels);
/* Largest slot (dispatch or combine) a call with these parameters needs. */
int epHtMaxSlotBytes(int hidden, epDataType_t xType, int numTopk);
/* Fills `lay` for a buffer of `bytes`. */
void epHtLayoutCompute(int nranks, int rank, int maxChannels, size_t bytes, epHtBufLayout* lay);

/* Gets comm->ht, creating it (collectively) on first use. hidden/numTopk/
 * channels of the first call size the buffer when config.nvlBufferBytes is 0. */
epResult_t epHtStateGet(epComm* comm, int hidden, int numTopk, int channels, epHtState** out);

/* The device call epochs of a new state (zeroed, before any kernel), counted
 * in comm->deviceBytes. Every HT state needs them: the intranode one and the
 * node-level one the internode path runs the intranode kernels on. */
epResult_t epHtStateAllocEpochs(epComm* comm, epHtState* st);
/* Frees what `st` owns (its NVLink buffer through `comm`, which allocated it,
 * the call epochs, the profile counters) and deletes it. NULL: nothing. */
void epHtStateRelease(epComm* comm, epHtState* st);

/* Checks that HT intranode can run on this communicator (one NVLink domain). */
epResult_t epHtCheckIntranode(epComm* comm, const char* fn);

/* epInvalidUsage when `stream` is being captured into a CUDA graph. Intranode
 * HT calls are capturable (their call epochs live on the device); the
 * internode path is refused until it is verified under graph replay. */
epResult_t epHtCheckNotCapturing(epComm* comm, cudaStream_t stream, const char* fn);

/* Current tuning (defaults; EP_HT_DEV_* overrides while the kernels are being tuned). */
epHtTune epHtTuneGet(epHtState* st);
/* Dev profiling: after a dispatch (which=0) or combine (1) launch, collects and
 * every 20 calls prints the per-block averages. No-op unless EP_HT_DEV_PROF=1. */
void epHtProfAfter(epComm* comm, epHtState* st, int which, int channels, cudaStream_t stream);

/* Channels a call uses: numSms (0: the comm's default), clamped to the buffer's. */
int epHtChannels(epComm* comm, const epHtState* st, int numSms);

#endif  // EP_INTRANODE_HT_STATE_H_
