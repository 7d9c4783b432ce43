/*************************************************************************
 * epcomm: the verbs data path of one RC QP: ops -> work requests, flow
 * control and completion. The only place that calls ibv_post_send.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Planning (pure, epIbPlan): an op becomes
 *   - RDMA WRITEs of at most maxChunk bytes for its data, then
 *   - its signal: EP_IB_SIGNAL=atomic: FETCH_AND_ADD (ADD) or an 8-byte
 *     inline WRITE (SET) on the peer's signal word; EP_IB_SIGNAL=imm: a
 *     WRITE_WITH_IMM whose immediate carries the signal, fused into the
 *     last data write unless adaptive routing is on.
 * Ordering rule with adaptive routing (EP_IB_ADAPTIVE_ROUTING): packets of
 * different writes may be placed out of order, so data goes as plain
 * writes and the signal is never fused into them. An imm signal follows as
 * a separate zero-byte WRITE_WITH_IMM (its completion at the responder is
 * ordered after all earlier writes of the QP); an atomic or inline-write
 * signal is held back ("deferred") until every earlier work request of the
 * QP has completed at the requester, i.e. was acknowledged as placed.
 * Without adaptive routing the RC QP orders everything: nothing is held.
 *
 * Flow control: at most maxInflight work requests per QP are outstanding
 * (EP_IB_MAX_INFLIGHT; the send queue is sized to it). An op is posted
 * whole or not at all (epInProgress). Only the last WR of each posted
 * segment is signalled; RC completes in order, so one completion retires
 * the segment's unsignalled WRs as well.
 *************************************************************************/
#ifndef EP_TRANSPORT_IB_POST_H_
#define EP_TRANSPORT_IB_POST_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "epcomm.h"
#include "transports/ib/ibvwrap.h"
#include "transports/proxy/net_backend.h"
#include "transports/proxy/net_desc.h"

enum epIbSignalMode { EP_IB_SIGNAL_ATOMIC = 0, EP_IB_SIGNAL_IMM = 1 };

struct epIbSendOptions {
  bool adaptiveRouting = false;
  int signalMode = EP_IB_SIGNAL_ATOMIC;
  uint32_t maxChunk = 1u << 30;
  int maxInflight = 128;
};

enum epIbStepKind {
  EP_IB_STEP_WRITE = 0,        /* data chunk */
  EP_IB_STEP_WRITE_IMM = 1,    /* last data chunk carrying the imm signal */
  EP_IB_STEP_IMM = 2,          /* zero-byte WRITE_WITH_IMM: the signal alone */
  EP_IB_STEP_FETCH_ADD = 3,    /* ADD signal */
  EP_IB_STEP_WRITE_INLINE = 4  /* SET signal: 8-byte inline write */
};

struct epIbStep {
  int kind;
  uint64_t off;   /* data steps: offset within the op's bytes */
  uint32_t len;
  bool deferred;  /* posted only once all earlier WRs of the QP completed */
};

#define EP_IB_MAX_STEPS 64

/* Returns the number of steps, or -1 when the op needs more than `max`. */
int epIbPlan(const epNetOpFields& f, const epIbSendOptions& o, epIbStep* steps, int max);

/* Immediate-data form of a signal (EP_IB_SIGNAL=imm):
 *   bits 31..27 window (< 32) | 26 op | 25..16 slot (< 1024) | 15..0 value (int16)
 * Returns false when the signal does not fit; the proxy then fails the op
 * with a message pointing at EP_IB_SIGNAL=atomic. */
bool epIbImmEncode(uint32_t win, uint32_t slot, uint32_t op, int32_t value, uint32_t* imm);
void epIbImmDecode(uint32_t imm, uint32_t* win, uint32_t* slot, uint32_t* op, int32_t* value);

/* Per-window keys for the data path (filled by the backend at registration). */
struct epIbWinKeys {
  bool live = false;
  uint64_t localAddr = 0;
  uint32_t lkey = 0;
  std::vector<uint64_t> remoteAddr; /* [nranks] */
  std::vector<uint32_t> rkey;       /* [nranks] */
};

class epIbQpSender {
 public:
  /* id goes into the high 32 bits of every wr_id, so the backend can route a
   * completion back to this sender. scratch: 8 registered bytes that atomic
   * fetch results land in (discarded). */
  epIbQpSender(const epIbvFns* ibv, struct ibv_qp* qp, uint32_t id, int peer, int channel, const epIbSendOptions& o,
               const std::vector<epIbWinKeys>* windows, uint64_t scratchAddr, uint32_t scratchLkey);

  /* epSuccess: posted (completion later); epInProgress: no room, nothing posted. */
  epResult_t post(const epNetOpFields& f, uint64_t ticket);
  /* A signalled WR of this QP completed successfully. */
  epResult_t onCompletion(uint64_t wrId, epNetCompletionSink* sink);
  /* Posts held (deferred) signals that became eligible. */
  epResult_t flush();

  int inflight() const { return inflight_; }
  bool idle() const { return posted_.empty() && held_.empty(); }
  int peer() const { return peer_; }
  int channel() const { return channel_; }
  uint64_t heldCount() const { return held_.size(); }

 private:
  struct Seg {
    uint64_t seq;
    int nWr;
    bool final;
    uint64_t ticket;
  };
  struct Held {
    uint64_t afterSeq;
    epIbStep step;
    epNetOpFields f;
    uint64_t ticket;
  };
  void buildWr(const epIbStep& s, const epNetOpFields& f, struct ibv_send_wr* wr, struct ibv_sge* sge,
               uint64_t* inlineValue);
  epResult_t postChain(struct ibv_send_wr* head, int n, bool final, uint64_t ticket);

  const epIbvFns* ibv_;
  struct ibv_qp* qp_;
  uint32_t id_;
  int peer_, channel_;
  epIbSendOptions opt_;
  const std::vector<epIbWinKeys>* win_;
  uint64_t scratchAddr_;
  uint32_t scratchLkey_;
  uint64_t nextSeq_ = 1, completedSeq_ = 0;
  int inflight_ = 0;
  std::deque<Seg> posted_;
  std::deque<Held> held_;
};

#endif  // EP_TRANSPORT_IB_POST_H_
