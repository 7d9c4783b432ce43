/*************************************************************************
 * epcomm GPU suite: puts and signals posted by kernels, executed by the CPU
 * proxy over the emulated RDMA transport (EP_NET=emulated, virtual nodes).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every rank's kernel writes chunks of a known pattern and posts them to
 * every rank of another (virtual) node: even chunks as put-with-signal, odd
 * ones as a put followed by a separate signal. Receiver blocks of the same
 * kernel wait on each signal and check, on the device, that the data the
 * signal announces has landed (signal-after-data ordering). The host then
 * checks every byte, the final signal values and that the proxy saw no error.
 * Run with small rings (EP_PROXY_RING_SLOTS=64) and in-flight limits
 * (EP_IB_MAX_INFLIGHT=8) to make the producers wrap and wait for credit.
 *
 *   mpirun -np 2 build/test/ep_gpu_tests --gtest_filter='NetEmulated*'   (2 nodes x 1 GPU)
 *   mpirun -np 4 build/test/ep_gpu_tests --gtest_filter='NetEmulated*'   (2 nodes x 2 GPUs)
 *************************************************************************/
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/comm.h"
#include "tests/common/world.h"
#include "transports/ib/ib_backend.h"
#include "transports/proxy/net.h"
#include "transports/proxy/net_post.cuh"

