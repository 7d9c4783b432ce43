/*************************************************************************
 * ep_ll_perf: ep-tests benchmark of epcomm's low-latency (LL) path.
 * SPDX-License-Identifier: Apache-2.0
 *
 *   mpirun -np 4 build/bin/ep_ll_perf [--tokens 1,8,32,64,128] [--hidden 7168]
 *          [--topk 8] [--experts 256] [--iters 50] [--warmup 20] [--sms N]
 *          [--dedup 0|1|2] [--reduce 0|1|2] [--no-hook] [--no-nccl] [--bf16]
 *   (2 = measure both settings)
 *
 * Per token count and option set, as BENCHMARKS.md asks: warm-up, CUDA events
 * around every call, median of >= 20 calls, two rotating input sets:
 *  - dispatch (whole call) and combine (whole call), back to back as an
 *    application would issue them; the "host us" column is the CPU time of the
 *    API call itself (median), so a figure the host could bound is visible;
 *  - "queued": the same calls enqueued behind a long busy kernel, so the host
 *    is never on the critical path (GPU time of the call, launch included);
 *  - hook mode: the send phase and the receive phase, each its own events;
 *  - the NCCL baseline of the same bytes in the same process on the same
 *    routing: permutation gather + grouped ncclSend/ncclRecv (dispatch), and
 *    reverse alltoallv + per-token reduction (combine); ratio = NCCL / epcomm.
 * LL bytes (BENCHMARKS.md): dispatch = valid picks x (H + H/32 + 16) (FP8),
 * combine = valid picks x 2H; GB/s = bytes / time, per rank. Each figure is
 * the worst rank's median. Rank 0 prints a markdown table last.
 *************************************************************************/
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "epcomm.h"
#include "tests/common/cuda_check.h"
#include "tests/common/dev_buffer.h"
#include "tests/common/device_ops.h"
#include "tests/common/nccl_baseline.h"
#include "tests/common/oob.h"
#include "tests/common/rng.h"
#include "tests/common/routing.h"
#include "tests/common/timing.h"
#include "tests/common/world.h"
#include "tests/perf/ep_ll_perf/spin.h"

namespace {

struct Opt {
  std::vector<int> tokens = {1, 8, 32, 64, 128};
  int hidden = 7168, topk = 8, experts = 256, iters = 50, warmup = 20, sms = 0;
  int dedup = 2, reduce = 2, hook = 1, nccl = 1, fp8 = 1;
  int tokenMajorScales = 0;  // --scales token: [L x R*M x S] instead of the default MN-major [L x S x R*M]
  std::string routing = "uniform";
  uint64_t seed = 1;
};

void usage() {
  printf(
      "ep_ll_perf: LL dispatch/combine latency vs the NCCL alltoallv baseline\n"
      "  --tokens LIST   tokens per rank to sweep (default 1,8,32,64,128; max is the largest)\n"
      "  --hidden H      hidden size, multiple of 128 (7168)\n"
      "  --topk K        (8)      --experts E   (256)\n"
      "  --iters N       timed calls per figure, >= 20 (50)   --warmup N (20)\n"
      "  --sms N         SMs for the LL kernels (0: EP_LL_NUM_SMS or all)\n"
      "  --dedup 0|1|2   per-rank deduplication off / on / both (2)\n"
      "  --reduce 0|1|2  sender-side reduction in combine off / on / both (2)\n"
      "  --routing SPEC  uniform | zipf:A | hot[:F] (uniform)\n"
      "  --bf16          BF16 dispatch instead of FP8\n"
      "  --scales mn|token  FP8 scale layout of the output (mn: DeepGEMM's, the default)\n"
      "  --no-hook       skip the hook send/recv figures\n"
      "  --no-nccl       skip the NCCL baseline\n");
}

bool parse(int argc, char** argv, Opt* o) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--tokens") {
      o->tokens.clear();
      std::string s = next();
      size_t p = 0;
      while (p < s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        o->tokens.push_back(atoi(s.substr(p, q - p).c_str()));
        p = q + 1;
      }
    } else if (a == "--hidden") o->hidden = atoi(next());
    else if (a == "--topk") o->topk = atoi(next());
    else if (a == "--experts") o->experts = atoi(next());
    else if (a == "--iters") o->iters = atoi(next());
    else if (a == "--warmup") o->warmup = atoi(next());
    else if (a == "--sms") o->sms = atoi(next());
    else if (a == "--dedup") o->dedup = atoi(next());
    else if (a == "--reduce") o->reduce = atoi(next());
    else if (a == "--routing") o->routing = next();
    else if (a == "--seed") o->seed = strtoull(next(), nullptr, 10);
    else if (a == "--bf16") o->fp8 = 0;
    else if (a == "--scales") o->tokenMajorScales = std::string(next()) == "token";
    else if (a == "--no-hook") o->hook = 0;
    else if (a == "--no-nccl") o->nccl = 0;
    else if (a == "--help" || a == "-h") {
      usage();
      exit(0);
    } else {
      fprintf(stderr, "unknown option %s\n", a.c_str());
      usage();
      return false;
    }
  }
  if (o->iters < 20) {
    fprintf(stderr, "--iters must be >= 20 (BENCHMARKS.md: median of at least 20 runs)\n");
    return false;
  }
  return !o->tokens.empty();
}

