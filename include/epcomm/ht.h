/*************************************************************************
 * epcomm: High-throughput (HT) dispatch/combine: layout, intranode and internode.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Typical use (mode a, host-synchronised sizing):
 *
 *   epHtHandle_t h;  epHtHandleCreate(comm, maxTokens, &h);          // once
 *   epDispatchInput_t in = EP_DISPATCH_INPUT_INITIALIZER;  ... fill ...
 *   int nrecv;  epDispatchNotify(comm, &in, h, &nrecv, perExpert, stream); // syncs stream
 *   ... allocate recv buffers of nrecv rows ...
 *   epDispatchOutput_t out = EP_DISPATCH_OUTPUT_INITIALIZER; ... capacity = nrecv ...
 *   epDispatch(comm, &in, &out, h, stream);
 *   ... experts: weight and sum local experts per received row ...
 *   epCombine(comm, &cin, &cout, h, stream);
 *
 * Mode b (worst-case capacity, no host synchronisation): call
 * epDispatchNotify with NULL host pointers, then epDispatch with a capacity
 * large enough for the worst case (numTokens * nranks rows). The real row
 * count is written to out.numRecvTokens (device). Rows past it are untouched;
 * a capacity that is too small is detected on the device, reported through
 * epCommGetAsyncError (epInvalidUsage), and nothing is written out of bounds.
 * Intranode, mode b and c calls are capturable in a CUDA graph (their call
 * epochs live on the device, so every replay is a fresh call; buffers the
 * graph uses must stay registered while it exists). On a multi-node
 * communicator a capturing stream gets epInvalidUsage (not yet verified).
 *
 * Mode c (cached): call epDispatch again with the same handle and the same
 * routing, without epDispatchNotify: the count exchange is skipped. This is
 * also the backward of combine. Combine is the backward of dispatch.
 *
 * Received rows are ordered by source rank, then by the source's token order
 * (within channel blocks); recvSrcIdx gives the source token index of each row.
 *
 * Registered buffers (the direct path, fastest). Register the dispatch
 * outputs (recvX, recvXScales, recvTopkIdx, recvTopkWeights, recvSrcIdx: each
 * one that is passed, for `capacity` rows) and combine's x and topkWeights
 * once with epCommRegister (epcomm.h), e.g. one pool allocation holding them
 * all. Then:
 *  - epDispatch: every sender writes each token's row and metadata straight to
 *    its final row in the receiver's outputs over NVLink (no ring, no copy by
 *    the receiver), so all numSms SMs push data;
 *  - epCombine: each rank reads the rows of its tokens straight from the
 *    peers' registered x and reduces them (pull).
 * Outputs, order and numerics are identical to the ring path. A call whose
 * buffers are not all registered (on this rank) uses the ring path through
 * the symmetric buffer instead; every rank of a call must take the same path
 * (all registered or none): otherwise the call moves nothing and every rank
 * gets epInvalidUsage from epCommGetAsyncError. A rank with nothing to look
 * up (dispatch capacity 0, combine x NULL because it received no rows) takes
 * the direct path whenever it has any registration: so register the dispatch
 * outputs and the combine input together, on every rank, or neither (known
 * limitation: registering only the dispatch outputs fails the combine of a
 * call in which some rank received no rows). EP_HT_DIRECT=0 disables the
 * direct path. Registered outputs may be written by peers from the moment
 * this rank's dispatch starts on its stream until it ends, and a registered
 * combine x is read by peers during this rank's combine: the usual stream
 * order on each rank is all that is needed.
 *************************************************************************/
#ifndef EPCOMM_HT_H_
#define EPCOMM_HT_H_

#include "epcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque dispatch handle: the layout of one dispatch, reused by cached
 * dispatch and by combine. Created once; no allocation per call. */
typedef struct epHtHandle* epHtHandle_t;

typedef enum {
  epScaleNone = 0,    /* BF16 rows: no scales */
  epScaleFloat32 = 1, /* FP8 rows: float32 scale per 128 channels, [T x H/128] */
  epScaleUE8M0 = 2    /* FP8 rows: 4 UE8M0 exponents packed per int32, [T x H/512] */
} epScaleFormat_t;

/* Computes the dispatch layout of top-k routing on the GPU.
 * topkIdx: [numTokens x numTopk] int32 or int64, -1 = masked.
 * Outputs (device, caller-allocated; any may be NULL except isTokenInRank when
 * the others are NULL too): numTokensPerRank [nranks], numTokensPerNode [nNodes],
 * numTokensPerExpert [numExperts], isTokenInRank [numTokens x nranks] (0/1 bytes).
 * Expert ids outside [-1, numExperts) are reported by epCommGetAsyncError. */
epResult_t epGetDispatchLayout(epComm_t comm, const void* topkIdx, epDataType_t topkIdxType, int numTokens,
                               int numTopk, int numExperts, int* numTokensPerRank, int* numTokensPerNode,
                               int* numTokensPerExpert, uint8_t* isTokenInRank, cudaStream_t stream);

/* Bytes of symmetric NVLink buffer HT mode needs for this workload. Pass the
 * result as epConfig_t.nvlBufferBytes (0 there means: use this hint with the
 * comm's config). */
