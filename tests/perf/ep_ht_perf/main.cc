/*************************************************************************
 * ep_ht_perf: ep-tests benchmark of epcomm's HT intranode path.
 * SPDX-License-Identifier: Apache-2.0
 *
 * For each token count and SM budget: layout, notify, dispatch (BF16, FP8)
 * and combine, each timed as BENCHMARKS.md asks (warm-up, CUDA events per
 * call, median of >= 20, >= 2 rotating input sets), with the NCCL baseline
 * (permutation gather + grouped send/recv of the same rows; combine: reverse
 * alltoallv + reduction) measured in the same process, on the same routing.
 * `--help` lists the options; rank 0 prints a markdown table last.
 *************************************************************************/
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "epcomm.h"
#include "tests/common/cuda_check.h"
#include "tests/common/dev_buffer.h"
#include "tests/common/device_ops.h"
#include "tests/common/dtype.h"
#include "tests/common/ht_check.h"
#include "tests/common/ht_reference.h"
#include "tests/common/nccl_baseline.h"
#include "tests/common/oob.h"
#include "tests/common/payload.h"
#include "tests/common/routing.h"
#include "tests/common/timing.h"
#include "tests/common/world.h"
#include "tests/perf/ep_ht_perf/options.h"

namespace {

// What one rank measured for one row; gathered to rank 0.
struct Sample {
  double us = 0;          // epcomm median
  double logical = 0;     // bytes
  double nvl = 0;         // bytes
  double rdma = 0;        // bytes: (token, destination node) pairs x row bytes (multi-node comms)
  double ncclUs = -1;     // baseline median (-1: none)
  double ncclA2aUs = -1;  // baseline without the gather / reduction
  int checkFailed = 0;
};

struct Row {
  int tokens, sms;
  std::string call;
  std::vector<Sample> ranks;
};

// A row over all ranks: means of per-rank medians and of per-rank GB/s, the
// slowest rank's GB/s, and the NCCL baseline when every rank has it.
struct Aggregate {
  double rdmaGb = 0;
  double us = 0, gb = 0, nvlGb = 0, minGb = 1e30, bytes = 0, ncclUs = 0, ncclA2aUs = 0;
  bool haveNccl = true, haveA2a = true, failed = false;
};

Aggregate aggregate(const Row& r) {
  Aggregate a;
  const double n = (double)r.ranks.size();
  for (const Sample& s : r.ranks) {
    const double g = s.us > 0 ? s.logical / (s.us * 1e3) : 0;
    a.us += s.us / n;
    a.gb += g / n;
    a.nvlGb += (s.us > 0 ? s.nvl / (s.us * 1e3) : 0) / n;
    a.rdmaGb += (s.us > 0 ? s.rdma / (s.us * 1e3) : 0) / n;
    a.minGb = std::min(a.minGb, g);
    a.bytes += s.logical / n;
    a.ncclUs += s.ncclUs / n;
    a.ncclA2aUs += s.ncclA2aUs / n;
    a.haveNccl &= s.ncclUs > 0;
    a.haveA2a &= s.ncclA2aUs > 0;
    a.failed |= s.checkFailed != 0;
  }
  return a;
}

// One rotating input set: routing, rows, handle, outputs, NCCL plan.
struct Set {
  epTestRouting routing;
  std::vector<epTestRouting> all;
  epTestHtRecvRef ref;
  epTestPayloadSpec p16, p8;
  epTestDevBuf x16, x8, sc8, idx, w;
  epHtHandle_t handle = nullptr;
  // layout outputs
  epTestDevBuf lRank, lNode, lExpert, lIn;
  // dispatch outputs (recvX sized for BF16 rows; FP8 rows fit)
  epTestDevBuf rx, rsc, rIdx, rW, rSrc, rCnt, rN;
  int capacity = 0;
  // combine
  epTestDevBuf cx, out, outW;
  // NCCL plan
  std::vector<int> sendRows, sendOff, recvRows, recvOff;
  int numSend = 0;
  epTestDevBuf gIdx, send16, recv16, send8, recv8, cRecv, cOff, cList, cOut;
  std::vector<int> hostNotifyPerExpert;
  ~Set() {
    if (handle) epHtHandleDestroy(handle);
  }
};

struct Ctx {
  HtPerfOptions opt;
  epTestWorld w;
  int R = 1, me = 0, nNodes = 1;
  epComm_t comm = nullptr;
  epTestOob* oob = nullptr;
  epTestNccl* nccl = nullptr;
  cudaStream_t st = nullptr;
  std::vector<Row> rows;
  bool anyCheckFailed = false;
};

/* (token, destination node) pairs of this rank's routing, local node included (0 on one node). */
double rdmaPairs(const Ctx& c, const Set& s) {
  if (c.nNodes < 2) return 0;
  double n = 0;
  for (int v : epTestHtLayoutRef(s.routing, c.R, c.nNodes).tokensPerNode) n += v;
  return n;
}

size_t fp8RowBytes(const Set& s) { return epTestRowBytes(s.p8) + epTestScaleBytes(s.p8); }

epResult_t buildSet(Ctx& c, int T, int maxT, int setIdx, Set* s) {
  const HtPerfOptions& o = c.opt;
  epTestRoutingSpec rs = o.routing;
  rs.numTokens = T;
  rs.seed = o.routing.seed * 1000 + setIdx;
  s->all = epTestMakeAllRoutings(rs, c.R);
  s->routing = s->all[c.me];
  s->ref = epTestHtRecvRefCompute(s->all, c.me, o.alignment);
  const int H = o.hidden, K = o.topk, E = o.experts, L = E / c.R;
  s->p16.type = epBfloat16;
  s->p16.hidden = H;
  s->p16.seed = rs.seed * 7 + 1;
  s->p8 = s->p16;
  s->p8.type = epFloat8E4M3;
  s->p8.scaleFormat = o.scales;
  std::vector<uint8_t> hx, hs;
  epTestMakeTokens(s->p16, c.me, T, &hx, nullptr);
  EP_TEST_CUDA(s->x16.upload(hx));
  if (o.fp8) {
    epTestMakeTokens(s->p8, c.me, T, &hx, &hs);
    EP_TEST_CUDA(s->x8.upload(hx));
    EP_TEST_CUDA(s->sc8.upload(hs));
  }
  EP_TEST_CUDA(s->idx.upload(s->routing.topkIdx));
  EP_TEST_CUDA(s->w.upload(s->routing.topkWeights));
  EP_TEST_EP(epHtHandleCreate(c.comm, maxT, &s->handle));
  EP_TEST_CUDA(s->lRank.alloc((size_t)c.R * 4));
  EP_TEST_CUDA(s->lNode.alloc((size_t)c.nNodes * 4));
  EP_TEST_CUDA(s->lExpert.alloc((size_t)E * 4));
  EP_TEST_CUDA(s->lIn.alloc((size_t)T * c.R));
  int worst = 0;
  for (const auto& r : s->all) worst += r.numTokens;
  s->capacity = o.mode == 'b' ? worst : s->ref.numRecv;
  const size_t cap = (size_t)s->capacity;
  EP_TEST_CUDA(s->rx.alloc(cap * H * 2));
  if (o.fp8) EP_TEST_CUDA(s->rsc.alloc(cap * epTestScaleBytes(s->p8)));
  EP_TEST_CUDA(s->rIdx.alloc(cap * K * 4));
  EP_TEST_CUDA(s->rW.alloc(cap * K * 4));
  EP_TEST_CUDA(s->rSrc.alloc(cap * 4));
  EP_TEST_CUDA(s->rCnt.alloc((size_t)L * 4));
  EP_TEST_CUDA(s->rN.alloc(4));
  EP_TEST_CUDA(s->out.alloc((size_t)T * H * 2));
  EP_TEST_CUDA(s->outW.alloc((size_t)T * K * 4));
  s->hostNotifyPerExpert.assign(L, 0);

  // NCCL plan: rows to each destination in token order (what the layout gives a user).
  const epTestHtLayout lay = epTestHtLayoutRef(s->routing, c.R, c.nNodes);
  std::vector<std::vector<int>> toRank(c.R);
  for (int t = 0; t < T; t++)
    for (int r = 0; r < c.R; r++)
      if (lay.isTokenInRank[(size_t)t * c.R + r]) toRank[r].push_back(t);
  std::vector<int> gather;
  s->sendRows.assign(c.R, 0);
  s->sendOff.assign(c.R, 0);
  for (int r = 0; r < c.R; r++) {
    s->sendOff[r] = (int)gather.size();
    s->sendRows[r] = (int)toRank[r].size();
    gather.insert(gather.end(), toRank[r].begin(), toRank[r].end());
  }
  s->numSend = (int)gather.size();
  s->recvRows = s->ref.fromRank;
  s->recvOff.assign(s->ref.rankPrefix.begin(), s->ref.rankPrefix.end() - 1);
  // Combine baseline: rows come back grouped by destination; per token the list of its rows.
  std::vector<int> off(T + 1, 0), list;
  {
    std::vector<std::vector<int>> per(T);
    for (int r = 0; r < c.R; r++)
      for (size_t j = 0; j < toRank[r].size(); j++) per[toRank[r][j]].push_back(s->sendOff[r] + (int)j);
    for (int t = 0; t < T; t++) {
      off[t + 1] = off[t] + (int)per[t].size();
      list.insert(list.end(), per[t].begin(), per[t].end());
    }
  }
  if (c.nccl) {
    EP_TEST_CUDA(s->gIdx.upload(gather));
    EP_TEST_CUDA(s->send16.alloc((size_t)s->numSend * H * 2));
    EP_TEST_CUDA(s->recv16.alloc((size_t)s->ref.numRecv * H * 2));
    if (o.fp8) {
      EP_TEST_CUDA(s->send8.alloc((size_t)s->numSend * fp8RowBytes(*s)));
      EP_TEST_CUDA(s->recv8.alloc((size_t)s->ref.numRecv * fp8RowBytes(*s)));
    }
    EP_TEST_CUDA(s->cRecv.alloc((size_t)s->numSend * H * 2));
    EP_TEST_CUDA(s->cOff.upload(off));
    EP_TEST_CUDA(s->cList.upload(list));
    EP_TEST_CUDA(s->cOut.alloc((size_t)T * H * 2));
  }
  return epSuccess;
}

epDispatchInput_t dispatchIn(const Ctx& c, const Set& s, bool fp8, int sms) {
  epDispatchInput_t in = EP_DISPATCH_INPUT_INITIALIZER;
  in.x = fp8 ? s.x8.p : s.x16.p;
  in.xType = fp8 ? epFloat8E4M3 : epBfloat16;
  in.xScales = fp8 ? s.sc8.p : nullptr;
  in.scaleFormat = fp8 ? c.opt.scales : epScaleNone;
  in.numTokens = s.routing.numTokens;
  in.hidden = c.opt.hidden;
  in.topkIdx = s.idx.p;
  in.topkIdxType = epInt64;
  in.topkWeights = s.w.as<float>();
  in.numTopk = c.opt.topk;
  in.numExperts = c.opt.experts;
  in.expertAlignment = c.opt.alignment;
  in.numSms = sms;
  return in;
}

// meta = false (--rows-only): rows and FP8 scales only.
epDispatchOutput_t dispatchOut(Set& s, bool fp8, bool meta = true) {
  epDispatchOutput_t o = EP_DISPATCH_OUTPUT_INITIALIZER;
  o.recvX = s.rx.p;
  o.recvXScales = fp8 ? s.rsc.p : nullptr;
  o.recvTopkIdx = meta ? s.rIdx.as<int32_t>() : nullptr;
  o.recvTopkWeights = meta ? s.rW.as<float>() : nullptr;
  o.recvSrcIdx = meta ? s.rSrc.as<int32_t>() : nullptr;
  o.recvCountPerExpert = s.rCnt.as<int32_t>();
  o.numRecvTokens = s.rN.as<int32_t>();
  o.capacity = s.capacity;
  return o;
}

// Direct path: the set's dispatch outputs and combine input registered with
// the comm (collective, same order on every rank), deregistered afterwards.
struct SetRegs {
  std::vector<void*> h;
};
epResult_t registerSet(Ctx& c, Set& s, SetRegs* regs) {
  for (epTestDevBuf* b : {&s.rx, &s.rsc, &s.rIdx, &s.rW, &s.rSrc, &s.cx}) {
    if (b->p == nullptr) continue;
    void* h = nullptr;
    EP_TEST_EP(epCommRegister(c.comm, b->p, b->total(), &h));
    regs->h.push_back(h);
  }
  return epSuccess;
}
epResult_t deregisterSet(Ctx& c, SetRegs* regs) {
  for (void* h : regs->h) EP_TEST_EP(epCommDeregister(c.comm, h));
  regs->h.clear();
  return epSuccess;
}

epResult_t notify(Ctx& c, Set& s, const epDispatchInput_t& in, bool hostSync) {
  int n = -1;
  if (!hostSync) return epDispatchNotify(c.comm, &in, s.handle, nullptr, nullptr, c.st);
  epResult_t r = epDispatchNotify(c.comm, &in, s.handle, &n, s.hostNotifyPerExpert.data(), c.st);
  if (r == epSuccess && n != s.ref.numRecv) {
    fprintf(stderr, "[rank %d] notify: %d rows, expected %d\n", c.me, n, s.ref.numRecv);
    return epInternalError;
  }
  return r;
}

epResult_t asyncOk(Ctx& c, const char* what) {
  EP_TEST_CUDA(cudaStreamSynchronize(c.st));
  epResult_t a = epInternalError;
  EP_TEST_EP(epCommGetAsyncError(c.comm, &a));
  if (a != epSuccess)
    fprintf(stderr, "[rank %d] %s: device error %s: %s\n", c.me, what, epGetErrorString(a), epGetLastError(c.comm));
  return a;
}

// Host check of a set's dispatch outputs (last call) and, for BF16, its NCCL rows.
int checkDispatch(Ctx& c, Set& s, bool fp8, const char* what) {
  const epTestPayloadSpec& p = fp8 ? s.p8 : s.p16;
  std::vector<uint8_t> hx, hsc, hidx, hw, hsrc, hcnt, hn;
  if (s.rx.download(&hx) || s.rsc.download(&hsc) || s.rIdx.download(&hidx) || s.rW.download(&hw) ||
      s.rSrc.download(&hsrc) || s.rCnt.download(&hcnt) || s.rN.download(&hn))
    return 1;
  epTestHtDispatchGot got;
  memcpy(&got.numRecv, hn.data(), 4);
  got.x = hx.data();
  got.scales = fp8 ? hsc.data() : nullptr;
  got.topkIdx = (const int32_t*)hidx.data();
  got.topkWeights = (const float*)hw.data();
  got.srcIdx = (const int32_t*)hsrc.data();
  got.perExpert = (const int32_t*)hcnt.data();
  epTestCheck chk;
  epTestCheckDispatch(s.ref, p, c.opt.topk, got, true, &chk);
  if (c.nccl) {
    // The baseline's rows: reference order, row (+ scales) packed.
    const epTestDevBuf& rb = fp8 ? s.recv8 : s.recv16;
    std::vector<uint8_t> h;
    if (rb.download(&h)) return 1;
    const size_t rowB = epTestRowBytes(p), scB = epTestScaleBytes(p);
    std::vector<uint8_t> row(rowB + scB);
    for (int i = 0; i < s.ref.numRecv; i++) {
      epTestTokenRow(p, s.ref.srcRank[i], s.ref.srcIdx[i], row.data(), scB ? row.data() + rowB : nullptr);
      if (memcmp(h.data() + (size_t)i * (rowB + scB), row.data(), rowB + scB) != 0) {
        chk.fail("NCCL baseline row %d differs", i);
        break;
      }
    }
  }
  if (!chk.ok()) fprintf(stderr, "[rank %d] CHECK FAILED %s: %s\n", c.me, what, chk.summary().c_str());
  return chk.ok() ? 0 : 1;
}

int checkCombine(Ctx& c, Set& s) {
  std::vector<double> ref, sumAbs;
  epTestHtCombineRef(s.all, c.me, c.opt.hidden, s.p16.seed, nullptr, nullptr, &ref, &sumAbs);
  std::vector<uint16_t> h;
  if (s.out.download(&h)) return 1;
  epTestCheck chk;
  epTestCheckCombine(ref, sumAbs, h.data(), c.opt.hidden, &chk);
  if (c.nccl) {
    epTestCheck nchk;
    if (s.cOut.download(&h)) return 1;
    epTestCheckCombine(ref, sumAbs, h.data(), c.opt.hidden, &nchk);
    if (!nchk.ok()) chk.fail("NCCL baseline combine: %s", nchk.summary().c_str());
  }
  if (!chk.ok()) fprintf(stderr, "[rank %d] CHECK FAILED combine: %s\n", c.me, chk.summary().c_str());
  return chk.ok() ? 0 : 1;
}

epResult_t addRow(Ctx& c, int T, int sms, const char* call, const Sample& mine) {
  Row row;
  row.tokens = T;
  row.sms = sms;
  row.call = call;
  row.ranks.assign(c.R, Sample());
  row.ranks[c.me] = mine;
  EP_TEST_EP(epTestOobAllGather(c.oob, row.ranks.data(), sizeof(Sample)));
  for (const Sample& s : row.ranks)
    if (s.checkFailed) c.anyCheckFailed = true;
  if (c.me == 0) {
    const Aggregate a = aggregate(row);
    printf("%-8d %-5d %-21s %10.1f", T, sms, call, a.us);
    if (a.bytes > 0) printf(" %9.1f %9.1f %9.1f", a.gb, a.nvlGb, a.minGb);
    else printf(" %9s %9s %9s", "-", "-", "-");
    if (a.haveNccl) printf(" %10.1f %8.2fx", a.ncclUs, a.ncclUs / a.us);
    printf("%s\n", a.failed ? "  CHECK FAILED" : "");
    // Internode: RDMA GB/s as DeepEP defines it (BENCHMARKS.md). Over virtual nodes the transport is
    // emulated (peer copies through the proxy): the figure shows protocol overhead, not IB speed.
    if (c.nNodes > 1 && a.rdmaGb > 0)
      printf("%-8s %-5s %-14s RDMA GB/s %.1f%s\n", "", "", "", a.rdmaGb,
             getenv("EP_EMULATE_NODES") && atoi(getenv("EP_EMULATE_NODES")) > 1
                 ? " (emulated RDMA over virtual nodes: protocol overhead, not IB speed)"
                 : "");
    fflush(stdout);
  }
  c.rows.push_back(row);
  return epSuccess;
}

epResult_t runConfig(Ctx& c, int T, int maxT, int sms) {
  const HtPerfOptions& o = c.opt;
  std::vector<Set> sets(o.sets);
  for (int i = 0; i < o.sets; i++) EP_TEST_EP(buildSet(c, T, maxT, i, &sets[i]));
  const int H = o.hidden, K = o.topk;
  // Prepare: notify (host-synchronised) + one BF16 dispatch per set, so every
  // handle holds its layout (mode c) and combine input follows the GPU's row order.
  for (Set& s : sets) {
    epDispatchInput_t in = dispatchIn(c, s, false, sms);
    EP_TEST_EP(notify(c, s, in, true));
    epDispatchOutput_t od = dispatchOut(s, false);
    EP_TEST_EP(epDispatch(c.comm, &in, &od, s.handle, c.st));
    EP_TEST_CUDA(cudaStreamSynchronize(c.st));
    std::vector<int32_t> src(s.ref.numRecv);
    if (s.ref.numRecv)
      EP_TEST_CUDA(cudaMemcpy(src.data(), s.rSrc.p, src.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<int> cr, ci;
    epTestRecvOrder(s.ref, src.data(), &cr, &ci);
    std::vector<uint16_t> cx;
    epTestCombineInput(s.p16.seed, c.me, cr, ci, H, &cx);
    EP_TEST_CUDA(s.cx.upload(cx));
  }
  EP_TEST_EP(asyncOk(c, "prepare"));

  epTestTiming tm;
  // ---- layout
  {
    Sample smp;
    EP_TEST_EP(epTestTimeCalls(c.st, o.warmup, o.iters, o.sets, [&](int i) {
      Set& s = sets[i];
      return epGetDispatchLayout(c.comm, s.idx.p, epInt64, T, K, o.experts, s.lRank.as<int>(), s.lNode.as<int>(),
                                 s.lExpert.as<int>(), s.lIn.as<uint8_t>(), c.st);
    }, &tm));
    EP_TEST_EP(asyncOk(c, "layout"));
    smp.us = tm.medianUs;
    if (o.check) {
      for (Set& s : sets) {
        std::vector<uint8_t> a, b, e, in;
        EP_TEST_CUDA(s.lRank.download(&a));
        EP_TEST_CUDA(s.lNode.download(&b));
        EP_TEST_CUDA(s.lExpert.download(&e));
        EP_TEST_CUDA(s.lIn.download(&in));
        epTestCheck chk;
        epTestCheckLayout(epTestHtLayoutRef(s.routing, c.R, c.nNodes), (const int*)a.data(), (const int*)b.data(),
                          (const int*)e.data(), in.data(), &chk);
        if (!chk.ok()) {
          fprintf(stderr, "[rank %d] CHECK FAILED layout: %s\n", c.me, chk.summary().c_str());
          smp.checkFailed = 1;
        }
      }
    }
    EP_TEST_EP(addRow(c, T, sms, "layout", smp));
  }
  // ---- notify alone (host-synchronised in mode a)
  {
    Sample smp;
    EP_TEST_EP(epTestTimeCalls(c.st, o.warmup, o.iters, o.sets, [&](int i) {
      Set& s = sets[i];
      return notify(c, s, dispatchIn(c, s, false, sms), o.mode == 'a');
    }, &tm));
    EP_TEST_EP(asyncOk(c, "notify"));
    smp.us = tm.medianUs;
    EP_TEST_EP(addRow(c, T, sms, o.mode == 'a' ? "notify(sync)" : "notify", smp));
  }
  // NCCL baselines are measured once per configuration (first path) and
  // printed next to both paths: same routing, same rows.
  double ncclUs[3] = {-1, -1, -1}, ncclA2aUs[3] = {-1, -1, -1};
  for (int path = 0; path < 2; path++) {
  const bool direct = path == 1;
  if ((direct && !o.direct) || (!direct && !o.ring)) continue;
  // Every rank registers the same buffers (the sets exist on every rank, and
  // buffers a rank does not need, e.g. zero capacity, are simply skipped by all).
  std::vector<SetRegs> regs(sets.size());
  if (direct)
    for (size_t i = 0; i < sets.size(); i++) EP_TEST_EP(registerSet(c, sets[i], &regs[i]));
  const std::string sfx = std::string(direct ? "/direct" : "/ring") + (o.meta ? "" : "+rows-only");
  const bool measureNccl = c.nccl && ncclUs[2] < 0;
  // ---- dispatch BF16 / FP8, each with its NCCL baseline
  for (int f = 0; f < 2; f++) {
    const bool fp8 = f == 1;
    if ((fp8 && !o.fp8) || (!fp8 && !o.bf16)) continue;
    Sample smp;
    EP_TEST_EP(epTestTimeCalls(c.st, o.warmup, o.iters, o.sets, [&](int i) {
      Set& s = sets[i];
      epDispatchInput_t in = dispatchIn(c, s, fp8, sms);
      epDispatchOutput_t od = dispatchOut(s, fp8, o.meta);
      if (o.mode != 'c') {
        epResult_t r = notify(c, s, in, o.mode == 'a');
        if (r != epSuccess) return r;
      }
      return epDispatch(c.comm, &in, &od, s.handle, c.st);
    }, &tm));
    EP_TEST_EP(asyncOk(c, "dispatch"));
    smp.us = tm.medianUs;
    const size_t rowB = fp8 ? fp8RowBytes(sets[0]) : (size_t)H * 2;
    // Every set moves its own rows: average the bytes over the sets.
    for (Set& s : sets) {
      smp.logical += (double)s.ref.numRecv * rowB / o.sets;
      smp.nvl += (double)(s.ref.numRecv - s.ref.fromRank[c.me]) * rowB / o.sets;
      smp.rdma += rdmaPairs(c, s) * rowB / o.sets;
    }
    if (measureNccl) {
      EP_TEST_EP(epTestTimeCalls(c.st, o.warmup, o.iters, o.sets, [&](int i) {
        Set& s = sets[i];
        cudaError_t e = fp8 ? epTestGatherRows(s.send8.p, s.x8.p, (size_t)H, s.sc8.p, epTestScaleBytes(s.p8),
                                               s.gIdx.as<int32_t>(), s.numSend, c.st)
                            : epTestGatherRows(s.send16.p, s.x16.p, (size_t)H * 2, nullptr, 0, s.gIdx.as<int32_t>(),
                                               s.numSend, c.st);
        if (e != cudaSuccess) return epCudaError;
        return epTestNcclAllToAllv(c.nccl, fp8 ? s.send8.p : s.send16.p, s.sendRows.data(), s.sendOff.data(),
                                   fp8 ? s.recv8.p : s.recv16.p, s.recvRows.data(), s.recvOff.data(), rowB, c.st);
      }, &tm));
      smp.ncclUs = tm.medianUs;
      EP_TEST_EP(epTestTimeCalls(c.st, o.warmup, o.iters, o.sets, [&](int i) {
        Set& s = sets[i];
        return epTestNcclAllToAllv(c.nccl, fp8 ? s.send8.p : s.send16.p, s.sendRows.data(), s.sendOff.data(),
                                   fp8 ? s.recv8.p : s.recv16.p, s.recvRows.data(), s.recvOff.data(), rowB, c.st);
      }, &tm));
      smp.ncclA2aUs = tm.medianUs;
      EP_TEST_CUDA(cudaStreamSynchronize(c.st));
      ncclUs[f] = smp.ncclUs;
      ncclA2aUs[f] = smp.ncclA2aUs;
    } else if (c.nccl) {
      smp.ncclUs = ncclUs[f];
      smp.ncclA2aUs = ncclA2aUs[f];
    }
    if (o.check)
      for (Set& s : sets) smp.checkFailed |= checkDispatch(c, s, fp8, fp8 ? "dispatch fp8" : "dispatch bf16");
    EP_TEST_EP(addRow(c, T, sms, (std::string(fp8 ? "dispatch-fp8" : "dispatch-bf16") + sfx).c_str(), smp));
  }
  // ---- combine (the handle's layout; the same rows as the dispatch, in BF16)
  {
    Sample smp;
    EP_TEST_EP(epTestTimeCalls(c.st, o.warmup, o.iters, o.sets, [&](int i) {
      Set& s = sets[i];
      epCombineInput_t cin = EP_COMBINE_INPUT_INITIALIZER;
      cin.x = s.cx.p;
      cin.topkWeights = o.meta ? s.rW.as<float>() : nullptr;
      cin.hidden = H;
      cin.numSms = sms;
      epCombineOutput_t cout = EP_COMBINE_OUTPUT_INITIALIZER;
      cout.out = s.out.p;
      cout.outTopkWeights = o.meta ? s.outW.as<float>() : nullptr;
      return epCombine(c.comm, &cin, &cout, s.handle, c.st);
    }, &tm));
    EP_TEST_EP(asyncOk(c, "combine"));
    smp.us = tm.medianUs;
    for (Set& s : sets) {
      smp.logical += (double)s.ref.numRecv * H * 2 / o.sets;
      smp.nvl += (double)(s.ref.numRecv - s.ref.fromRank[c.me]) * H * 2 / o.sets;
      smp.rdma += rdmaPairs(c, s) * H * 2 / o.sets;
    }
    if (measureNccl) {
      // Reverse alltoallv of the combine input (already grouped by source) + per-token fp32 reduction.
      EP_TEST_EP(epTestTimeCalls(c.st, o.warmup, o.iters, o.sets, [&](int i) {
        Set& s = sets[i];
        epResult_t r = epTestNcclAllToAllv(c.nccl, s.cx.p, s.recvRows.data(), s.recvOff.data(), s.cRecv.p,
                                           s.sendRows.data(), s.sendOff.data(), (size_t)H * 2, c.st);
        if (r != epSuccess) return r;
        return epTestReduceRowsBf16(s.cOut.p, s.cRecv.p, s.cOff.as<int32_t>(), s.cList.as<int32_t>(), T, H, c.st) ==
                       cudaSuccess
                   ? epSuccess
                   : epCudaError;
      }, &tm));
      smp.ncclUs = tm.medianUs;
      EP_TEST_CUDA(cudaStreamSynchronize(c.st));
      ncclUs[2] = smp.ncclUs;
    } else if (c.nccl) {
      smp.ncclUs = ncclUs[2];
    }
    if (o.check)
      for (Set& s : sets) smp.checkFailed |= checkCombine(c, s);
    EP_TEST_EP(addRow(c, T, sms, (std::string("combine") + sfx).c_str(), smp));
  }
  if (direct) {
    EP_TEST_CUDA(cudaStreamSynchronize(c.st));
    for (size_t i = 0; i < sets.size(); i++) EP_TEST_EP(deregisterSet(c, &regs[i]));
  }
  }  // path
  EP_TEST_CUDA(cudaStreamSynchronize(c.st));
  return epSuccess;
}

void printTable(const Ctx& c, const std::string& header) {
  printf("\n%s\n\n", header.c_str());
  printf("| tokens | SMs | call | time (us) | logical GB/s | NVLink GB/s | slowest rank GB/s | NCCL (us) | "
         "NCCL alltoallv only (us) | NCCL logical GB/s | speedup vs NCCL |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : c.rows) {
    const Aggregate a = aggregate(r);
    printf("| %d | %s | %s%s | %.1f |", r.tokens, r.sms ? std::to_string(r.sms).c_str() : "default", r.call.c_str(),
           a.failed ? " (CHECK FAILED)" : "", a.us);
    if (a.bytes > 0) printf(" %.1f | %.1f | %.1f |", a.gb, a.nvlGb, a.minGb);
    else printf(" - | - | - |");
    if (a.haveNccl)
      printf(" %.1f | %s | %.1f | %.2fx |", a.ncclUs, a.haveA2a ? std::to_string((int)(a.ncclA2aUs + 0.5)).c_str() : "-",
             a.bytes / (a.ncclUs * 1e3), a.ncclUs / a.us);
    else printf(" - | - | - | - |");
    printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  Ctx c;
  c.w = epTestWorldFromEnv();
  c.R = c.w.size;
  c.me = c.w.rank;
  int rc = 0;
  if (!htPerfParse(argc, argv, c.me, &c.opt, &rc)) return rc;
  HtPerfOptions& o = c.opt;
  if (epTestCudaDeviceCount() == 0) {
    if (c.me == 0) fprintf(stderr, "ep_ht_perf: no CUDA device: nothing to measure\n");
    return 2;
  }
  if (o.experts % c.R != 0) {
    if (c.me == 0) fprintf(stderr, "ep_ht_perf: --experts %d is not divisible by %d ranks\n", o.experts, c.R);
    return 2;
  }
  int maxT = 1, maxSms = 0;
  for (int t : o.tokens) maxT = std::max(maxT, t);
  for (int s : o.sms) maxSms = std::max(maxSms, s);
  epTestDefaultCommId();
  if (epTestOobInit(c.w, 120000, &c.oob) != epSuccess) return 1;
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.htMaxTokensPerRank = maxT;
  if (maxSms > 0) cfg.numSms = maxSms;
  size_t hint = 0;
  if (epGetBufferSizeHint(c.R, o.hidden, epBfloat16, o.topk, maxSms > 0 ? maxSms : 24, &hint) == epSuccess && hint)
    cfg.nvlBufferBytes = (long long)hint;
  cfg.commName = "ep_ht_perf";
  epResult_t r = epTestCommInit(c.w, &cfg, &c.comm);
  if (r != epSuccess) {
    fprintf(stderr, "[rank %d] epCommInitRank: %s (%s)\n", c.me, epGetErrorString(r), epGetLastError(nullptr));
    return 1;
  }
  epCommNodeCount(c.comm, &c.nNodes);
  if (cudaStreamCreateWithFlags(&c.st, cudaStreamNonBlocking) != cudaSuccess) return 1;
  std::string ncclDesc = "skipped (--no-nccl)";
  if (o.nccl) {
    std::string why;
    if (epTestNcclInit(c.oob, c.me, c.R, &c.nccl, &why) == epSuccess) {
      ncclDesc = epTestNcclDescribe(c.nccl);
    } else {
      ncclDesc = "unavailable: " + why;
      o.nccl = false;
    }
  }

  cudaDeviceProp prop;
  int dev = 0;
  cudaGetDevice(&dev);
  cudaGetDeviceProperties(&prop, dev);
  int ver = 0;
  epGetVersion(&ver);
  char header[1024];
  snprintf(header, sizeof(header),
           "## ep_ht_perf: %d ranks x %s | H=%d K=%d E=%d | routing %s | mode %c | FP8 scales %s | iters %d (median), "
           "warmup %d, %d rotating sets | epcomm %d | NCCL %s",
           c.R, prop.name, o.hidden, o.topk, o.experts, epTestRoutingName(o.routing).c_str(), o.mode,
           o.scales == epScaleUE8M0 ? "ue8m0" : "f32", o.iters, o.warmup, o.sets, ver, ncclDesc.c_str());
  if (c.me == 0) {
    printf("%s\n", header);
    printf("%-8s %-5s %-21s %10s %9s %9s %9s %10s %9s\n", "tokens", "sms", "call", "time_us", "logicGB/s", "nvlGB/s",
           "minGB/s", "nccl_us", "speedup");
    fflush(stdout);
  }
  for (int T : o.tokens) {
    for (int sms : o.sms) {
      r = runConfig(c, T, maxT, sms);
      if (r != epSuccess) {
        fprintf(stderr, "[rank %d] tokens %d sms %d failed: %s (%s)\n", c.me, T, sms, epGetErrorString(r),
                epGetLastError(c.comm));
        rc = 1;
        break;
      }
    }
    if (rc) break;
  }
  size_t mem = 0;
  epCommMemoryUsage(c.comm, &mem);
  long long memMax = 0;
  std::vector<long long> mems(c.R, 0);
  mems[c.me] = (long long)mem;
  if (rc == 0 && epTestOobAllGather(c.oob, mems.data(), sizeof(long long)) == epSuccess)
    for (long long m : mems) memMax = std::max(memMax, m);
  if (c.me == 0 && rc == 0) {
    printTable(c, header);
    printf("\nepcomm device memory per rank (epCommMemoryUsage, max over ranks): %.1f MiB\n", memMax / 1048576.0);
    if (o.check) printf("check (-c): %s\n", c.anyCheckFailed ? "FAILED (see stderr)" : "all outputs matched the host reference");
    if (!o.csv.empty()) {
      FILE* f = fopen(o.csv.c_str(), "a");
      if (f) {
        for (const Row& row : c.rows) {
          const Aggregate a = aggregate(row);
          fprintf(f, "%d,%d,%s,%.2f,%.2f,%.2f,%.2f\n", row.tokens, row.sms, row.call.c_str(), a.us, a.gb, a.nvlGb,
                  a.haveNccl ? a.ncclUs : -1.0);
        }
        fclose(f);
      }
    }
  }
  if (c.anyCheckFailed) rc = rc ? rc : 3;
  cudaStreamSynchronize(c.st);
  epTestNcclDestroy(c.nccl);
  epCommDestroy(c.comm);
  cudaStreamDestroy(c.st);
  epTestOobDestroy(c.oob);
  return rc;
}
