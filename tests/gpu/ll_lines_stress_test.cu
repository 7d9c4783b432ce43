/*************************************************************************
 * epcomm GPU suite (LL): the platform property the flagged-line protocol
 * (EP_LL_LINES, src/lowlatency/ll_lines.cuh) relies on, checked hard.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Property: the 128-byte line a group of 8 lanes writes with one warp store
 * instruction (line_st, 128-byte aligned) is seen by a reader that loads the
 * line with one instruction (line_ld) either wholly old or wholly new -- over
 * NVLink to every peer and in the GPU's own memory. The LL dispatch checks
 * only a line's flag unit and trusts the 7 payload units that came with it.
 *
 * Test: one process drives every visible GPU through peer access (the same
 * NVLink path as the IPC mappings the communicator uses). On each GPU, half
 * the warps of every SM (all SMs) write, for iteration n = 1..N, every line of
 * their share to every GPU (self included), as fast as they can: 7 payload
 * units that are a hash of (source, destination, line, n, unit) and a flag
 * unit (n, source, line, n ^ magic). Odd iterations store each line with its
 * own instruction (8 lanes active, like the chunk's 5th line in the
 * dispatch), even ones 4 lines per instruction. The other half of the warps
 * sweep over every line that lands in their GPU and, for every observation
 * with n' > 0, check all 128 bytes against the iteration n' the flag names.
 * Lines are overwritten while they are read, so a line delivered in pieces
 * shows as a mismatch. The test fails on any mismatched byte, on a line that
 * never reached iteration N, and if the readers saw no line mid-flight
 * (0 < n' < N: then it raced nothing).
 *************************************************************************/
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/hash.h"
#include "lowlatency/ll_lines.cuh"
#include "tests/common/world.h"

namespace {

using ep::ll::line_ld;
using ep::ll::line_st;

constexpr int kMaxGpus = 8;
constexpr int kLinesPerPair = 16384;  // 2 MB per (source, destination)
constexpr int kIters = 3000;
constexpr int kThreads = 512;         // warps 0-7 write, 8-15 read
constexpr uint32_t kMagic = 0x5bd1e995u;

struct Stats {
  unsigned long long checked, midFlight, regressions;
  unsigned long long badLines;  // lines with a mismatched byte
  unsigned int notDone, timeouts;
  int firstBad[6];  // src, line, flag n, unit, got, expected
};

struct Args {
  int me, nd, iters;
  char* dst[kMaxGpus];  // destination GPU d's buffer as mapped here, at this source's region
  const char* mine;     // this GPU's buffer: [src][line] 128 bytes each
  int* lastSeen;        // [nd * lines] highest n a reader saw per line (this GPU's incoming lines)
  Stats* st;
  unsigned long long timeoutNs;
};

__device__ inline int4 payload(int src, int dst, int line, int n, int unit) {
  uint32_t b = epHashMix32((uint32_t)src * 0x9E3779B1u ^ (uint32_t)dst * 0x85EBCA6Bu ^ (uint32_t)line * 0xC2B2AE35u ^
                   (uint32_t)n * 0x27D4EB2Fu ^ (uint32_t)unit * 0x165667B1u);
  return make_int4((int)b, (int)epHashMix32(b + 1), (int)epHashMix32(b + 2), (int)epHashMix32(b + 3));
}
__device__ inline unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}