epResult_t epGetBufferSizeHint(int nranks, int hidden, epDataType_t xType, int numTopk, int numSms,
                               size_t* nvlBytes);

epResult_t epHtHandleCreate(epComm_t comm, int maxTokens, epHtHandle_t* handle);
epResult_t epHtHandleDestroy(epHtHandle_t handle);
/* Rows the handle's last notify says this rank receives (host value; valid
 * after a host-synchronised notify, else -1). */
epResult_t epHtHandleNumRecv(epHtHandle_t handle, int* numRecvTokens);

typedef struct {
  size_t size; /* sizeof(epDispatchInput_t), set by the initializer */
  /* Token rows */
  const void* x;               /* [numTokens x hidden] */
  epDataType_t xType;          /* epBfloat16 or epFloat8E4M3 */
  const void* xScales;         /* FP8: scales, layout given by scaleFormat and the strides below */
  epScaleFormat_t scaleFormat; /* epScaleNone for BF16 */
  long long scaleStrideToken;  /* elements between tokens (0: packed row-major) */
  long long scaleStrideCol;    /* elements between scale columns (0: 1) */
  int numTokens;
  int hidden;
  /* Routing */
  const void* topkIdx;         /* [numTokens x numTopk], -1 = masked */
  epDataType_t topkIdxType;    /* epInt32 or epInt64 */
  const float* topkWeights;    /* optional [numTokens x numTopk] */
  int numTopk;
  int numExperts;
  /* Optional layout from epGetDispatchLayout (else computed internally) */
  const int* numTokensPerRank;
  const int* numTokensPerExpert;
  const uint8_t* isTokenInRank;
  int expertAlignment;         /* per-expert counts rounded up to this (>= 1) */
  int numSms;                  /* SM budget for this call; 0: the comm's default */
} epDispatchInput_t;

typedef struct {
  size_t size;                 /* sizeof(epDispatchOutput_t), set by the initializer */
  void* recvX;                 /* [capacity x hidden], same type as x */
  void* recvXScales;           /* FP8: [capacity x scaleCols] row-major, same format as the input */
  int32_t* recvTopkIdx;        /* optional [capacity x numTopk]: local expert id, -1 if not on this rank */
  float* recvTopkWeights;      /* optional [capacity x numTopk]: 0 where recvTopkIdx is -1 */
  int32_t* recvSrcIdx;         /* optional [capacity]: token index on the source rank */
  int32_t* recvCountPerExpert; /* optional device [numExperts / nranks], aligned counts */
  int32_t* numRecvTokens;      /* optional device scalar: rows this rank received */
  int capacity;                /* rows available in the arrays above */
} epDispatchOutput_t;

#define EP_DISPATCH_INPUT_INITIALIZER                                                                  \
  {                                                                                                    \
    sizeof(epDispatchInput_t), NULL, epBfloat16, NULL, epScaleNone, 0, 0, 0, 0, NULL, epInt64, NULL, 0, \
        0, NULL, NULL, NULL, 1, 0                                                                      \
  }
#define EP_DISPATCH_OUTPUT_INITIALIZER \
  { sizeof(epDispatchOutput_t), NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0 }

/* Exchanges per-rank / per-expert counts and fills the handle's layout.
 * numRecvTokens/recvCountPerExpert: host pointers. Non-NULL: mode (a), the
 * stream is synchronised and the values are returned. NULL: mode (b), no host
 * synchronisation. */
epResult_t epDispatchNotify(epComm_t comm, const epDispatchInput_t* in, epHtHandle_t handle, int* numRecvTokens,
                            int* recvCountPerExpert, cudaStream_t stream);

/* Moves the rows using the handle's current layout (from the last notify). */
epResult_t epDispatch(epComm_t comm, const epDispatchInput_t* in, const epDispatchOutput_t* out,
                      epHtHandle_t handle, cudaStream_t stream);

typedef struct {
  size_t size;                 /* sizeof(epCombineInput_t) */
  const void* x;               /* [numRecv x hidden] BF16, rows in dispatch-output order */
  const float* topkWeights;    /* optional [numRecv x numTopk]: summed per token like x */
  const void* bias0;           /* optional [numTokens x hidden] BF16, added once per token */
  const void* bias1;           /* optional second bias */
  int hidden;
  int numSms;                  /* 0: the comm's default */
} epCombineInput_t;

typedef struct {
  size_t size;                 /* sizeof(epCombineOutput_t) */
  void* out;                   /* [numTokens x hidden] BF16: fp32 sum of the returned rows (+ biases) */
  float* outTopkWeights;       /* optional [numTokens x numTopk] */
} epCombineOutput_t;

#define EP_COMBINE_INPUT_INITIALIZER { sizeof(epCombineInput_t), NULL, NULL, NULL, NULL, 0, 0 }
#define EP_COMBINE_OUTPUT_INITIALIZER { sizeof(epCombineOutput_t), NULL, NULL }

/* For each original token: out[t] = sum over the ranks r it went to of x_r[row(t, r)] (+ biases). */
epResult_t epCombine(epComm_t comm, const epCombineInput_t* in, const epCombineOutput_t* out, epHtHandle_t handle,
                     cudaStream_t stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EPCOMM_HT_H_ */
