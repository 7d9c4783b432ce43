/*************************************************************************
 * epcomm: HT intranode — what host code and kernels share about the
 * symmetric NVLink buffer and the handle's device arrays.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Buffer of one rank (all offsets from its base; identical on every rank):
 *
 *   notify   [2 parity][R src][notifyInts]   counts a source wrote for us
 *   nflag    [2 parity][R src]               epoch the source published them with
 *   tail     [Cmax][R src]      (stride 64B) slots the source has written into ring (c, src)
 *   head     [Cmax][R dst]      (stride 64B) slots dst has consumed of ring (c, me -> dst)
 *   sendPos  [Cmax][R dst]      (stride 64B) our own tail of ring (c, me -> dst), kept across calls
 *   recvPos  [Cmax][R src]      (stride 64B) our own head of ring (c, src -> me), kept across calls
 *   drec     [2 kind][R src]    (128 B each) src's registered buffers for this call (direct path)
 *   dflag    [2 kind][R src]    (stride 64B) epoch*2 + direct: src started call `epoch` on that path
 *   ddone    [2 kind][R src][Cmax]           epoch: src's channel c finished writing to / reading from us
 *   rings    [Cmax][R src][ringBytes]        ring (c, src -> me): `cap` slots of slotBytes
 *
 * A ring carries data from src to the rank whose buffer holds it, for
 * dispatch and combine alike (same direction, same counters). Counters only
 * grow (uint32 wrap-around safe), so no call has to reset them and no
 * device-wide barrier is needed between calls: flow control alone orders a
 * call after the previous one.
 *************************************************************************/
#ifndef EP_INTRANODE_HT_TYPES_H_
#define EP_INTRANODE_HT_TYPES_H_

#include <cstdint>

#define EP_HT_MAX_NVL_RANKS 8     /* ranks of one NVLink domain the intranode kernels handle */
#define EP_HT_MAX_CHANNELS 128    /* channels (= SMs) one call may use */
#define EP_HT_MAX_LOCAL_EXPERTS 1024
#define EP_HT_MAX_TOPK 32
#define EP_HT_COUNTER_STRIDE 16   /* ints between two flow-control counters (64 bytes) */

struct epHtBufLayout {
  int nranks;
  int rank;
  int maxChannels;
  int notifyInts;        /* ints per notify slot: 1 + maxChannels + EP_HT_MAX_LOCAL_EXPERTS + EP_HT_MAX_NVL_RANKS, padded */
  long long notifyOff;
  long long nflagOff;
  long long tailOff;
  long long headOff;
  long long sendPosOff;
  long long recvPosOff;
  long long drecOff;     /* direct path: records, flags, done words (see above) */
  long long dflagOff;
  long long ddoneOff;
  long long ringOff;
  long long ringBytes;   /* bytes of one ring (multiple of 128) */
  long long totalBytes;
};

/* Kinds of the direct-path handshake words (index of drec/dflag/ddone). */
enum { EP_HT_KIND_DISPATCH = 0, EP_HT_KIND_COMBINE = 1 };
#define EP_HT_NUM_REG_BUFS 5 /* dispatch: recvX, scales, top-k ids, weights, src idx; combine: x, weights */

/* What a rank tells a peer about its registered buffers for one call
 * (written into the peer's drec[kind][me], published by dflag). */
struct alignas(16) epHtDirectRec {
  long long off[EP_HT_NUM_REG_BUFS]; /* byte offset inside the registration */
  int slot[EP_HT_NUM_REG_BUFS];      /* registration slot, -1: buffer not given */
  int rows;                          /* dispatch: capacity; combine: rows readable in x */
  int wRows;                         /* combine: rows readable in weights */
  int base;                          /* combine: first row of the peer's rows in our buffers (our rankPrefix[peer]); dispatch: -1 (senders use the notify's sendBase) */
  int pad[14];
};
static_assert(sizeof(epHtDirectRec) == 128, "direct record is one 128-byte line");

/* Tuning knobs of the data-path kernels (host-chosen, passed by value; EP_HT_DEV_* in docs/env.md). */
struct epHtTune {
  int pubEvery;    /* dispatch: items between two tail publications */
  int cpubEvery;   /* combine: items between two tail publications */
  int lag8;        /* 1: publish 8 items late instead of 4 */
  int readLag2;    /* 1: the issuer lets 2 store groups read their stage instead of 1 */
  int nProd;       /* producer warps in dispatch (1..4) */
  int nRecv;       /* receiver warps in dispatch (1..2) */
  unsigned long long* prof; /* dev profiling counters [blocks][32] (NULL: off) */
};

/* Pointers into the buffers of every rank of the NVLink domain (kernel parameter). */
struct epHtPeers {
  char* buf[EP_HT_MAX_NVL_RANKS];
};

/* What the notify kernels leave in host-mapped memory for mode (a). */
struct epHtHostInfo {
  volatile int epoch;      /* written last: the notify epoch these values belong to */
  int numRecv;
  int perExpert[EP_HT_MAX_LOCAL_EXPERTS];
};

/* Device arrays of a handle (one allocation, carved). [R][Cmax] arrays use
 * stride EP_HT_MAX_CHANNELS. */
struct epHtHandleDev {
  uint8_t* isTokenInRank; /* [maxTokens x R] */
  int* slotPrefix;        /* [maxTokens x R] tokens before t in its channel that go to r */
  int* sendChanCount;     /* [R][Cmax] tokens of channel c going to r */
  int* recvChanCount;     /* [R][Cmax] rows src sends us in channel c */
  int* recvChanPrefix;    /* [R][Cmax] first row of (src, c) inside src's block */
  int* rankPrefix;        /* [R + 1] first row of each source */
  int* numRecv;           /* [1] */
  int* expertCount;       /* [R * EP_HT_MAX_LOCAL_EXPERTS] tokens per (global) expert */
  int* expertAligned;     /* [EP_HT_MAX_LOCAL_EXPERTS] per local expert, aligned */
  int* notifyTicket;      /* notify: blocks done counting (the last one exchanges and resets it to 0) */
  int* sendBase;          /* [R] first row of our rows in rank r's received rows (r's rankPrefix[me]) */
};

/* Byte offsets inside a dispatch slot: row | scales | top-k ids | weights | src idx. */
struct epHtSlotLayout {
  int xBytes;
  int scaleOff, scaleCols;
  int idxOff, wOff, K;
  int srcOff;
  int slotBytes;
};

static inline epHtSlotLayout epHtDispatchSlot(int xBytes, int scaleCols, int K, bool withIdx, bool withW) {
  epHtSlotLayout s;
  s.xBytes = xBytes;
  s.scaleOff = xBytes;
  s.scaleCols = scaleCols;
  s.K = K;
  s.idxOff = s.scaleOff + scaleCols * 4;
  s.wOff = s.idxOff + (withIdx ? K * 4 : 0);
  s.srcOff = s.wOff + (withW ? K * 4 : 0);
  s.slotBytes = (s.srcOff + 4 + 15) & ~15;
  return s;
}
/* Combine slot: BF16 row | K float weights. */
static inline epHtSlotLayout epHtCombineSlot(int hidden, int K, bool withW) {
  epHtSlotLayout s;
  s.xBytes = hidden * 2;
  s.scaleOff = s.xBytes;
  s.scaleCols = 0;
  s.K = K;
  s.idxOff = s.xBytes;
  s.wOff = s.xBytes;
  s.srcOff = s.wOff + (withW ? K * 4 : 0);
  s.slotBytes = (s.srcOff + 15) & ~15;
  return s;
}

#endif  // EP_INTRANODE_HT_TYPES_H_