__global__ void __launch_bounds__(kThreads, 1) stressKernel(Args a) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 3, i = lane & 7;
  const int half = kThreads / 64;  // warps per role per block
  const int quads = kLinesPerPair / 4;
  if (warp < half) {
    // Writer.
    const int wi = blockIdx.x * half + warp, nW = gridDim.x * half;
    for (int n = 1; n <= a.iters; n++) {
      for (int dd = 0; dd < a.nd; dd++) {
        const int d = (dd + a.me + blockIdx.x) % a.nd;  // every SM writes to every GPU, staggered
        int4* base = reinterpret_cast<int4*>(a.dst[d]);
        for (int q = wi; q < quads; q += nW) {
          const int line = 4 * q + g;
          const int4 v = i == 7 ? make_int4(n, a.me, line, (int)((uint32_t)n ^ kMagic)) : payload(a.me, d, line, n, i);
          int4* p = base + (size_t)line * 8 + i;
          if (n & 1) {
            for (int s = 0; s < 4; s++)
              if (g == s) line_st(p, v);  // one line per instruction
            __syncwarp();
          } else {
            line_st(p, v);  // 4 lines per instruction
          }
        }
      }
    }
    return;
  }
  // Reader: sweeps its share of the nd * kLinesPerPair incoming lines until each shows iteration iters.
  const int ri = blockIdx.x * half + (warp - half), nR = gridDim.x * half;
  const int totalQuads = a.nd * quads;
  const int4* in = reinterpret_cast<const int4*>(a.mine);
  unsigned long long checked = 0, mid = 0, regress = 0;
  const unsigned long long end = now_ns() + a.timeoutNs;
  bool allDone = false, timedOut = false;
  while (!allDone) {
    allDone = true;
    for (int q = ri; q < totalQuads; q += nR) {
      const int idx = 4 * q + g;  // src * lines + line
      const int src = idx / kLinesPerPair, line = idx - src * kLinesPerPair;
      const int4 v = line_ld(in + (size_t)idx * 8 + i);
      const int fn = __shfl_sync(0xffffffffu, v.x, lane | 7);
      const int fs = __shfl_sync(0xffffffffu, v.y, lane | 7);
      const int fl = __shfl_sync(0xffffffffu, v.z, lane | 7);
      const int fc = __shfl_sync(0xffffffffu, v.w, lane | 7);
      if (fn != a.iters) allDone = false;
      const bool written = fn != 0;  // 0: not written yet (the buffer starts zeroed)
      bool ok = !written ||
                (fs == src && fl == line && (uint32_t)fc == ((uint32_t)fn ^ kMagic) && fn >= 1 && fn <= a.iters);
      int4 e = make_int4(0, 0, 0, 0);
      if (written && ok && i != 7) {
        e = payload(src, a.me, line, fn, i);
        ok = v.x == e.x && v.y == e.y && v.z == e.z && v.w == e.w;
      }
      const unsigned badMask = __ballot_sync(0xffffffffu, !ok);  // every lane (no early continue before it)
      if (written && i == 0) {
        checked++;
        if (fn < a.iters) mid++;
        if ((badMask >> (8 * g) & 0xffu) != 0) {
          if (atomicAdd(&a.st->badLines, 1ull) == 0) {
            a.st->firstBad[0] = src;
            a.st->firstBad[1] = line;
            a.st->firstBad[2] = fn;
          }
        }
        const int last = a.lastSeen[idx];
        if (fn < last) regress++;
        else a.lastSeen[idx] = fn;
      }
      if (written && !ok && i != 7 && a.st->firstBad[3] == 0 && a.st->firstBad[1] == line && a.st->firstBad[0] == src) {
        a.st->firstBad[3] = i + 1;
        a.st->firstBad[4] = v.x;
        a.st->firstBad[5] = e.x;
      }
    }
    allDone = __all_sync(0xffffffffu, allDone);
    if (!allDone && __any_sync(0xffffffffu, now_ns() > end)) {
      timedOut = true;
      break;
    }
  }
  if (lane == 0) {
    atomicAdd(&a.st->checked, checked);
    atomicAdd(&a.st->midFlight, mid);
    atomicAdd(&a.st->regressions, regress);
    if (timedOut) atomicAdd(&a.st->timeouts, 1u);
  }
}

#define CK(call)                                                                            \
  do {                                                                                      \
    cudaError_t e_ = (call);                                                                \
    ASSERT_EQ(cudaSuccess, e_) << #call << ": " << cudaGetErrorString(e_);                  \
  } while (0)