struct Row {
  int tokens;
  std::string call, variant;
  double us = 0, minUs = 0, bytes = 0, ncclUs = -1;
  double hostUs = -1;  // median CPU time of the API call (whole-call rows)
};

double nowUs() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Ctx {
  Opt o;
  epTestWorld w;
  epTestOob* oob = nullptr;
  epComm_t comm = nullptr;
  epTestNccl* nccl = nullptr;
  cudaStream_t stream = nullptr;
  epLlHandle_t handle = nullptr;
  int R = 1, L = 1, M = 0;
  epTestDevBuf x[2], topk, weights, recvX, recvScales, recvCount, y[2], out;
  // NCCL baseline buffers
  epTestDevBuf fp8rows, gIdx, send, recv, cSend, cRecv, cOff, cList, cOut;
};

// Hook phases, measured as DeepEP's hook figures are: every rank enters the
// send phase together (stream drained, out-of-band barrier), the send is
// timed; then, once every rank's sends are complete, the receive phase alone
// is timed (nothing is left in flight: it measures the receive work). A busy
// kernel ahead of each timed call keeps host launch latency out.
epResult_t timeHook(Ctx& c, const std::function<epResult_t(int, epLlHook_t*)>& send, std::vector<double>* sUs,
                    std::vector<double>* rUs) {
  cudaEvent_t e[4];
  for (auto& x : e) EP_TEST_CUDA(cudaEventCreate(&x));
  for (int i = 0; i < c.o.warmup + c.o.iters; i++) {
    epLlHook_t h;
    EP_TEST_CUDA(cudaStreamSynchronize(c.stream));
    EP_TEST_EP(epTestOobBarrier(c.oob));
    EP_TEST_CUDA(llPerfSpin(20000, c.stream));
    EP_TEST_CUDA(cudaEventRecord(e[0], c.stream));
    EP_TEST_EP(send(i, &h));
    EP_TEST_CUDA(cudaEventRecord(e[1], c.stream));
    EP_TEST_CUDA(cudaStreamSynchronize(c.stream));
    EP_TEST_EP(epTestOobBarrier(c.oob));
    EP_TEST_CUDA(llPerfSpin(20000, c.stream));
    EP_TEST_CUDA(cudaEventRecord(e[2], c.stream));
    EP_TEST_EP(epLowLatencyRecv(c.comm, h, c.stream));
    EP_TEST_CUDA(cudaEventRecord(e[3], c.stream));
    EP_TEST_CUDA(cudaEventSynchronize(e[3]));
    float a = 0, b = 0;
    EP_TEST_CUDA(cudaEventElapsedTime(&a, e[0], e[1]));
    EP_TEST_CUDA(cudaEventElapsedTime(&b, e[2], e[3]));
    if (i >= c.o.warmup) {
      sUs->push_back(a * 1000.0);
      rUs->push_back(b * 1000.0);
    }
  }
  for (auto& x : e) cudaEventDestroy(x);
  return epSuccess;
}

