/*************************************************************************
 * epcomm LL: kernel parameters and launchers (host side of ll_*.cu).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_LL_KERNELS_H_
#define EP_LL_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "device/fast_div.h"
#include "device/put_signal.cuh"
#include "device/status.h"
#include "epcomm.h"
#include "lowlatency/ll_remote.h"

namespace ep {
namespace ll {

enum Phase : int { kPhaseSend = 1, kPhaseRecv = 2 };

// Device-local sequence state of the LL buffer sets (never seen by peers).
// Epochs count the uses of each set (dispatch and combine alike); every rank
// sees the same sequence of calls, so a sender's and a receiver's epoch of a
// use agree. Each block keeps its OWN copy of every epoch (index blockIdx.x)
// and at its end writes the new value into the copies blockIdx.x + i*gridDim.x:
// no block ever reads a copy another block of the same kernel writes, so no
// grid-wide "last block" atomic is needed, and a later kernel with another
// block count still finds all copies equal.
struct Ctl {
  uint32_t published[2];  // per set: receives completed and already acknowledged to the peers (block 0 only)
  uint32_t pad[2];
  uint32_t ep[1];         // [4][nb]: sendEp set 0, set 1, recvEp set 0, set 1 (allocated larger)
};
static inline size_t ctlBytes(int nb) { return sizeof(Ctl) + sizeof(uint32_t) * (4 * (size_t)nb); }

// What every LL kernel needs about the buffers of one set.
struct SetArgs {
  dev::PutSignal ps;
  int set;
  int nb;  // epoch copies per counter (>= any grid size)
  size_t setBytes;  // offset of set 1 (set b's signals are at b * setBytes)
  size_t sigOff, infoOff, hdrOff, dataOff, infoStride;
  size_t routeOff, lineOff, lineStride;  // lines dispatch: tagged routing words, line slots (ll_layout.h)
  Ctl* ctl;
  epDeviceStatus* status;
  uint64_t timeoutNs;
  unsigned pollNs;  // EP_LL_POLL_NS: pause between polls of a block-done flag (0: none)
  // EP_LL_PROFILE: this call's bucket of phase sums (nullptr: off); see ll_profile.h.
  unsigned long long* prof;
  // EP_LL_PROFILE=2: this fused dispatch's per-block timeline bucket (nullptr: off); see ll_profile.h.
  unsigned long long* tl;
  RemoteArgs rm;  // peers on other nodes (ll_remote.h); rm.on == 0 on single-node comms
};

struct DispatchParams {
  int R, rank, M, K, H, E, L, T;
  const uint16_t* x;
  const void* topk;
  int topk64;
  const float* weights;
  int fp8, roundScale, ue8m0, scaleMn, dedup;
  int lines;      // flagged-line protocol (ll_dispatch_lines.cuh): FP8 + dedup among NVLink peers
  int sendBlocks; // lines, fused call: blocks that send (token order), the others receive; 0 or >= grid: all do both
  int publishBlocks; // lines, fused call: receiving blocks that publish the routing first (EP_LL_PUBLISH_SMS); 0: the senders
  int devSkip;    // lines, timing only (EP_LL_DEV_SKIP): bit 0 receivers skip the row stores, bit 1 the line waits, bit 2 the scale stores
  int phases;
  int recvSplit;  // warps per received message (EP_LL_RECV_SPLIT), 1..8
  int coop;       // fused launch is cooperative (EP_LL_COOP, default 1)
  size_t msgStride;
  // Divisions of the receive path's index math (fast_div.h): by K, M*K, R, recvSplit, R*M and L.
  dev::FastDiv divK, divMK, divR, divP, divRM, divL;
  // outputs
  void* recvX;
  void* recvScales;
  int* recvCount;
  long long* layoutRange;
  int* srcInfo;
  float* recvW;
  int* cumStats;
  // handle (device arrays)
  int* hSrcT;      // [R]
  int* hFlatRow;   // [R x M x K]: e_local * R*M + row, or -1
  float* hW;       // [R x M x K]
  SetArgs sa;
};

struct CombineParams {
  int R, rank, M, K, H, E, L, T;
  const uint16_t* x;   // [L x R*M x H]
  const void* topk;
  int topk64;
  const float* weights;
  int reduce;
  int lines;  // flagged-line protocol (ll_combine.cu): reduced on the sender, NVLink peers
  int phases;
  int coop;
  uint16_t* out;
  const int* hSrcT;
  const int* hFlatRow;
  const float* hW;
  SetArgs sa;
};

// Dynamic shared memory a dispatch block needs (routing table + receive bookkeeping).
size_t dispatchSmemBytes(int R, int M, int K, int E);

epResult_t launchDispatch(const DispatchParams& p, int blocks, cudaStream_t stream);
epResult_t launchCombine(const CombineParams& p, int blocks, cudaStream_t stream);
epResult_t launchClean(char* buf, size_t bytes, Ctl* ctl, size_t ctlSize, cudaStream_t stream);

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_KERNELS_H_
