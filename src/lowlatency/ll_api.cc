/*************************************************************************
 * epcomm LL: public dispatch / combine / recv entry points (validation,
 * sequencing, hooks). No host synchronisation and no allocation here.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <cstring>

#include "core/api.h"
#include "core/checks.h"
#include "core/comm.h"
#include "lowlatency/ll_state.h"

using ep::ll::CombineParams;
using ep::ll::DispatchParams;

namespace {

constexpr uint64_t kHookMagic = 0x6c6c686f6f6b0000ull;  // "llhook"

epResult_t checkHandle(epComm* comm, epLlHandle_t handle, const char* fn) {
  EP_PTR_CHECK(handle, fn);
  EP_ARG_CHECK(handle->magic == EP_LL_HANDLE_MAGIC, "%s: %p is not a live LL handle", fn, (void*)handle);
  EP_USAGE_CHECK(handle->comm == comm, "%s: the handle belongs to another communicator", fn);
  return epSuccess;
}

// The set the next call uses must not hold a hooked call still waiting for its receive.
epResult_t checkInFlight(epLlState* st, const char* fn) {
  const epLlPending& pd = st->pending[st->seq & 1];
  if (pd.active) {
    EP_WARN("%s: too many LL calls in flight: call #%llu (a hooked %s) has not been received and its buffer set "
            "is the one this call needs; at most 2 hooked calls may await epLowLatencyRecv",
            fn, (unsigned long long)pd.seq, pd.kind == 1 ? "dispatch" : "combine");
    return epInvalidUsage;
  }
  return epSuccess;
}

void makeHook(epComm* comm, uint64_t seq, int kind, epLlHook_t* hook) {
  hook->internal[0] = kHookMagic | (uint64_t)kind;
  hook->internal[1] = seq;
  hook->internal[2] = (uint64_t)(uintptr_t)comm;
  hook->internal[3] = comm->commHash;
}

// `p` set up to run `phases`, with its profiling slot.
template <class Params>
Params forPhases(epComm* comm, Params p, int profKind, int phases) {
  p.phases = phases;
  p.sa.prof = epLlProfSlot(comm, profKind, phases, p.T);
  p.sa.tl = epLlTimelineSlot(comm, profKind, phases, p.T);
  return p;
}

// Launches what one LL call runs now: send and receive in one cooperative
// launch; or a send launch, then a receive launch (EP_LL_FUSED=0); or, with a
// hook, only the send (the receive runs in epLowLatencyRecv).
template <class Params>
epResult_t launchCall(epComm* comm, const Params& p, int profKind, bool hook, int blocks, cudaStream_t stream,
                      epResult_t (*launch)(const Params&, int, cudaStream_t)) {
  using ep::ll::kPhaseRecv;
  using ep::ll::kPhaseSend;
  if (!hook && epLlFused()) return launch(forPhases(comm, p, profKind, kPhaseSend | kPhaseRecv), blocks, stream);
  EPCHECK(launch(forPhases(comm, p, profKind, kPhaseSend), blocks, stream));
  if (!hook) EPCHECK(launch(forPhases(comm, p, profKind, kPhaseRecv), blocks, stream));
  return epSuccess;
}

}  // namespace

EP_API epResult_t epLowLatencyDispatch(epComm_t comm, const epLlDispatchInput_t* in, const epLlDispatchOutput_t* out,
                                       epLlHandle_t handle, epLlHook_t* hook, cudaStream_t stream) {
  static const char* fn = "epLowLatencyDispatch";
  EPCHECK(epCommCheck(comm, fn));
  EP_COMM_SCOPE(comm);
  EP_DESC_CHECK(in, epLlDispatchInput_t, EP_LL_DISPATCH_INPUT_INITIALIZER, fn);
  EP_DESC_CHECK(out, epLlDispatchOutput_t, EP_LL_DISPATCH_OUTPUT_INITIALIZER, fn);
  EP_USAGE_CHECK(comm->ll != nullptr, "%s: create an LL handle (epLowLatencyHandleCreate) first", fn);
  EPCHECK(checkHandle(comm, handle, fn));
  epLlState* st = comm->ll;
  const ep::ll::Layout& l = st->layout;
  const int R = comm->nranks;
  EP_ARG_CHECK(in->numTokens >= 0 && in->numTokens <= l.M,
               "%s: numTokens %d out of [0, %d] (llMaxTokensPerRank)", fn, in->numTokens, l.M);
  EP_ARG_CHECK(in->hidden > 0 && in->hidden % 128 == 0 && in->hidden <= l.H,
               "%s: hidden %d must be a positive multiple of 128 and <= llHidden %d", fn, in->hidden, l.H);
  EP_ARG_CHECK(in->numTopk >= 1 && in->numTopk <= l.K, "%s: numTopk %d out of [1, %d] (llMaxTopk, at most %d)", fn,
               in->numTopk, l.K, ep::ll::kMaxTopk);
  EP_ARG_CHECK(in->numExperts > 0 && in->numExperts <= l.E && in->numExperts % R == 0,
               "%s: numExperts %d must be a multiple of %d ranks and <= llNumExperts %d", fn, in->numExperts, R, l.E);
  EP_ARG_CHECK(in->topkIdxType == epInt32 || in->topkIdxType == epInt64, "%s: topkIdxType must be epInt32 or epInt64",
               fn);
  if (in->numTokens > 0) {
    EP_ARG_CHECK(in->x != nullptr, "%s: x is NULL", fn);
    EP_ARG_CHECK(in->topkIdx != nullptr, "%s: topkIdx is NULL", fn);
  }
  EP_ARG_CHECK(out->recvX != nullptr, "%s: recvX is NULL", fn);
  EP_ARG_CHECK(out->recvCount != nullptr, "%s: recvCount is NULL", fn);
  if (in->useFp8) {
    EP_ARG_CHECK(out->recvScales != nullptr, "%s: recvScales is NULL (needed with useFp8)", fn);
    EP_ARG_CHECK(!in->ue8m0 || in->roundScale, "%s: ue8m0 needs roundScale (UE8M0 holds powers of two only)", fn);
    EP_ARG_CHECK(in->scaleLayout == epLlScalesMnMajor || in->scaleLayout == epLlScalesTokenMajor,
                 "%s: bad scaleLayout %d", fn, (int)in->scaleLayout);
  } else {
    EP_ARG_CHECK(!in->roundScale && !in->ue8m0, "%s: roundScale/ue8m0 need useFp8", fn);
  }
  EP_ARG_CHECK(out->recvTopkWeights == nullptr || in->topkWeights != nullptr,
               "%s: recvTopkWeights needs input topkWeights", fn);
  EP_ARG_CHECK(in->numSms >= 0, "%s: numSms %d < 0", fn, in->numSms);
  if (in->hook) EP_ARG_CHECK(hook != nullptr, "%s: hook is NULL but in->hook = 1", fn);
  EP_USAGE_CHECK(!handle->recvPending, "%s: the handle's previous hooked dispatch has not been received", fn);
  EPCHECK(checkInFlight(st, fn));

  const uint64_t seq = st->seq;
  const int b = (int)(seq & 1);
  DispatchParams p{};  // every field zero but the FastDiv divisors (1)
  p.R = R;
  p.rank = comm->rank;
  p.M = l.M;
  p.K = in->numTopk;
  p.H = in->hidden;
  p.E = in->numExperts;
  p.L = in->numExperts / R;
  p.T = in->numTokens;
  p.x = static_cast<const uint16_t*>(in->x);
  p.topk = in->topkIdx;
  p.topk64 = in->topkIdxType == epInt64;
  p.weights = in->topkWeights;
  p.fp8 = in->useFp8 != 0;
  p.roundScale = in->useFp8 && in->roundScale;
  p.ue8m0 = in->useFp8 && in->ue8m0;
  p.scaleMn = in->scaleLayout == epLlScalesMnMajor;
  p.dedup = in->dedup != 0;
  // Flagged lines for hooked calls too: since the senders rank their own picks
  // (no routing pass on the receive side), a hooked call's lines send and
  // receive phases are both faster than the release protocol's (nvidia-h200-x2,
  // T=128: send 13.9 -> 12.2 us, receive 13.3-14.0 -> 11.5; ll_notes round 9).
  // (The lines routing word packs a local expert and a row in 16 bits each.)
  p.lines = p.fp8 && p.dedup && epLlLines(comm) && p.L <= 0xffff && p.M <= 0x10000;
  p.sendBlocks = epLlSendSms();
  p.publishBlocks = epLlPublishSms();
  p.devSkip = epLlDevSkip();
  p.recvSplit = epLlRecvSplit();
  p.coop = epLlCoop();
  p.msgStride = ep::ll::dispatchMsgStride(p.H, p.fp8);
  p.divK = ep::dev::FastDiv((uint32_t)p.K);
  p.divMK = ep::dev::FastDiv((uint32_t)(p.M * p.K));
  p.divR = ep::dev::FastDiv((uint32_t)p.R);
  p.divP = ep::dev::FastDiv((uint32_t)p.recvSplit);
  p.divRM = ep::dev::FastDiv((uint32_t)(p.R * p.M));
  p.divL = ep::dev::FastDiv((uint32_t)p.L);
  p.recvX = out->recvX;
  p.recvScales = out->recvScales;
  p.recvCount = out->recvCount;
  p.layoutRange = reinterpret_cast<long long*>(out->recvLayoutRange);
  p.srcInfo = out->recvSrcInfo;
  p.recvW = out->recvTopkWeights;
  p.cumStats = out->cumulativeRecvStats;
  p.hSrcT = handle->srcT;
  p.hFlatRow = handle->flatRow;
  p.hW = handle->w;
  p.sa = epLlSetArgs(comm, b);
  const int blocks = epLlBlocks(comm, in->numSms);

  const int profKind = p.lines ? 4 : p.dedup ? 0 : 1;
  EPCHECK(launchCall(comm, p, profKind, in->hook, blocks, stream, &ep::ll::launchDispatch));
  st->seq++;
  handle->filled = true;
  handle->T = p.T;
  handle->K = p.K;
  handle->H = p.H;
  handle->E = p.E;
  handle->hasWeights = in->topkWeights != nullptr;
  if (in->hook) {
    epLlPending& pd = st->pending[b];
    pd = epLlPending();
    pd.active = true;
    pd.seq = seq;
    pd.kind = 1;
    pd.blocks = blocks;
    pd.dp = forPhases(comm, p, profKind, ep::ll::kPhaseRecv);
    pd.handle = handle;
    handle->recvPending = true;
    makeHook(comm, seq, 1, hook);
  }
  EP_TRACE(EP_LOG_LL, "%s: call #%llu set %d T=%d H=%d K=%d E=%d fp8=%d dedup=%d lines=%d hook=%d blocks=%d", fn,
           (unsigned long long)seq, b, p.T, p.H, p.K, p.E, p.fp8, p.dedup, p.lines, in->hook, blocks);
  return epSuccess;
}

EP_API epResult_t epLowLatencyCombine(epComm_t comm, const epLlCombineInput_t* in, const epLlCombineOutput_t* out,
                                      epLlHandle_t handle, epLlHook_t* hook, cudaStream_t stream) {
  static const char* fn = "epLowLatencyCombine";
  EPCHECK(epCommCheck(comm, fn));
  EP_COMM_SCOPE(comm);
  EP_DESC_CHECK(in, epLlCombineInput_t, EP_LL_COMBINE_INPUT_INITIALIZER, fn);
  EP_DESC_CHECK(out, epLlCombineOutput_t, EP_LL_COMBINE_OUTPUT_INITIALIZER, fn);
  EP_USAGE_CHECK(comm->ll != nullptr, "%s: create an LL handle (epLowLatencyHandleCreate) first", fn);
  EPCHECK(checkHandle(comm, handle, fn));
  epLlState* st = comm->ll;
  const ep::ll::Layout& l = st->layout;
  const int R = comm->nranks;
  EP_USAGE_CHECK(handle->filled, "%s: the handle has not been filled by an epLowLatencyDispatch", fn);
  EP_USAGE_CHECK(!handle->recvPending, "%s: the handle's hooked dispatch has not been received (epLowLatencyRecv)",
                 fn);
  EP_ARG_CHECK(in->numTokens == handle->T, "%s: numTokens %d differs from the dispatch's %d", fn, in->numTokens,
               handle->T);
  EP_ARG_CHECK(in->numTopk == handle->K, "%s: numTopk %d differs from the dispatch's %d", fn, in->numTopk,
               handle->K);
  EP_ARG_CHECK(in->hidden == handle->H, "%s: hidden %d differs from the dispatch's %d", fn, in->hidden, handle->H);
  EP_ARG_CHECK(in->topkIdxType == epInt32 || in->topkIdxType == epInt64, "%s: topkIdxType must be epInt32 or epInt64",
               fn);
  if (in->numTokens > 0) {
    EP_ARG_CHECK(in->topkIdx != nullptr, "%s: topkIdx is NULL", fn);
    EP_ARG_CHECK(out->out != nullptr, "%s: out is NULL", fn);
    EP_ARG_CHECK(in->reduceOnSender || in->topkWeights != nullptr, "%s: topkWeights is NULL", fn);
  }
  if (in->reduceOnSender)
    EP_USAGE_CHECK(handle->hasWeights, "%s: reduceOnSender needs the dispatch to carry topkWeights", fn);
  const void* x = in->x;
  if (in->zeroCopy) {
    EP_USAGE_CHECK(st->zeroCopy[0] != nullptr, "%s: zeroCopy without epLowLatencyGetNextCombineBuffer", fn);
    x = st->zeroCopy[st->seq & 1];
  } else {
    EP_ARG_CHECK(x != nullptr, "%s: x is NULL", fn);
  }
  EP_ARG_CHECK(in->numSms >= 0, "%s: numSms %d < 0", fn, in->numSms);
  if (in->hook) EP_ARG_CHECK(hook != nullptr, "%s: hook is NULL but in->hook = 1", fn);
  EPCHECK(checkInFlight(st, fn));

  const uint64_t seq = st->seq;
  const int b = (int)(seq & 1);
  CombineParams p;
  memset(&p, 0, sizeof(p));
  p.R = R;
  p.rank = comm->rank;
  p.M = l.M;
  p.K = in->numTopk;
  p.H = in->hidden;
  p.E = handle->E;
  p.L = handle->E / R;
  p.T = in->numTokens;
  p.x = static_cast<const uint16_t*>(x);
  p.topk = in->topkIdx;
  p.topk64 = in->topkIdxType == epInt64;
  p.weights = in->topkWeights;
  p.reduce = in->reduceOnSender != 0;
  // Flagged lines (EP_LL_LINES) for a reduced combine among NVLink peers,
  // hooked or not; per-expert rows keep the release protocol.
  p.lines = p.reduce && epLlLines(comm);
  p.coop = epLlCoop();
  p.out = static_cast<uint16_t*>(out->out);
  p.hSrcT = handle->srcT;
  p.hFlatRow = handle->flatRow;
  p.hW = handle->w;
  p.sa = epLlSetArgs(comm, b);
  const int blocks = epLlBlocks(comm, in->numSms);
  const int profKind = p.reduce ? 2 : 3;
  EPCHECK(launchCall(comm, p, profKind, in->hook, blocks, stream, &ep::ll::launchCombine));
  st->seq++;
  if (in->hook) {
    epLlPending& pd = st->pending[b];
    pd = epLlPending();
    pd.active = true;
    pd.seq = seq;
    pd.kind = 2;
    pd.blocks = blocks;
    pd.cp = forPhases(comm, p, profKind, ep::ll::kPhaseRecv);
    makeHook(comm, seq, 2, hook);
  }
  EP_TRACE(EP_LOG_LL, "%s: call #%llu set %d T=%d H=%d K=%d reduce=%d lines=%d hook=%d blocks=%d", fn,
           (unsigned long long)seq, b, p.T, p.H, p.K, p.reduce, p.lines, in->hook, blocks);
  return epSuccess;
}

EP_API epResult_t epLowLatencyRecv(epComm_t comm, epLlHook_t hook, cudaStream_t stream) {
  static const char* fn = "epLowLatencyRecv";
  EPCHECK(epCommCheck(comm, fn));
  EP_COMM_SCOPE(comm);
  int kind = (int)(hook.internal[0] & 0xffff);
  EP_ARG_CHECK((hook.internal[0] & ~0xffffull) == kHookMagic && (kind == 1 || kind == 2),
               "%s: not a hook returned by an LL call", fn);
  EP_USAGE_CHECK(hook.internal[2] == (uint64_t)(uintptr_t)comm && hook.internal[3] == comm->commHash,
                 "%s: the hook belongs to another communicator", fn);
  EP_USAGE_CHECK(comm->ll != nullptr, "%s: no LL call was made on this communicator", fn);
  epLlState* st = comm->ll;
  uint64_t seq = hook.internal[1];
  epLlPending& pd = st->pending[seq & 1];
  EP_USAGE_CHECK(pd.active && pd.seq == seq && pd.kind == kind,
                 "%s: hook of call #%llu was already received (or cleaned): each hook is received once", fn,
                 (unsigned long long)seq);
  if (kind == 1) {
    EPCHECK(ep::ll::launchDispatch(pd.dp, pd.blocks, stream));
    if (pd.handle) pd.handle->recvPending = false;
  } else {
    EPCHECK(ep::ll::launchCombine(pd.cp, pd.blocks, stream));
  }
  pd = epLlPending();
  return epSuccess;
}