// Whole calls with the host out of the picture: every rank enqueues a long
// busy kernel, then all the timed calls (each between its own events) behind
// it; the GPU then runs them back to back with no launch gap. The calls keep
// each other in step across ranks (each receive waits for the peers' sends).
epResult_t timeQueued(Ctx& c, const std::function<epResult_t(int)>& call, std::vector<double>* us) {
  const int n = c.o.warmup + c.o.iters;
  std::vector<cudaEvent_t> e(2 * (size_t)n);
  for (auto& x : e) EP_TEST_CUDA(cudaEventCreate(&x));
  EP_TEST_CUDA(cudaStreamSynchronize(c.stream));
  EP_TEST_EP(epTestOobBarrier(c.oob));
  EP_TEST_CUDA(llPerfSpin(3000000ull, c.stream));  // 3 ms: longer than the host needs to enqueue n calls
  for (int i = 0; i < n; i++) {
    EP_TEST_CUDA(cudaEventRecord(e[2 * i], c.stream));
    EP_TEST_EP(call(i));
    EP_TEST_CUDA(cudaEventRecord(e[2 * i + 1], c.stream));
  }
  EP_TEST_CUDA(cudaStreamSynchronize(c.stream));
  for (int i = c.o.warmup; i < n; i++) {
    float ms = 0;
    EP_TEST_CUDA(cudaEventElapsedTime(&ms, e[2 * i], e[2 * i + 1]));
    us->push_back(ms * 1000.0);
  }
  for (auto& x : e) cudaEventDestroy(x);
  return epSuccess;
}

double gatherMax(Ctx& c, double v) {
  std::vector<double> all(c.R);
  all[c.w.rank] = v;
  if (epTestOobAllGather(c.oob, all.data(), sizeof(double)) != epSuccess) return v;
  return *std::max_element(all.begin(), all.end());
}

// The "queued" row of a call (timeQueued; worst rank's median and minimum). Collective.
epResult_t addQueuedRow(Ctx& c, int T, const char* name, const std::string& var, double bytes,
                        const std::function<epResult_t(int)>& call, std::vector<Row>* rows) {
  std::vector<double> us;
  EP_TEST_EP(timeQueued(c, call, &us));
  const double med = gatherMax(c, epTestMedian(us)), mn = gatherMax(c, *std::min_element(us.begin(), us.end()));
  rows->push_back(Row{T, name, var, med, mn, bytes, -1});
  return epSuccess;
}

