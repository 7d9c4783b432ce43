/*************************************************************************
 * epcomm LL: per-communicator state behind comm->ll, handles and hooks.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Host-side sequencing: every LL call gets the next sequence number n and
 * uses buffer set n & 1. A hooked call stays "pending" on its set until its
 * hook is received; a call that lands on a pending set is refused (that is
 * the documented in-flight rule). Device-side sequencing (epochs, counters)
 * lives in ll::Ctl and does not depend on these host numbers, so CUDA-graph
 * replays stay consistent.
 *************************************************************************/
#ifndef EP_LL_STATE_H_
#define EP_LL_STATE_H_

#include <cstdint>
#include <vector>

#include "epcomm.h"
#include "lowlatency/ll_kernels.h"
#include "lowlatency/ll_layout.h"
#include "lowlatency/ll_remote.h"
#include "transports/nvlink/nvl_buffer.h"

struct epComm;

#define EP_LL_HANDLE_MAGIC 0x4c4c4831u /* "LLH1" */

struct epLlHandle {
  uint32_t magic = EP_LL_HANDLE_MAGIC;
  epComm* comm = nullptr;
  int* srcT = nullptr;     // [R]
  int* flatRow = nullptr;  // [R x M x K]
  float* w = nullptr;      // [R x M x K]
  size_t bytes = 0;
  // What the last dispatch into this handle was (host view).
  bool filled = false;
  bool recvPending = false;  // hooked dispatch whose receive has not been issued
  int T = 0, K = 0, H = 0, E = 0;
  bool hasWeights = false;
};

struct epLlPending {
  bool active = false;
  uint64_t seq = 0;
  int kind = 0;  // 1 dispatch, 2 combine
  int blocks = 0;
  ep::ll::DispatchParams dp;
  ep::ll::CombineParams cp;
  epLlHandle* handle = nullptr;
};

struct epLlState {
  ep::ll::Layout layout;
  epNvlBuffer buf;
  ep::ll::Ctl* ctl = nullptr;
  size_t ctlSize = 0;
  int deviceSms = 0;
  uint64_t seq = 0;  // next call's sequence number
  epLlPending pending[2];
  void* zeroCopy[2] = {nullptr, nullptr};
  size_t zeroCopyBytes = 0;
  std::vector<epLlHandle*> handles;
  unsigned long long* prof = nullptr;  // EP_LL_PROFILE=1: phase sums (ll_profile.h)
  epLlRemote* remote = nullptr;        // peers on other nodes (ll_remote.h); nullptr on single-node comms
};

/* Creates comm->ll on first use (collective). */
epResult_t epLlEnsureState(epComm* comm);
/* Frees everything (registered as a comm cleanup). */
void epLlFreeState(epComm* comm);
/* SetArgs for buffer set b. */
ep::ll::SetArgs epLlSetArgs(epComm* comm, int b);
/* Blocks to launch for a call asking for numSms (0: EP_LL_NUM_SMS or all). */
int epLlBlocks(epComm* comm, int numSms);
/* EP_LL_PROFILE=1: the bucket of phase sums for one launch (nullptr when off).
 * kind: 0 dispatch dedup (push), 1 dispatch plain, 2 combine reduce, 3 combine plain, 4 dispatch lines. */
unsigned long long* epLlProfSlot(epComm* comm, int kind, int phases, int T);
/* EP_LL_PROFILE=2: the per-block timeline bucket of a fused dispatch (kinds 0 and 4), else nullptr. */
unsigned long long* epLlTimelineSlot(epComm* comm, int kind, int phases, int T);
/* EP_LL_FUSED (default 1): a non-hooked call runs its send and receive phases
 * in one cooperative launch; 0: two ordinary launches (send, then receive). */
bool epLlFused();
/* EP_LL_RECV_SPLIT (default 4, 1..8): warps that copy one received dispatch message. */
int epLlRecvSplit();
/* EP_LL_LINES (default 1): an FP8 dedup dispatch and a combine reduced on the
 * sender, hooked or not, use the flagged-line protocol (ll_dispatch_lines.cuh,
 * ll_combine.cu) when every peer is an NVLink peer and there are at most
 * kLlLinesMaxRanks ranks; otherwise the release protocol. */
constexpr int kLlLinesMaxRanks = 16;
bool epLlLines(const epComm* comm);
/* EP_LL_SEND_SMS (default 64): blocks of a fused lines dispatch that send (at most half the grid); the others receive. */
int epLlSendSms();
/* EP_LL_PUBLISH_SMS (default 8): receiving blocks of a fused lines dispatch that publish the routing (0: the sending blocks). */
int epLlPublishSms();
/* EP_LL_DEV_SKIP (default 0, timing only: the outputs are wrong): lines receivers skip the row stores (1), the line waits (2), the scale stores (4). */
int epLlDevSkip();
/* EP_LL_COOP (default 1): the fused launch is cooperative (co-residency guaranteed);
 * 0 only to measure its cost (blocks then rely on fitting on the GPU at once). */
bool epLlCoop();

#endif  // EP_LL_STATE_H_