TEST(LlLinesStress, FlaggedLinesArriveWhole) {
  const std::string why = epTestNoGpuReason("the flagged-line stress test needs CUDA GPUs with peer access");
  if (!why.empty()) GTEST_SKIP() << why;
  const epTestWorld w = epTestWorldFromEnv();
  if (w.rank != 0)
    GTEST_SKIP() << "runs in rank 0's process only: one process drives every GPU through peer access";
  int nd = epTestCudaDeviceCount();
  if (nd > kMaxGpus) nd = kMaxGpus;
  for (int a = 0; a < nd; a++)
    for (int b = 0; b < nd; b++) {
      if (a == b) continue;
      int can = 0;
      CK(cudaDeviceCanAccessPeer(&can, a, b));
      if (!can) GTEST_SKIP() << "GPU " << a << " cannot access GPU " << b << " as a peer: no NVLink/P2P path to test";
    }
  const size_t pairBytes = (size_t)kLinesPerPair * 128, bufBytes = pairBytes * nd;
  std::vector<char*> buf(nd, nullptr);
  std::vector<int*> last(nd, nullptr);
  std::vector<Stats*> st(nd, nullptr);
  std::vector<cudaStream_t> streams(nd, nullptr);
  std::vector<int> sms(nd, 0);
  for (int d = 0; d < nd; d++) {
    CK(cudaSetDevice(d));
    for (int p = 0; p < nd; p++) {
      if (p == d) continue;
      cudaError_t e = cudaDeviceEnablePeerAccess(p, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) (void)cudaGetLastError();
      else CK(e);
    }
    CK(cudaMalloc(&buf[d], bufBytes));
    CK(cudaMemset(buf[d], 0, bufBytes));
    CK(cudaMalloc(&last[d], sizeof(int) * (size_t)nd * kLinesPerPair));
    CK(cudaMemset(last[d], 0, sizeof(int) * (size_t)nd * kLinesPerPair));
    CK(cudaMalloc(&st[d], sizeof(Stats)));
    CK(cudaMemset(st[d], 0, sizeof(Stats)));
    CK(cudaStreamCreateWithFlags(&streams[d], cudaStreamNonBlocking));
    CK(cudaDeviceGetAttribute(&sms[d], cudaDevAttrMultiProcessorCount, d));
  }
  for (int d = 0; d < nd; d++) {
    CK(cudaSetDevice(d));
    CK(cudaDeviceSynchronize());
  }
  // Every kernel must run at once (readers wait for the other GPUs' writers):
  // one 512-thread block per SM, launched on every GPU before any is waited for.
  for (int d = 0; d < nd; d++) {
    Args a = {};
    a.me = d;
    a.nd = nd;
    a.iters = kIters;
    for (int p = 0; p < nd; p++) a.dst[p] = buf[p] + (size_t)d * pairBytes;
    a.mine = buf[d];
    a.lastSeen = last[d];
    a.st = st[d];
    a.timeoutNs = 20ull * 1000 * 1000 * 1000;
    CK(cudaSetDevice(d));
    stressKernel<<<sms[d], kThreads, 0, streams[d]>>>(a);
    CK(cudaGetLastError());
  }
  Stats total = {};
  for (int d = 0; d < nd; d++) {
    CK(cudaSetDevice(d));
    CK(cudaStreamSynchronize(streams[d]));
    Stats s;
    CK(cudaMemcpy(&s, st[d], sizeof(Stats), cudaMemcpyDeviceToHost));
    // Final state: every line at iteration kIters, every byte right (host check).
    std::vector<int4> h(bufBytes / 16);
    CK(cudaMemcpy(h.data(), buf[d], bufBytes, cudaMemcpyDeviceToHost));
    unsigned notDone = 0;
    for (size_t l = 0; l < h.size() / 8; l++)
      if (h[l * 8 + 7].x != kIters) notDone++;
    EXPECT_EQ(0u, notDone) << "GPU " << d << ": lines that never showed the last iteration";
    EXPECT_EQ(0ull, s.badLines) << "GPU " << d << ": torn or wrong lines; first: src " << s.firstBad[0] << " line "
                                << s.firstBad[1] << " flag n " << s.firstBad[2] << " unit " << s.firstBad[3] - 1
                                << " got 0x" << std::hex << s.firstBad[4] << " expected 0x" << s.firstBad[5];
    EXPECT_EQ(0u, s.timeouts) << "GPU " << d << ": reader warps timed out";
    total.checked += s.checked;
    total.midFlight += s.midFlight;
    total.regressions += s.regressions;
    total.badLines += s.badLines;
  }
  EXPECT_GT(total.midFlight, 0ull) << "the readers never saw a line mid-flight: the test raced nothing";
  printf("[ LlLinesStress ] %d GPUs x %d SMs, %d iterations x %d lines per (src, dst) pair (self included): "
         "%llu line observations checked, %llu mid-flight, %llu torn, %llu seen older than an earlier look\n",
         nd, sms[0], kIters, kLinesPerPair, total.checked, total.midFlight, total.badLines, total.regressions);
  for (int d = 0; d < nd; d++) {
    cudaSetDevice(d);
    cudaFree(buf[d]);
    cudaFree(last[d]);
    cudaFree(st[d]);
    cudaStreamDestroy(streams[d]);
  }
}

}  // namespace