epResult_t run(Ctx& c, std::vector<Row>* rows) {
  const Opt& o = c.o;
  const int R = c.R, L = c.L, H = o.hidden, K = o.topk, E = o.experts, me = c.w.rank;
  for (int T : o.tokens) {
    epTestRoutingSpec spec;
    std::string err;
    if (!epTestParseRouting(o.routing, &spec, &err)) {
      fprintf(stderr, "bad --routing: %s\n", err.c_str());
      return epInvalidArgument;
    }
    spec.numTokens = T;
    spec.numTopk = K;
    spec.numExperts = E;
    spec.seed = o.seed + T;
    std::vector<epTestRouting> all = epTestMakeAllRoutings(spec, R);
    const epTestRouting& mine = all[me];
    EP_TEST_CUDA(cudaMemcpy(c.topk.p, mine.topkIdx.data(), mine.topkIdx.size() * 8, cudaMemcpyHostToDevice));
    EP_TEST_CUDA(cudaMemcpy(c.weights.p, mine.topkWeights.data(), mine.topkWeights.size() * 4,
                            cudaMemcpyHostToDevice));
    // Valid picks this rank sends, per destination; and what it receives.
    long long picks = 0;
    std::vector<int> sendRows(R, 0), recvRows(R, 0);
    std::vector<int> expectCount(L, 0);
    for (int s = 0; s < R; s++)
      for (int t = 0; t < all[s].numTokens; t++)
        for (int k = 0; k < K; k++) {
          long long e = all[s].topkIdx[(size_t)t * K + k];
          if (e < 0) continue;
          int d = (int)(e / L);
          if (s == me) {
            picks++;
            sendRows[d]++;
          }
          if (d == me) {
            recvRows[s]++;
            expectCount[e - (long long)me * L]++;
          }
        }
    const double dBytes = (double)picks * (o.fp8 ? (H + H / 32 + 16) : (2.0 * H + 16));
    const double cBytes = (double)picks * 2.0 * H;

    for (int dd = 0; dd <= 1; dd++) {
      if (o.dedup != 2 && o.dedup != dd) continue;
      epLlDispatchInput_t in = EP_LL_DISPATCH_INPUT_INITIALIZER;
      epLlDispatchOutput_t out = EP_LL_DISPATCH_OUTPUT_INITIALIZER;
      in.numTokens = T;
      in.hidden = H;
      in.topkIdx = c.topk.p;
      in.topkIdxType = epInt64;
      in.topkWeights = c.weights.as<float>();
      in.numTopk = K;
      in.numExperts = E;
      in.useFp8 = o.fp8;
      in.scaleLayout = o.tokenMajorScales ? epLlScalesTokenMajor : epLlScalesMnMajor;
      in.dedup = dd;
      in.numSms = o.sms;
      out.recvX = c.recvX.p;
      out.recvScales = c.recvScales.p;
      out.recvCount = c.recvCount.as<int32_t>();
      std::string var = std::string(o.fp8 ? "fp8" : "bf16") + (dd ? " dedup" : " per-expert");
      EP_TEST_EP(addQueuedRow(c, T, "dispatch queued", var, dBytes, [&](int i) {
        in.x = c.x[i & 1].p;
        return epLowLatencyDispatch(c.comm, &in, &out, c.handle, nullptr, c.stream);
      }, rows));
      // Back to back, as an application issues them (ranks start together).
      EP_TEST_CUDA(cudaStreamSynchronize(c.stream));
      EP_TEST_EP(epTestOobBarrier(c.oob));
      epTestTiming tm;
      std::vector<double> hostUs;
      EP_TEST_EP(epTestTimeCalls(c.stream, o.warmup, o.iters, 2, [&](int set) {
        in.x = c.x[set].p;
        double t0 = nowUs();
        epResult_t res = epLowLatencyDispatch(c.comm, &in, &out, c.handle, nullptr, c.stream);
        hostUs.push_back(nowUs() - t0);
        return res;
      }, &tm));
      // Sanity: per-expert counts.
      std::vector<int> got(L);
      EP_TEST_CUDA(cudaMemcpy(got.data(), c.recvCount.p, L * 4, cudaMemcpyDeviceToHost));
      if (got != expectCount) {
        fprintf(stderr, "rank %d: dispatch counts differ from the routing (T=%d %s)\n", me, T, var.c_str());
        return epInternalError;
      }
      Row r{T, "dispatch", var, gatherMax(c, tm.medianUs), gatherMax(c, tm.minUs), dBytes, -1};
      r.hostUs = gatherMax(c, epTestMedian(hostUs));
      rows->push_back(r);

      if (o.hook) {
        in.hook = 1;
        // Send and receive phases, each bracketed by its own events.
        std::vector<double> sUs, rUs;
        EP_TEST_EP(timeHook(c, [&](int i, epLlHook_t* h) {
          in.x = c.x[i & 1].p;
          return epLowLatencyDispatch(c.comm, &in, &out, c.handle, h, c.stream);
        }, &sUs, &rUs));
        in.hook = 0;
        rows->push_back(Row{T, "dispatch hook send", var, gatherMax(c, epTestMedian(sUs)), 0, dBytes, -1});
        rows->push_back(Row{T, "dispatch hook recv", var, gatherMax(c, epTestMedian(rUs)), 0, 0, -1});
      }
      // Leave a dispatch with this routing in the handle for the combines.
      in.x = c.x[0].p;
      EP_TEST_EP(epLowLatencyDispatch(c.comm, &in, &out, c.handle, nullptr, c.stream));
      if (dd != 1 && o.dedup == 2) continue;  // combine figures once per token count (layout is identical)
      for (int rr = 0; rr <= 1; rr++) {
        if (o.reduce != 2 && o.reduce != rr) continue;
        epLlCombineInput_t cin = EP_LL_COMBINE_INPUT_INITIALIZER;
        epLlCombineOutput_t cout = EP_LL_COMBINE_OUTPUT_INITIALIZER;
        cin.topkIdx = c.topk.p;
        cin.topkIdxType = epInt64;
        cin.topkWeights = c.weights.as<float>();
        cin.numTokens = T;
        cin.numTopk = K;
        cin.hidden = H;
        cin.reduceOnSender = rr;
        cin.numSms = o.sms;
        cout.out = c.out.p;
        std::string cvar = rr ? "bf16 reduce-on-sender" : "bf16 per-expert";
        EP_TEST_EP(addQueuedRow(c, T, "combine queued", cvar, cBytes, [&](int i) {
          cin.x = c.y[i & 1].p;
          return epLowLatencyCombine(c.comm, &cin, &cout, c.handle, nullptr, c.stream);
        }, rows));
        EP_TEST_CUDA(cudaStreamSynchronize(c.stream));
        EP_TEST_EP(epTestOobBarrier(c.oob));
        hostUs.clear();
        EP_TEST_EP(epTestTimeCalls(c.stream, o.warmup, o.iters, 2, [&](int set) {
          cin.x = c.y[set].p;
          double t0 = nowUs();
          epResult_t res = epLowLatencyCombine(c.comm, &cin, &cout, c.handle, nullptr, c.stream);
          hostUs.push_back(nowUs() - t0);
          return res;
        }, &tm));
        Row cr{T, "combine", cvar, gatherMax(c, tm.medianUs), gatherMax(c, tm.minUs), cBytes, -1};
        cr.hostUs = gatherMax(c, epTestMedian(hostUs));
        rows->push_back(cr);

        if (o.hook) {
          cin.hook = 1;
          std::vector<double> sUs, rUs;
          EP_TEST_EP(timeHook(c, [&](int i, epLlHook_t* h) {
            cin.x = c.y[i & 1].p;
            return epLowLatencyCombine(c.comm, &cin, &cout, c.handle, h, c.stream);
          }, &sUs, &rUs));
          cin.hook = 0;
          rows->push_back(Row{T, "combine hook send", cvar, gatherMax(c, epTestMedian(sUs)), 0, cBytes, -1});
          rows->push_back(Row{T, "combine hook recv", cvar, gatherMax(c, epTestMedian(rUs)), 0, 0, -1});
        }
      }
    }
    EP_TEST_CUDA(cudaStreamSynchronize(c.stream));
    epResult_t async = epSuccess;
    EP_TEST_EP(epCommGetAsyncError(c.comm, &async));
    if (async != epSuccess) {
      fprintf(stderr, "rank %d: device error: %s (%s)\n", me, epGetErrorString(async), epGetLastError(c.comm));
      return async;
    }

    if (c.nccl) {
      // Baseline dispatch: gather each valid pick's FP8 row (+scales, +16 B of
      // source info: the same bytes) by destination, then alltoallv.
      const size_t rowB = o.fp8 ? (size_t)H + H / 32 + 16 : 2 * (size_t)H + 16;
      std::vector<int> idx, sendOff(R), recvOff(R);
      for (int d = 0, off = 0; d < R; d++) {
        sendOff[d] = off;
        off += sendRows[d];
      }
      for (int s = 0, off = 0; s < R; s++) {
        recvOff[s] = off;
        off += recvRows[s];
      }
      for (int d = 0; d < R; d++)
        for (int t = 0; t < T; t++)
          for (int k = 0; k < K; k++) {
            long long e = mine.topkIdx[(size_t)t * K + k];
            if (e >= 0 && e / L == d) idx.push_back(t);
          }
      if (!idx.empty())
        EP_TEST_CUDA(cudaMemcpy(c.gIdx.p, idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
      epTestTiming nd, nc;
      EP_TEST_EP(epTestTimeCalls(c.stream, o.warmup, o.iters, 2, [&](int set) {
        cudaError_t ce = epTestGatherRows(c.send.p, static_cast<char*>(c.fp8rows.p) + set * (size_t)c.M * rowB, rowB,
                                          nullptr, 0, c.gIdx.as<int32_t>(), (int)idx.size(), c.stream);
        if (ce != cudaSuccess) return epCudaError;
        return epTestNcclAllToAllv(c.nccl, c.send.p, sendRows.data(), sendOff.data(), c.recv.p, recvRows.data(),
                                   recvOff.data(), rowB, c.stream);
      }, &nd));
      // Baseline combine: BF16 rows back (reverse alltoallv), then the
      // per-token fp32 sum into [T x H] (weights folded in by the experts).
      std::vector<int> off(T + 1, 0), list;
      {
        std::vector<std::vector<int>> perTok(T);
        std::vector<int> cur(sendOff);
        for (int d = 0; d < R; d++)
          for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) {
              long long e = mine.topkIdx[(size_t)t * K + k];
              if (e >= 0 && e / L == d) perTok[t].push_back(cur[d]++);
            }
        for (int t = 0; t < T; t++) {
          off[t + 1] = off[t] + (int)perTok[t].size();
          list.insert(list.end(), perTok[t].begin(), perTok[t].end());
        }
      }
      EP_TEST_CUDA(cudaMemcpy(c.cOff.p, off.data(), off.size() * 4, cudaMemcpyHostToDevice));
      if (!list.empty()) EP_TEST_CUDA(cudaMemcpy(c.cList.p, list.data(), list.size() * 4, cudaMemcpyHostToDevice));
      EP_TEST_EP(epTestTimeCalls(c.stream, o.warmup, o.iters, 2, [&](int set) {
        epResult_t r = epTestNcclAllToAllv(c.nccl, static_cast<char*>(c.y[set].p), recvRows.data(), recvOff.data(),
                                           c.cRecv.p, sendRows.data(), sendOff.data(), 2 * (size_t)H, c.stream);
        if (r != epSuccess) return r;
        return epTestReduceRowsBf16(c.cOut.p, c.cRecv.p, c.cOff.as<int32_t>(), c.cList.as<int32_t>(), T, H,
                                    c.stream) == cudaSuccess
                   ? epSuccess
                   : epCudaError;
      }, &nc));
      double ndUs = gatherMax(c, nd.medianUs), ncUs = gatherMax(c, nc.medianUs);
      for (Row& r : *rows)
        if (r.tokens == T) {
          if (r.call.rfind("dispatch", 0) == 0 && r.call != "dispatch hook recv") r.ncclUs = ndUs;
          if (r.call.rfind("combine", 0) == 0 && r.call != "combine hook recv") r.ncclUs = ncUs;
        }
      rows->push_back(Row{T, "nccl alltoallv dispatch", o.fp8 ? "fp8 rows + gather" : "bf16 rows + gather", ndUs, 0,
                          dBytes, -1});
      rows->push_back(Row{T, "nccl alltoallv combine", "bf16 rows + reduce", ncUs, 0, cBytes, -1});
    }
  }
  return epSuccess;
}

// The launch floor: an empty kernel with the LL kernels' geometry (one block
// of 512 threads per SM, ~13 KB of dynamic shared memory), ordinary and
// cooperative, queued behind a busy kernel like the "queued" rows; and the
// host time of that launch. What an LL call costs above it is its own work.
epResult_t launchFloor(Ctx& c, std::vector<Row>* rows) {
  int dev = 0, sms = 0;
  EP_TEST_CUDA(cudaGetDevice(&dev));
  EP_TEST_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  if (c.o.sms > 0 && c.o.sms < sms) sms = c.o.sms;
  struct Geo {
    int blocks, threads;
    bool coop;
  };
  const Geo geos[] = {{sms, 512, false}, {sms, 512, true}, {sms, 128, false}, {1, 32, false}};
  for (const Geo& g : geos) {
    std::vector<double> qUs, hUs;
    EP_TEST_EP(timeQueued(c, [&](int) {
      double t0 = nowUs();
      cudaError_t e = llPerfEmpty(g.blocks, g.threads, 13 * 1024, g.coop, c.stream);
      hUs.push_back(nowUs() - t0);
      return e == cudaSuccess ? epSuccess : epCudaError;
    }, &qUs));
    Row r{0, "launch floor",
          "empty kernel " + std::to_string(g.blocks) + "x" + std::to_string(g.threads) + (g.coop ? " coop" : ""),
          gatherMax(c, epTestMedian(qUs)), gatherMax(c, *std::min_element(qUs.begin(), qUs.end())), 0, -1};
    r.hostUs = gatherMax(c, epTestMedian(hUs));
    rows->push_back(r);
  }
  // Instruction-cache probe: first vs second pass over the same code, per launch.
  epTestDevBuf stamps, sink;
  if (stamps.alloc(sizeof(unsigned long long) * 3 * sms) != cudaSuccess || sink.alloc(4 * 512) != cudaSuccess)
    return epCudaError;
  std::vector<double> pass1, pass2;
  std::vector<unsigned long long> h(3 * (size_t)sms);
  for (int i = 0; i < 10; i++) {
    EP_TEST_CUDA(llPerfSpin(20000, c.stream));
    EP_TEST_CUDA(llPerfBigCode(sms, static_cast<unsigned long long*>(stamps.p), sink.as<float>(), c.stream));
    EP_TEST_CUDA(cudaMemcpyAsync(h.data(), stamps.p, h.size() * 8, cudaMemcpyDeviceToHost, c.stream));
    EP_TEST_CUDA(cudaStreamSynchronize(c.stream));
    double a = 0, b = 0;
    for (int k = 0; k < sms; k++) {
      a += (double)(h[3 * k + 1] - h[3 * k]) / sms;
      b += (double)(h[3 * k + 2] - h[3 * k + 1]) / sms;
    }
    if (i >= 2) {
      pass1.push_back(a / 1e3);
      pass2.push_back(b / 1e3);
    }
  }
  rows->push_back(Row{0, "icache probe", "32 KB of code, 1st pass (us)", gatherMax(c, epTestMedian(pass1)), 0, 0, -1});
  rows->push_back(Row{0, "icache probe", "same code, 2nd pass (us)", gatherMax(c, epTestMedian(pass2)), 0, 0, -1});
  return epSuccess;
}

}  // namespace

