/*************************************************************************
 * epcomm: Low-latency (LL) dispatch/combine with receive hooks.
 * SPDX-License-Identifier: Apache-2.0
 *
 * For decoding: every rank sends at most M = epConfig_t.llMaxTokensPerRank
 * tokens, and the receive side has a fixed worst-case layout, so no call
 * synchronises with the host, none allocates, and every call can be captured
 * in a CUDA graph.
 *
 *   epLlHandle_t h;  epLowLatencyHandleCreate(comm, &h);       // once (collective the first time)
 *   epLlDispatchInput_t in = EP_LL_DISPATCH_INPUT_INITIALIZER;  ... x, topkIdx, topkWeights ...
 *   epLlDispatchOutput_t out = EP_LL_DISPATCH_OUTPUT_INITIALIZER; ... recvX, recvScales, recvCount ...
 *   epLowLatencyDispatch(comm, &in, &out, h, NULL, stream);
 *   ... experts: for local expert e, rows [0, recvCount[e]) of recvX[e] ...
 *   epLlCombineInput_t cin = EP_LL_COMBINE_INPUT_INITIALIZER;  ... x = expert outputs ...
 *   epLlCombineOutput_t cout = EP_LL_COMBINE_OUTPUT_INITIALIZER; ... out ...
 *   epLowLatencyCombine(comm, &cin, &cout, h, NULL, stream);
 *
 * Shapes (R ranks, E experts, L = E / R local experts, M max tokens per rank):
 *   dispatch in:  x [T x H] BF16, T <= M, H % 128 == 0, H <= llHidden;
 *                 topkIdx [T x K] (-1 = masked), K <= min(llMaxTopk, 16).
 *   dispatch out: recvX [L x R*M x H] (FP8 e4m3 or BF16); for local expert e,
 *                 rows [0, recvCount[e]) are valid, ordered by source rank and
 *                 then by the token's index on its source (deterministic);
 *                 recvLayoutRange[e][s] = (begin << 32) | count of the rows
 *                 from source rank s; recvSrcInfo[e][row] = token index on the
 *                 source. Rows past recvCount[e] are not written.
 *   combine in:   x [L x R*M x H] BF16 in the dispatch layout (the experts'
 *                 outputs), the same topkIdx as the dispatch, topkWeights [T x K].
 *   combine out:  out [T x H] BF16 = sum over valid k of w[t][k] * x_row(t, k),
 *                 accumulated in fp32 (a token with no valid expert gets 0).
 *
 * Hooks. With `hook = 1` a call only issues its sends and returns an
 * epLlHook_t; epLowLatencyRecv(comm, hook, stream) later runs the receive
 * phase. Over NVLink the send phase writes into the peers' memory itself and
 * ends: nothing holds an SM while the data is in flight, so the caller can
 * compute in between (two micro-batches overlapping).
 *
 * In-flight rule. The communicator has TWO buffer sets, used alternately by
 * consecutive LL calls (dispatch and combine alike). At most 2 calls may have
 * issued their send phase without their receive phase (hooked calls), and a
 * hook must be received before a later call would reuse its buffer set: i.e.
 * before the 3rd LL call after it. A call that would break the rule fails with
 * epInvalidUsage and launches nothing. Non-hooked calls complete on the stream
 * and never count as in flight. All LL calls of a communicator must be
 * stream-ordered (one stream, or streams the caller orders).
 * A dispatch's outputs (and its handle) stay valid until the caller
 * overwrites them: they are the caller's buffers, not the library's.
 *
 * Every rank must make the same sequence of LL calls with the same useFp8,
 * dedup, reduceOnSender and hook flags (and the same EP_LL_* protocol knobs):
 * an FP8 dedup dispatch and a combine reduced on the sender, among NVLink
 * peers, move their rows as flagged 128-byte lines (EP_LL_LINES, docs/env.md),
 * the other calls with release-ordered stores. A dispatch peer on the other
 * protocol or format is detected and reported (epInvalidUsage) instead of
 * waiting for data it never sends; in a combine, the rank on the release
 * protocol reports it and a rank waiting for lines ends with epTimeout.
 *
 * Errors detected on the device (expert id out of range: reported, and that
 * slot treated as masked; a peer that does not answer within
 * epConfig_t.timeoutMs: epTimeout; a peer that made the call with other
 * flags: epInvalidUsage) are read with epCommGetAsyncError. After a device
 * timeout or a mismatch call epLowLatencyClean before the next LL call.
 *************************************************************************/
