/*************************************************************************
 * epcomm: HT internode state of a communicator (comm->inter) and the
 * internode part of an HT handle.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Two parts, created at different times:
 *  - the node comm (epInterCommGet, not collective, from epHtHandleCreate):
 *    an internal epComm over this node's G ranks (rank = local rank,
 *    nNodes = 1) that the verified intranode entry points run on unchanged.
 *    It shares the parent's device status block; it has no bootstrap, so
 *    its HT state (NVLink buffer among the node's ranks) is built here
 *    through the parent's bootstrap, never by epHtStateGet.
 *  - the buffers (epInterBuffersGet, collective, first notify): the node
 *    comm's NVLink buffer, the registered network window (signals, headers,
 *    dispatch/combine staging), the forwarder's padded/virtual arrays and
 *    the scratch rows that reorder intranode output into source-rank order.
 *************************************************************************/
#ifndef EP_INTERNODE_INTER_STATE_H_
#define EP_INTERNODE_INTER_STATE_H_

#include <cstddef>
#include <cstdint>

#include "epcomm.h"
#include "internode/inter_plan.h"
#include "transports/proxy/net_device.h"

struct epComm;
struct epHtHandle;

struct epInterState {
  epInterPlacement pl;
  epComm* node = nullptr;   /* the node comm (owned) */
  int Tcfg = 0;             /* parent's htMaxTokensPerRank: stride of the padded token space */
  /* Buffers (after epInterBuffersGet). */
  bool ready = false;
  int maxHidden = 0;        /* hidden the buffers hold (BF16 rows) */
  epInterBufLayout lay{};
  char* win = nullptr;      /* registered window (device) */
  int winId = -1;
  epNetDevice net{};
  /* Forwarder arrays, virtual token space Tvirt = G * N * Tcfg. */
  char* fwdX = nullptr;     /* [Tvirt][maxRowBytes] */
  int* fwdScales = nullptr; /* [Tvirt][maxScaleCols] */
  int* fwdTopk = nullptr;   /* [Tvirt][EP_INTER_REC_TOPK] */
  float* fwdW = nullptr;    /* [Tvirt][EP_INTER_REC_TOPK] */
  char* fwdOut = nullptr;   /* [Tvirt][maxHidden] BF16: intranode combine output */
  float* fwdOutW = nullptr; /* [Tvirt][EP_INTER_REC_TOPK] */
  /* Scratch rows in intranode order, [R * Tcfg] (dispatch output, combine input). */
  char* scrX = nullptr;
  int* scrScales = nullptr;
  int* scrTopk = nullptr;
  float* scrW = nullptr;
  int* scrSrc = nullptr;
  int* rankNL = nullptr;    /* device [R]: node << 16 | local rank */
  unsigned long long* seq = nullptr; /* device [4]: dispatch / combine phase counters and current values */
  unsigned settled = 0;     /* node-comm entry points already called once (bits: notify, dispatch, combine) */
  size_t devBytes = 0;
};

/* Internode part of an HT handle (epHtHandle::inter). */
struct epInterHandle {
  epHtHandle* sub = nullptr; /* intranode handle on the node comm (Tvirt tokens) */
  int maxTokens = 0;
  void* devMem = nullptr;
  int* nodeSlot = nullptr;   /* [maxTokens x N] */
  int* nodeCount = nullptr;  /* [N] */
  int* fwdCount = nullptr;   /* [N] rows this forwarder received from each source node */
  int* fwdSrc = nullptr;     /* [N x Tcfg] source token of each received slot */
  uint8_t* fwdHold = nullptr; /* [N x Tcfg] local ranks holding an expert of padded token p (bit j) */
  int* perm = nullptr;       /* [R * Tcfg] intranode row -> output row */
  bool dispatched = false;   /* perm is valid (a dispatch ran with this handle) */
  int numTokens = 0, numTopk = 0, numExperts = 0, hidden = 0;
  int withTopk = 0, withW = 0;
};

/* The node comm of `comm` (caller owns it; no bootstrap, no HT state). */
epComm* epInterNodeCommCreate(const epComm* comm, const epInterPlacement& pl, int Tcfg);
/* True when HT calls on `comm` take the internode path. */
bool epInterWanted(const epComm* comm);
/* The placement and node comm (creates them; not collective). */
epResult_t epInterCommGet(epComm* comm, epInterState** out);
/* An error recorded by the intranode kernels running on the node comm (they
 * share the parent's device status) names a node-local peer: rewrite it as
 * the parent comm's rank so that the message names the real peer. */
struct epDeviceStatus;
void epInterMapDeviceStatus(const epComm* comm, epDeviceStatus* s);
/* Buffers for rows of `hidden` (collective on first use). */
epResult_t epInterBuffersGet(epComm* comm, int hidden, int numSms, epInterState** out);

#endif  // EP_INTERNODE_INTER_STATE_H_