int main(int argc, char** argv) {
  Ctx c;
  if (!parse(argc, argv, &c.o)) return 2;
  const Opt& o = c.o;
  c.w = epTestWorldFromEnv();
  c.R = c.w.size;
  if (o.experts % c.R) {
    fprintf(stderr, "--experts %d must be a multiple of %d ranks\n", o.experts, c.R);
    return 2;
  }
  c.L = o.experts / c.R;
  c.M = *std::max_element(o.tokens.begin(), o.tokens.end());
  int ndev = epTestCudaDeviceCount();
  if (ndev == 0) {
    fprintf(stderr, "ep_ll_perf: no CUDA device\n");
    return 1;
  }
  cudaSetDevice(c.w.localRank % ndev);
  epTestDefaultCommId();
  if (epTestOobInit(c.w, 120000, &c.oob) != epSuccess) return 1;
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.llMaxTokensPerRank = c.M;
  cfg.llHidden = o.hidden;
  cfg.llNumExperts = o.experts;
  cfg.llMaxTopk = o.topk;
  cfg.commName = "ep_ll_perf";
  epResult_t r = epTestCommInit(c.w, &cfg, &c.comm);
  if (r != epSuccess) {
    fprintf(stderr, "comm init failed: %s (%s)\n", epGetErrorString(r), epGetLastError(nullptr));
    return 1;
  }
  if (epLowLatencyHandleCreate(c.comm, &c.handle) != epSuccess) {
    fprintf(stderr, "handle: %s\n", epGetLastError(c.comm));
    return 1;
  }
  cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking);
  const size_t M = c.M, H = o.hidden, K = o.topk, RM = (size_t)c.R * M, L = c.L;
  const size_t rowB = H + H / 32 + 16 > 2 * H + 16 ? H + H / 32 + 16 : 2 * H + 16;
  bool ok = c.topk.alloc(M * K * 8) == cudaSuccess && c.weights.alloc(M * K * 4) == cudaSuccess &&
            c.recvX.alloc(L * RM * H * 2) == cudaSuccess && c.recvScales.alloc(L * RM * (H / 128) * 4) == cudaSuccess &&
            c.recvCount.alloc(L * 4) == cudaSuccess && c.out.alloc(M * H * 2) == cudaSuccess &&
            c.fp8rows.alloc(2 * M * rowB) == cudaSuccess && c.gIdx.alloc(M * K * 4 + 4) == cudaSuccess &&
            c.send.alloc(M * K * rowB) == cudaSuccess && c.recv.alloc(RM * K * rowB) == cudaSuccess &&
            c.cRecv.alloc(M * K * 2 * H) == cudaSuccess && c.cOff.alloc((M + 1) * 4) == cudaSuccess &&
            c.cList.alloc(M * K * 4 + 4) == cudaSuccess && c.cOut.alloc(M * H * 2) == cudaSuccess;
  for (int s = 0; s < 2 && ok; s++) ok = c.x[s].alloc(M * H * 2) == cudaSuccess && c.y[s].alloc(L * RM * H * 2) == cudaSuccess;
  if (!ok) {
    fprintf(stderr, "allocation failed\n");
    return 1;
  }
  {
    // Random inputs (never zeros): BF16 in [-1, 1) for x and y, random bytes for the baseline rows.
    epTestRng rng(o.seed, EP_RNG_USER, (uint64_t)c.w.rank);
    std::vector<uint16_t> h(M * H);
    for (int s = 0; s < 2; s++) {
      for (size_t i = 0; i < h.size(); i++) {
        float f = (float)(rng.uniform(i + s * h.size()) * 2 - 1);
        uint32_t b;
        memcpy(&b, &f, 4);
        h[i] = (uint16_t)(b >> 16);
      }
      cudaMemcpy(c.x[s].p, h.data(), h.size() * 2, cudaMemcpyHostToDevice);
      for (size_t off = 0; off < c.y[s].bytes; off += h.size() * 2)
        cudaMemcpy(static_cast<char*>(c.y[s].p) + off, h.data(), std::min(h.size() * 2, c.y[s].bytes - off),
                   cudaMemcpyHostToDevice);
    }
    std::vector<uint8_t> b(2 * M * rowB);
    for (size_t i = 0; i < b.size(); i++) b[i] = (uint8_t)(rng.bits(i + (1ull << 40)) & 0x77);
    cudaMemcpy(c.fp8rows.p, b.data(), b.size(), cudaMemcpyHostToDevice);
  }
  std::string ncclWhy = "disabled (--no-nccl)";
  if (o.nccl) {
    if (epTestNcclInit(c.oob, c.w.rank, c.R, &c.nccl, &ncclWhy) != epSuccess) c.nccl = nullptr;
    else ncclWhy = epTestNcclDescribe(c.nccl);
  }
  std::vector<Row> rows;
  r = launchFloor(c, &rows);
  if (r == epSuccess) r = run(c, &rows);
  if (r != epSuccess) {
    fprintf(stderr, "rank %d: ep_ll_perf failed: %s (%s)\n", c.w.rank, epGetErrorString(r), epGetLastError(c.comm));
    return 1;
  }
  if (c.w.rank == 0) {
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, c.w.localRank % ndev);
    int sms = o.sms > 0 ? o.sms : 0;
    const char* env = getenv("EP_LL_NUM_SMS");
    printf("\n## ep_ll_perf: %d ranks x %s, H=%d top-%d of %d experts, routing %s, SMs %s\n", c.R, prop.name,
           o.hidden, o.topk, o.experts, o.routing.c_str(),
           sms ? std::to_string(sms).c_str() : (env ? env : "all"));
    printf("NCCL baseline: %s. Worst rank's median of %d calls (2 rotating input sets); GB/s = LL bytes / time.\n\n",
           ncclWhy.c_str(), o.iters);
    printf("| tokens | call | variant | median us | min us | LL GB/s | NCCL us | NCCL / epcomm | host us |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (const Row& rw : rows) {
      char gbs[32] = "-", nus[32] = "-", ratio[32] = "-", mn[32] = "-", hus[32] = "-";
      if (rw.hostUs >= 0) snprintf(hus, sizeof(hus), "%.1f", rw.hostUs);
      if (rw.bytes > 0 && rw.us > 0) snprintf(gbs, sizeof(gbs), "%.0f", rw.bytes / (rw.us * 1e3));
      if (rw.ncclUs > 0) {
        snprintf(nus, sizeof(nus), "%.1f", rw.ncclUs);
        snprintf(ratio, sizeof(ratio), "%.2fx", rw.ncclUs / rw.us);
      }
      if (rw.minUs > 0) snprintf(mn, sizeof(mn), "%.1f", rw.minUs);
      printf("| %d | %s | %s | %.1f | %s | %s | %s | %s | %s |\n", rw.tokens, rw.call.c_str(), rw.variant.c_str(), rw.us,
             mn, gbs, nus, ratio, hus);
    }
    fflush(stdout);
  }
  cudaStreamSynchronize(c.stream);
  epLowLatencyHandleDestroy(c.handle);
  if (c.nccl) epTestNcclDestroy(c.nccl);
  epCommDestroy(c.comm);
  epTestOobDestroy(c.oob);
  return 0;
}