#ifndef EPCOMM_LL_H_
#define EPCOMM_LL_H_

#include "epcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Routing state of one dispatch that its combine needs (where each token's
 * rows are on this rank, and the dispatch's weights). Created once; filled by
 * every epLowLatencyDispatch that names it, on the device. */
typedef struct epLlHandle* epLlHandle_t;

/* What a hooked call returns: pass it (by value) to epLowLatencyRecv exactly
 * once. Receiving a hook twice, or on another communicator, is epInvalidUsage. */
typedef struct {
  uint64_t internal[4];
} epLlHook_t;

/* Layout of FP8 scales in dispatch output. */
typedef enum {
  epLlScalesMnMajor = 0,    /* [L x S x R*M]: "column-major", what DeepGEMM-style grouped GEMMs read (default) */
  epLlScalesTokenMajor = 1  /* [L x R*M x S] */
} epLlScaleLayout_t;
/* S = H / 128 float32 scales, or with ue8m0 = 1, S = ceil(H / 512) int32 words
 * of 4 packed UE8M0 exponent bytes (byte j of word w is group 4w + j). */

typedef struct {
  size_t size;                /* sizeof(epLlDispatchInput_t), set by the initializer */
  const void* x;              /* [numTokens x hidden] BF16 (device) */
  int numTokens;              /* T, 0 <= T <= llMaxTokensPerRank (0 is valid: the rank sends nothing) */
  int hidden;                 /* H: multiple of 128, <= llHidden */
  const void* topkIdx;        /* [numTokens x numTopk] (device), -1 = masked */
  epDataType_t topkIdxType;   /* epInt32 or epInt64 */
  const float* topkWeights;   /* optional [numTokens x numTopk]: carried to the expert ranks, kept in the handle
                                 (combine's sender-side reduction uses them) and written to recvTopkWeights */
  int numTopk;                /* K, 1 <= K <= min(llMaxTopk, 16) */
  int numExperts;             /* E, <= llNumExperts, multiple of nranks */
  /* Options */
  int useFp8;                 /* 1: e4m3 rows + per-128-channel scales (amax / 448); 0: BF16 rows */
  int roundScale;             /* FP8: scales rounded up to a power of two */
  int ue8m0;                  /* FP8: scales packed as UE8M0 bytes (requires roundScale) */
  epLlScaleLayout_t scaleLayout;
  int dedup;                  /* 1: a token crosses to each destination rank once and is fanned out to the
                                 rank's experts there (fewer bytes); 0: one copy per (token, expert) */
  int hook;                   /* 1: send phase only; returns a hook for epLowLatencyRecv */
  int numSms;                 /* SMs (blocks) the kernels use; 0: EP_LL_NUM_SMS, else all SMs */
} epLlDispatchInput_t;

typedef struct {
  size_t size;                /* sizeof(epLlDispatchOutput_t), set by the initializer */
  void* recvX;                /* [L x R*M x H] e4m3 (useFp8) or BF16 */
  void* recvScales;           /* FP8 only: see epLlScaleLayout_t; float32, or int32 with ue8m0 */
  int32_t* recvCount;         /* [L] rows received per local expert */
  int64_t* recvLayoutRange;   /* optional [L x R]: (begin << 32) | count per source rank */
  int32_t* recvSrcInfo;       /* optional [L x R*M]: token index on the source rank */
  float* recvTopkWeights;     /* optional [L x R*M]: the row's top-k weight (needs input topkWeights) */
  int32_t* cumulativeRecvStats; /* optional [L]: += recvCount (load monitoring, as in DeepEP) */
} epLlDispatchOutput_t;

#define EP_LL_DISPATCH_INPUT_INITIALIZER                                                               \
  {                                                                                                    \
    sizeof(epLlDispatchInput_t), NULL, 0, 0, NULL, epInt64, NULL, 0, 0, /* useFp8 */ 1,               \
        /* roundScale */ 0, /* ue8m0 */ 0, epLlScalesMnMajor, /* dedup */ 1, /* hook */ 0, /* numSms */ 0 \
  }
