/*************************************************************************
 * epcomm LL: kernel parameters and launchers (host side of ll_*.cu).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_LL_KERNELS_H_
#define EP_LL_KERNELS_H_

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "device/put_signal.cuh"
#include "device/status.h"
#include "epcomm.h"

namespace ep {
namespace ll {

enum Phase : int { kPhaseSend = 1, kPhaseRecv = 2 };

// Device-local sequence state of the LL buffer sets (never seen by peers).
// Epochs count the operations each set has carried; both sides of a
// connection see the same sequence of calls, so their epochs agree.
struct Ctl {
  uint32_t sendEpoch[2];
  uint32_t recvEpoch[2];
  int done[2];          // blocks that finished the current kernel (last block runs the epilogue)
  int pad[2];
  uint32_t consumed[1]; // [2][R]: dataCnt values already consumed, per set and source (allocated larger)
};
static inline size_t ctlBytes(int R) { return sizeof(Ctl) + sizeof(uint32_t) * (2 * (size_t)R); }

// What every LL kernel needs about the buffers of one set.
struct SetArgs {
  dev::PutSignal ps;
  int set;
  size_t sigOff, metaOff, dataOff, stageOff, metaStride;
  size_t metaNOff, metaCntOff, metaPickOff, metaWOff;
  Ctl* ctl;
  epDeviceStatus* status;
  uint64_t timeoutNs;
};

struct DispatchParams {
  int R, rank, M, K, H, E, L, T;
  const uint16_t* x;
  const void* topk;
  int topk64;
  const float* weights;
  int fp8, roundScale, ue8m0, scaleMn, dedup;
  int phases;
  size_t msgStride;
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
  int phases;
  uint16_t* out;
  const int* hSrcT;
  const int* hFlatRow;
  const float* hW;
  SetArgs sa;
};

// Dynamic shared memory a dispatch block needs (metadata builder).
size_t dispatchSmemBytes(int R, int M, int K, int E);

epResult_t launchDispatch(const DispatchParams& p, int blocks, cudaStream_t stream);
epResult_t launchCombine(const CombineParams& p, int blocks, cudaStream_t stream);
epResult_t launchClean(char* buf, size_t bytes, Ctl* ctl, size_t ctlSize, cudaStream_t stream);

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_KERNELS_H_