namespace {

constexpr int kCh = 2;             // HT channels
constexpr int kPerCh = 512;        // chunks per channel per destination
constexpr uint32_t kMaxBytes = 8192;
constexpr int kNetCommPortOffset = 20;  // see tests/common/world.h
constexpr int kMaxRanks = 8;

__host__ __device__ uint32_t chunkBytes(int g) { return 16u * (1u + (uint32_t)((g * 37) % (kMaxBytes / 16))); }
__host__ __device__ uint32_t pattern(int src, int g, uint32_t w) {
  uint32_t x = (uint32_t)src * 0x9E3779B1u ^ (uint32_t)g * 0x85EBCA6Bu ^ w * 0xC2B2AE35u;
  return x ^ (x >> 15);
}

struct Args {
  epNetDevice net;
  int rank, nranks;
  int remote[kMaxRanks];    // 1 where the rank is on another node
  int wData, wSig;
  uint32_t* data;           // local view of the data window
  uint64_t* sig;            // local view of the signal window
  uint64_t srcBase, dstBase;  // byte offsets inside the data window
  int* errors;              // [0] data mismatches, [1] post failures, [2] wait timeouts
  uint32_t sigOp;           // EP_NET_SIG_ADD: +1 per chunk; EP_NET_SIG_SET: the chunk count so far
};

__global__ void exchange(Args a) {
  const int tid = threadIdx.x;
  if (blockIdx.x < kCh) {
    // Sender for channel c.
    const int c = blockIdx.x;
    uint64_t lastTicket = 0;
    bool posted = false;
    __shared__ int failed;
    if (tid == 0) failed = 0;
    __syncthreads();
    for (int k = 0; k < kPerCh; k++) {
      const int g = c * kPerCh + k;
      const uint32_t bytes = chunkBytes(g);
      uint32_t* chunk = a.data + (a.srcBase + (uint64_t)g * kMaxBytes) / 4;
      for (uint32_t w = tid; w < bytes / 4; w += blockDim.x) chunk[w] = pattern(a.rank, g, w);
      __syncthreads();
      if (tid == 0) {
        __threadfence_system();  // the copy engine reads what the whole block wrote
        for (int p = 0; p < a.nranks; p++) {
          if (!a.remote[p]) continue;
          const uint64_t src = a.srcBase + (uint64_t)g * kMaxBytes;
          const uint64_t dst = a.dstBase + ((uint64_t)a.rank * kCh * kPerCh + g) * kMaxBytes;
          const uint32_t slot = (uint32_t)(a.rank * kCh + c);
          const int32_t v = a.sigOp == EP_NET_SIG_SET ? k + 1 : 1;
          int rc;
          if (k % 2 == 0) {
            rc = ep::net::put_signal(a.net, c, p, a.wData, dst, a.wData, src, bytes, a.wSig, slot, v, a.sigOp,
                                     &lastTicket);
          } else {
            rc = ep::net::put(a.net, c, p, a.wData, dst, a.wData, src, bytes);
            if (rc == EP_NET_POST_OK) rc = ep::net::signal(a.net, c, p, a.wSig, slot, v, a.sigOp, &lastTicket);
          }
          if (rc != EP_NET_POST_OK) {
            atomicAdd(&a.errors[1], 1);
            failed = 1;
            break;
          }
          posted = true;
        }
      }
      __syncthreads();
      if (failed) return;  // the error is recorded; do not wait out every later post
    }
    if (tid == 0 && posted && ep::net::wait_done(a.net, c, lastTicket) != EP_NET_POST_OK) atomicAdd(&a.errors[2], 1);
    return;
  }
  // Receiver for (source s, channel c).
  const int s = (blockIdx.x - kCh) / kCh, c = (blockIdx.x - kCh) % kCh;
  if (s >= a.nranks || !a.remote[s]) return;
  __shared__ int ok;
  for (int k = 0; k < kPerCh; k++) {
    if (tid == 0) ok = ep::net::wait_signal_geq(a.net, &a.sig[s * kCh + c], (uint64_t)k + 1, c, s) ? 1 : 0;
    __syncthreads();
    if (!ok) {
      if (tid == 0) atomicAdd(&a.errors[2], 1);
      return;
    }
    const int g = c * kPerCh + k;
    const uint32_t bytes = chunkBytes(g);
    const volatile uint32_t* chunk =
        a.data + (a.dstBase + ((uint64_t)s * kCh * kPerCh + g) * kMaxBytes) / 4;
    int bad = 0;
    for (uint32_t w = tid; w < bytes / 4; w += blockDim.x) bad += chunk[w] != pattern(s, g, w);
    if (bad) atomicAdd(&a.errors[0], bad);
    __syncthreads();
  }
}

#define NET_ASSERT_CUDA(call)                                                  \
  do {                                                                         \
    cudaError_t e_ = (call);                                                   \
    ASSERT_EQ(cudaSuccess, e_) << #call << ": " << cudaGetErrorString(e_);     \
  } while (0)

// sigOp ADD: counters (+1 per chunk); SET: the count so far, written as a plain
// 8-byte value (the copy engine in the emulated backend, no kernel): both must
// become visible only after their data and every earlier op of the channel.
void runExchange(uint32_t sigOp, int portOffset) {
  const std::string noGpu =
      epTestNoGpuReason("this test needs >= 2 ranks with one GPU each (mpirun -np 2 build/test/ep_gpu_tests)");
  if (!noGpu.empty()) GTEST_SKIP() << noGpu;
  const int ndev = epTestCudaDeviceCount();
  epTestWorld w = epTestWorldFromEnv();
  if (w.size < 2 || w.size % 2 != 0 || w.size > kMaxRanks)
    GTEST_SKIP() << "needs an even number of ranks in [2, " << kMaxRanks << "] (two virtual nodes); got " << w.size;
  NET_ASSERT_CUDA(cudaSetDevice(w.localRank % ndev));  // one GPU per rank, as epTestCommInit does
  epTestDefaultCommId();
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.net = "emulated";
  cfg.emulateNodes = 2;
  cfg.timeoutMs = 10000;
  cfg.commName = "net-emulated-test";
  epComm_t comm = nullptr;
  epResult_t r = epTestCommInitAt(w.rank, w.size, portOffset, &cfg, &comm);
  ASSERT_EQ(r, epSuccess) << epGetLastError(nullptr);
  ASSERT_EQ(comm->nNodes, 2);
  // Internal calls outside an API entry point log into the thread's last error (epGetLastError(nullptr)).
  ASSERT_EQ(epNetInit(comm, kCh, 0), epSuccess) << epGetLastError(nullptr);
  ASSERT_EQ(comm->net->kind, EP_NET_KIND_EMULATED);

  const uint64_t srcBytes = (uint64_t)kCh * kPerCh * kMaxBytes;
  const uint64_t dstBytes = (uint64_t)w.size * kCh * kPerCh * kMaxBytes;
  void* data = nullptr;
  uint64_t* sig = nullptr;
  int* errors = nullptr;
  NET_ASSERT_CUDA(cudaMalloc(&data, srcBytes + dstBytes));
  NET_ASSERT_CUDA(cudaMemset(data, 0xEE, srcBytes + dstBytes));  // poison
  NET_ASSERT_CUDA(cudaMalloc(&sig, sizeof(uint64_t) * w.size * kCh));
  NET_ASSERT_CUDA(cudaMemset(sig, 0, sizeof(uint64_t) * w.size * kCh));
  NET_ASSERT_CUDA(cudaMalloc(&errors, 3 * sizeof(int)));
  NET_ASSERT_CUDA(cudaMemset(errors, 0, 3 * sizeof(int)));
  NET_ASSERT_CUDA(cudaDeviceSynchronize());
  int wData = -1, wSig = -1;
  ASSERT_EQ(epNetRegisterWindow(comm, data, srcBytes + dstBytes, &wData), epSuccess) << epGetLastError(nullptr);
  ASSERT_EQ(epNetRegisterWindow(comm, sig, sizeof(uint64_t) * w.size * kCh, &wSig), epSuccess)
      << epGetLastError(nullptr);

  Args a{};
  ASSERT_EQ(epNetGetDevice(comm, &a.net), epSuccess);
  a.rank = w.rank;
  a.nranks = w.size;
  int nRemote = 0;
  for (int p = 0; p < w.size; p++) {
    a.remote[p] = comm->rankNode[p] != comm->node;
    nRemote += a.remote[p];
  }
  ASSERT_EQ(nRemote, w.size / 2);
  a.wData = wData;
  a.wSig = wSig;
  a.data = static_cast<uint32_t*>(data);
  a.sig = sig;
  a.srcBase = 0;
  a.dstBase = srcBytes;
  a.errors = errors;
  a.sigOp = sigOp;
  cudaStream_t stream;
  NET_ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  exchange<<<kCh + w.size * kCh, 256, 0, stream>>>(a);
  NET_ASSERT_CUDA(cudaGetLastError());
  // Bounded wait: a stalled proxy must fail the test with what it knows, never hang it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  cudaError_t q;
  while ((q = cudaStreamQuery(stream)) == cudaErrorNotReady && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (q == cudaErrorNotReady) {
    epProxyStats st = comm->net->proxy->stats();
    std::string msg;
    comm->net->proxy->error(&msg);
    FAIL() << "kernel still running after 60 s: proxy executed " << st.ops << " ops (" << st.busy
           << " flow-control stalls), proxy error '" << msg << "'";
  }
  NET_ASSERT_CUDA(q);

  int herr[3];
  NET_ASSERT_CUDA(cudaMemcpy(herr, errors, sizeof(herr), cudaMemcpyDeviceToHost));
  EXPECT_EQ(herr[0], 0) << "words seen before their data landed (signal overtook data) or corrupted";
  EXPECT_EQ(herr[1], 0) << "posts failed";
  EXPECT_EQ(herr[2], 0) << "waits timed out";
  EXPECT_EQ(epNetCheck(comm), epSuccess) << epGetLastError(nullptr);
  epResult_t async = epInternalError;
  EXPECT_EQ(epCommGetAsyncError(comm, &async), epSuccess);
  EXPECT_EQ(async, epSuccess) << epGetLastError(comm);

  // Host check of every byte and of the final signal values.
  std::vector<uint64_t> hsig(w.size * kCh);
  NET_ASSERT_CUDA(cudaMemcpy(hsig.data(), sig, sizeof(uint64_t) * hsig.size(), cudaMemcpyDeviceToHost));
  std::vector<uint32_t> hdst(dstBytes / 4);
  NET_ASSERT_CUDA(cudaMemcpy(hdst.data(), static_cast<char*>(data) + srcBytes, dstBytes, cudaMemcpyDeviceToHost));
  long long badWords = 0, badSignals = 0, poisonLeft = 0;
  for (int s = 0; s < w.size; s++) {
    for (int c = 0; c < kCh; c++) {
      uint64_t want = a.remote[s] ? kPerCh : 0;
      if (hsig[s * kCh + c] != want) badSignals++;
      for (int k = 0; k < kPerCh; k++) {
        int g = c * kPerCh + k;
        const uint32_t* chunk = &hdst[((uint64_t)s * kCh * kPerCh + g) * (kMaxBytes / 4)];
        uint32_t n = chunkBytes(g) / 4;
        for (uint32_t x = 0; x < kMaxBytes / 4; x++) {
          if (!a.remote[s] || x >= n) {
            if (chunk[x] != 0xEEEEEEEEu) poisonLeft++;  // nothing may write here
          } else if (chunk[x] != pattern(s, g, x)) {
            badWords++;
          }
        }
      }
    }
  }
  EXPECT_EQ(badWords, 0) << "received data differs from what was sent";
  EXPECT_EQ(badSignals, 0) << "final signal values wrong";
  EXPECT_EQ(poisonLeft, 0) << "bytes written outside the puts' ranges";
  epProxyStats st = comm->net->proxy->stats();
  EXPECT_EQ(st.ops, (uint64_t)nRemote * kCh * (kPerCh + kPerCh / 2)) << "ops executed by the proxy";
  if (w.rank == 0)
    printf("[ net-emulated ] %s signals, %d ranks, %d virtual nodes: %llu ops, %llu flow-control stalls, max ring "
           "occupancy %llu\n",
           sigOp == EP_NET_SIG_SET ? "SET" : "ADD", w.size, comm->nNodes, (unsigned long long)st.ops, (unsigned long long)st.busy,
           (unsigned long long)st.maxOutstanding);

  ASSERT_EQ(epNetDeregisterWindow(comm, wSig), epSuccess) << epGetLastError(nullptr);
  ASSERT_EQ(epNetDeregisterWindow(comm, wData), epSuccess) << epGetLastError(nullptr);
  cudaStreamDestroy(stream);
  EXPECT_EQ(epCommDestroy(comm), epSuccess);
  cudaFree(data);
  cudaFree(sig);
  cudaFree(errors);
}

TEST(NetEmulated, PutsAndSignalsAcrossVirtualNodes) { runExchange(EP_NET_SIG_ADD, kNetCommPortOffset); }
// Its own port (offsets 21.. are the no-NIC case's private comms).
TEST(NetEmulated, PutsAndSetSignalsAcrossVirtualNodes) { runExchange(EP_NET_SIG_SET, kNetCommPortOffset + 10); }

// No NIC and no emulation requested: a clear epNotSupported naming EP_NET.
TEST(NetEmulated, NoNicWithoutEmulationIsNotSupported) {
  const std::string noGpu = epTestNoGpuReason("this case builds a GPU communicator");
  if (!noGpu.empty()) GTEST_SKIP() << noGpu;
  const int ndev = epTestCudaDeviceCount();
  epTestWorld w = epTestWorldFromEnv();
  NET_ASSERT_CUDA(cudaSetDevice(w.localRank % ndev));
  epTestDefaultCommId();
  epConfig_t cfg = EP_CONFIG_INITIALIZER;
  cfg.net = "ib";
  cfg.emulateNodes = 1;  // one rank: nothing to split, whatever EP_EMULATE_NODES the caller exported
  epComm_t comm = nullptr;
  // A private single-rank comm per rank (offset per rank): nothing collective across ranks.
  ASSERT_EQ(epTestCommInitAt(0, 1, kNetCommPortOffset + 1 + w.rank, &cfg, &comm), epSuccess)
      << epGetLastError(nullptr);
  std::string why;
  if (epIbProbe(comm, &why) == epSuccess) {
    epCommDestroy(comm);
    GTEST_SKIP() << "this host has an RDMA NIC: the no-NIC error cannot be provoked";
  }
  {
    EP_COMM_SCOPE(comm);  // as the API entry point that calls epNetInit does
    EXPECT_EQ(epNetInit(comm, 1, 0), epNotSupported);
  }
  std::string msg = epGetLastError(comm);
  EXPECT_NE(msg.find("EP_NET"), std::string::npos) << msg;
  EXPECT_EQ(epCommDestroy(comm), epSuccess);
}

}  // namespace