#define EP_LL_DISPATCH_OUTPUT_INITIALIZER \
  { sizeof(epLlDispatchOutput_t), NULL, NULL, NULL, NULL, NULL, NULL, NULL }

typedef struct {
  size_t size;                /* sizeof(epLlCombineInput_t), set by the initializer */
  const void* x;              /* [L x R*M x H] BF16 expert outputs in the dispatch layout; ignored with zeroCopy */
  const void* topkIdx;        /* [T x K], the ids given to the dispatch that filled the handle */
  epDataType_t topkIdxType;   /* epInt32 or epInt64 */
  const float* topkWeights;   /* [T x K]; not needed with reduceOnSender (the dispatch's weights are used) */
  int numTokens;              /* T of that dispatch */
  int numTopk;
  int hidden;                 /* H of that dispatch */
  /* Options */
  int zeroCopy;               /* 1: x was written into epLowLatencyGetNextCombineBuffer() */
  int reduceOnSender;         /* 1: each expert rank sums its experts' rows of a token, weighted by the
                                 dispatch's weights, and sends one BF16 row per (token, rank) (fewer bytes;
                                 one more BF16 rounding of the partial sums) */
  int hook;                   /* 1: send phase only; returns a hook for epLowLatencyRecv */
  int numSms;                 /* 0: EP_LL_NUM_SMS, else all SMs */
} epLlCombineInput_t;

typedef struct {
  size_t size;                /* sizeof(epLlCombineOutput_t), set by the initializer */
  void* out;                  /* [T x H] BF16 */
} epLlCombineOutput_t;

#define EP_LL_COMBINE_INPUT_INITIALIZER \
  { sizeof(epLlCombineInput_t), NULL, NULL, epInt64, NULL, 0, 0, 0, 0, 0, 0, 0 }
#define EP_LL_COMBINE_OUTPUT_INITIALIZER { sizeof(epLlCombineOutput_t), NULL }

/* Bytes of symmetric device memory per rank that LL mode allocates for this
 * shape (two buffer sets, signals, staging); handles and the zero-copy
 * buffers are extra (see epLowLatencyHandleCreate/GetNextCombineBuffer). */
epResult_t epGetLowLatencySizeHint(int maxTokensPerRank, int hidden, int nranks, int numExperts, int maxTopk,
                                   size_t* bytes);

/* The first call on a communicator is collective (allocates and maps the LL
 * buffers on every rank); later calls are local. */
epResult_t epLowLatencyHandleCreate(epComm_t comm, epLlHandle_t* handle);
epResult_t epLowLatencyHandleDestroy(epLlHandle_t handle);

/* hook: required (non-NULL) when in->hook is 1, else ignored. */
epResult_t epLowLatencyDispatch(epComm_t comm, const epLlDispatchInput_t* in, const epLlDispatchOutput_t* out,
                                epLlHandle_t handle, epLlHook_t* hook, cudaStream_t stream);

epResult_t epLowLatencyCombine(epComm_t comm, const epLlCombineInput_t* in, const epLlCombineOutput_t* out,
                               epLlHandle_t handle, epLlHook_t* hook, cudaStream_t stream);

/* Runs the receive phase of a hooked dispatch or combine, into the outputs
 * that call named. Enqueued on `stream` (which must be ordered after the send). */
epResult_t epLowLatencyRecv(epComm_t comm, epLlHook_t hook, cudaStream_t stream);

/* The buffer the NEXT epLowLatencyCombine with zeroCopy = 1 reads its expert
 * outputs from, laid out [L x R*M x H] BF16 for the L and H of that combine
 * (*bytes is its capacity, sized for llNumExperts and llHidden). Allocated on
 * the first call (local, not collective), never per call. Over NVLink it
 * saves nothing (the combine reads x directly either way); it lets the RDMA
 * path put straight from registered memory. */
epResult_t epLowLatencyGetNextCombineBuffer(epComm_t comm, void** buffer, size_t* bytes);

/* Collective, host-synchronising (not capturable): waits for the comm's LL
 * work on `stream`, zeroes all LL signals and sequence state on every rank,
 * and forgets pending hooks. Use after a device error or timeout. */
epResult_t epLowLatencyClean(epComm_t comm, cudaStream_t stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EPCOMM_LL_H_ */
