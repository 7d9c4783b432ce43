/*************************************************************************
 * epcomm: verbs data path of one RC QP (see ib_post.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/ib/ib_post.h"

#include <arpa/inet.h>

#include <cinttypes>
#include <cstring>

#include "core/checks.h"
#include "core/debug.h"

int epIbPlan(const epNetOpFields& f, const epIbSendOptions& o, epIbStep* steps, int max) {
  int n = 0;
  const uint32_t chunk = o.maxChunk ? o.maxChunk : 0xffffffffu;
  if (epNetOpHasData(f.op)) {
    for (uint64_t off = 0; off < f.bytes; off += chunk) {
      if (n == max) return -1;
      uint64_t len = f.bytes - off < chunk ? f.bytes - off : chunk;
      steps[n++] = epIbStep{EP_IB_STEP_WRITE, off, (uint32_t)len, false};
    }
  }
  if (!epNetOpHasSignal(f.op)) return n;
  if (o.signalMode == EP_IB_SIGNAL_IMM) {
    if (n > 0 && !o.adaptiveRouting) {
      steps[n - 1].kind = EP_IB_STEP_WRITE_IMM;  // fused: one WR for the last chunk and the signal
      return n;
    }
    if (n == max) return -1;
    steps[n++] = epIbStep{EP_IB_STEP_IMM, 0, 0, false};
    return n;
  }
  if (n == max) return -1;
  int kind = f.sigOp == EP_NET_SIG_SET ? EP_IB_STEP_WRITE_INLINE : EP_IB_STEP_FETCH_ADD;
  steps[n++] = epIbStep{kind, 0, 8, o.adaptiveRouting};
  return n;
}

bool epIbImmEncode(uint32_t win, uint32_t slot, uint32_t op, int32_t value, uint32_t* imm) {
  if (win >= 32 || slot >= 1024 || op > 1 || value < INT16_MIN || value > INT16_MAX) return false;
  *imm = (win << 27) | (op << 26) | (slot << 16) | ((uint32_t)value & 0xffffu);
  return true;
}

void epIbImmDecode(uint32_t imm, uint32_t* win, uint32_t* slot, uint32_t* op, int32_t* value) {
  *win = imm >> 27;
  *op = (imm >> 26) & 1;
  *slot = (imm >> 16) & 0x3ff;
  *value = (int32_t)(int16_t)(imm & 0xffffu);
}

epIbQpSender::epIbQpSender(const epIbvFns* ibv, struct ibv_qp* qp, uint32_t id, int peer, int channel,
                           const epIbSendOptions& o, const std::vector<epIbWinKeys>* windows, uint64_t scratchAddr,
                           uint32_t scratchLkey)
    : ibv_(ibv), qp_(qp), id_(id), peer_(peer), channel_(channel), opt_(o), win_(windows), scratchAddr_(scratchAddr),
      scratchLkey_(scratchLkey) {}

void epIbQpSender::buildWr(const epIbStep& s, const epNetOpFields& f, struct ibv_send_wr* wr, struct ibv_sge* sge,
                           uint64_t* inlineValue) {
  memset(wr, 0, sizeof(*wr));
  memset(sge, 0, sizeof(*sge));
  const std::vector<epIbWinKeys>& w = *win_;
  switch (s.kind) {
    case EP_IB_STEP_WRITE:
    case EP_IB_STEP_WRITE_IMM: {
      const epIbWinKeys& src = w[f.srcWin];
      const epIbWinKeys& dst = w[f.dstWin];
      sge->addr = src.localAddr + f.srcOff + s.off;
      sge->length = s.len;
      sge->lkey = src.lkey;
      wr->sg_list = sge;
      wr->num_sge = s.len ? 1 : 0;
      wr->wr.rdma.remote_addr = dst.remoteAddr[f.peer] + f.dstOff + s.off;
      wr->wr.rdma.rkey = dst.rkey[f.peer];
      wr->opcode = IBV_WR_RDMA_WRITE;
      if (s.kind == EP_IB_STEP_WRITE_IMM) {
        uint32_t imm = 0;
        epIbImmEncode(f.sigWin, f.sigSlot, f.sigOp, f.sigValue, &imm);
        wr->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
        wr->imm_data = htonl(imm);
      }
      break;
    }
    case EP_IB_STEP_IMM: {
      const epIbWinKeys& sig = w[f.sigWin];
      uint32_t imm = 0;
      epIbImmEncode(f.sigWin, f.sigSlot, f.sigOp, f.sigValue, &imm);
      wr->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
      wr->imm_data = htonl(imm);
      wr->num_sge = 0;
      wr->wr.rdma.remote_addr = sig.remoteAddr[f.peer] + 8ull * f.sigSlot;
      wr->wr.rdma.rkey = sig.rkey[f.peer];
      break;
    }
    case EP_IB_STEP_FETCH_ADD: {
      const epIbWinKeys& sig = w[f.sigWin];
      sge->addr = scratchAddr_;
      sge->length = 8;
      sge->lkey = scratchLkey_;
      wr->sg_list = sge;
      wr->num_sge = 1;
      wr->opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
      wr->wr.atomic.remote_addr = sig.remoteAddr[f.peer] + 8ull * f.sigSlot;
      wr->wr.atomic.rkey = sig.rkey[f.peer];
      wr->wr.atomic.compare_add = (uint64_t)(int64_t)f.sigValue;
      break;
    }
    case EP_IB_STEP_WRITE_INLINE: {
      const epIbWinKeys& sig = w[f.sigWin];
      *inlineValue = (uint64_t)(uint32_t)f.sigValue;
      sge->addr = (uint64_t)(uintptr_t)inlineValue;
      sge->length = 8;
      wr->sg_list = sge;
      wr->num_sge = 1;
      wr->opcode = IBV_WR_RDMA_WRITE;
      wr->send_flags = IBV_SEND_INLINE;
      wr->wr.rdma.remote_addr = sig.remoteAddr[f.peer] + 8ull * f.sigSlot;
      wr->wr.rdma.rkey = sig.rkey[f.peer];
      break;
    }
  }
}

epResult_t epIbQpSender::postChain(struct ibv_send_wr* head, int n, bool final, uint64_t ticket) {
  struct ibv_send_wr* last = head;
  while (last->next) last = last->next;
  const uint64_t seq = nextSeq_;
  last->send_flags |= IBV_SEND_SIGNALED;
  last->wr_id = ((uint64_t)id_ << 32) | (seq & 0xffffffffu);
  struct ibv_send_wr* bad = nullptr;
  int rc = ibv_->postSend(qp_, head, &bad);
  if (rc != 0) {
    EP_WARN("NET/IB: ibv_post_send to rank %d channel %d failed: %s (%d WRs, %d in flight)", peer_, channel_,
            strerror(rc), n, inflight_);
    return epSystemError;
  }
  nextSeq_++;
  inflight_ += n;
  posted_.push_back(Seg{seq, n, final, ticket});
  return epSuccess;
}

epResult_t epIbQpSender::post(const epNetOpFields& f, uint64_t ticket) {
  epIbStep steps[EP_IB_MAX_STEPS];
  int n = epIbPlan(f, opt_, steps, EP_IB_MAX_STEPS);
  if (n < 0) {
    EP_WARN("NET/IB: a put of %u bytes needs more than %d writes of EP_IB_CHUNK_BYTES=%u", f.bytes, EP_IB_MAX_STEPS,
            opt_.maxChunk);
    return epInvalidArgument;
  }
  if (opt_.signalMode == EP_IB_SIGNAL_IMM && epNetOpHasSignal(f.op)) {
    uint32_t imm;
    if (!epIbImmEncode(f.sigWin, f.sigSlot, f.sigOp, f.sigValue, &imm)) {
      EP_WARN("NET/IB: EP_IB_SIGNAL=imm cannot carry the signal (window %u < 32, slot %u < 1024, value %d within "
              "int16 are required): use EP_IB_SIGNAL=atomic", f.sigWin, f.sigSlot, f.sigValue);
      return epInvalidUsage;
    }
  }
  int now = 0;
  bool hasDeferred = false;
  for (int i = 0; i < n; i++) {
    if (steps[i].deferred) hasDeferred = true;
    else now++;
  }
  if (n == 0) {  // a zero-byte put still completes in QP order: one zero-length write
    steps[0] = epIbStep{EP_IB_STEP_WRITE, 0, 0, false};
    n = now = 1;
  }
  if (now > opt_.maxInflight) {  // could never be posted: refuse instead of stalling the ring forever
    EP_WARN("NET/IB: one op needs %d work requests but EP_IB_MAX_INFLIGHT is %d: raise it or EP_IB_CHUNK_BYTES",
            now, opt_.maxInflight);
    return epInvalidUsage;
  }
  if (inflight_ + now > opt_.maxInflight) return epInProgress;
  if (hasDeferred && now == 0 && held_.empty() && completedSeq_ + 1 == nextSeq_ &&
      inflight_ + 1 <= opt_.maxInflight) {
    // Nothing earlier is outstanding: the signal may go at once.
    hasDeferred = false;
    steps[n - 1].deferred = false;
    now = n;
  }
  struct ibv_send_wr wrs[EP_IB_MAX_STEPS];
  struct ibv_sge sges[EP_IB_MAX_STEPS];
  uint64_t inlineValues[EP_IB_MAX_STEPS];
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (steps[i].deferred) continue;
    buildWr(steps[i], f, &wrs[k], &sges[k], &inlineValues[k]);
    if (k > 0) wrs[k - 1].next = &wrs[k];
    k++;
  }
  if (k > 0) EPCHECK(postChain(&wrs[0], k, !hasDeferred, ticket));
  if (hasDeferred) held_.push_back(Held{nextSeq_ - 1, steps[n - 1], f, ticket});
  return epSuccess;
}

epResult_t epIbQpSender::flush() {
  while (!held_.empty() && held_.front().afterSeq <= completedSeq_ && inflight_ + 1 <= opt_.maxInflight) {
    Held h = held_.front();
    struct ibv_send_wr wr;
    struct ibv_sge sge;
    uint64_t v;
    buildWr(h.step, h.f, &wr, &sge, &v);
    EPCHECK(postChain(&wr, 1, true, h.ticket));
    held_.pop_front();
  }
  return epSuccess;
}

epResult_t epIbQpSender::onCompletion(uint64_t wrId, epNetCompletionSink* sink) {
  if (posted_.empty() || (posted_.front().seq & 0xffffffffu) != (wrId & 0xffffffffu)) {
    EP_WARN("NET/IB: completion %" PRIu64 " for rank %d channel %d does not match the oldest posted segment",
            wrId & 0xffffffffu, peer_, channel_);
    return epInternalError;
  }
  Seg s = posted_.front();
  posted_.pop_front();
  inflight_ -= s.nWr;
  completedSeq_ = s.seq;
  if (s.final) sink->complete(channel_, s.ticket);
  return flush();
}
