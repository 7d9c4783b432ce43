/*************************************************************************
 * epcomm LL over RDMA: host side (see ll_remote.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "lowlatency/ll_remote.h"

#include <vector>

#include <cuda_runtime.h>

#include "core/checks.h"
#include "core/comm.h"
#include "internode/inter_plan.h"
#include "lowlatency/ll_state.h"
#include "transports/proxy/net.h"

bool epLlNeedsRemote(const epComm* comm) {
  for (int r = 0; r < comm->nranks; r++)
    if (!comm->nvlinkPeer[r]) return true;
  return false;
}

namespace {

// Bytes of the remote-signal block: [2 sets][DATA, ACK][R] 64-bit words.
size_t sigBytes(int R) { return sizeof(uint64_t) * 4 * (size_t)R; }

void releaseWindow(epComm* comm, int* id) {
  if (*id < 0) return;
  if (comm->net && comm->net->windows && comm->net->windows->get(*id)) {
    // No barrier: destroy (or the failed setup every rank took) already synchronised the ranks.
    comm->net->windows->retire(*id);
    (void)comm->net->backend->deregisterWindow(*id);
  }
  *id = -1;
}

}  // namespace

epResult_t epLlRemoteSetup(epComm* comm, epLlState* st) {
  const int R = comm->nranks;
  const ep::ll::Layout& l = st->layout;
  epLlRemote* rm = new epLlRemote();
  st->remote = rm;  // epLlRemoteFree undoes a partial setup
  std::vector<int> mirrorOf(R, -1);
  std::vector<void*> peers(R, nullptr);
  for (int r = 0; r < R; r++) {
    if (comm->nvlinkPeer[r]) {
      peers[r] = st->buf.peer[r];
    } else {
      mirrorOf[r] = rm->nRemote++;
    }
  }
  // The HT internode path asks for the same channel split: whoever comes first sizes the proxy.
  EPCHECK(epNetInit(comm, EP_INTER_HT_CHANNELS, EP_INTER_LL_CHANNELS));
  const size_t mirrorBytes = (size_t)rm->nRemote * l.total;
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  CUDACHECK(cudaMalloc(&rm->mirror, mirrorBytes));
  CUDACHECK(cudaMemset(rm->mirror, 0, mirrorBytes));
  CUDACHECK(cudaMalloc(&rm->sig, sigBytes(R)));
  CUDACHECK(cudaMemset(rm->sig, 0, sigBytes(R)));
  CUDACHECK(cudaMalloc(&rm->shipCtr, 2 * sizeof(unsigned)));
  CUDACHECK(cudaMemset(rm->shipCtr, 0, 2 * sizeof(unsigned)));
  CUDACHECK(cudaMalloc(&rm->mirrorOf, sizeof(int) * R));
  CUDACHECK(cudaMemcpy(rm->mirrorOf, mirrorOf.data(), sizeof(int) * R, cudaMemcpyHostToDevice));
  for (int r = 0; r < R; r++)
    if (mirrorOf[r] >= 0) peers[r] = rm->mirror + (size_t)mirrorOf[r] * l.total;
  CUDACHECK(cudaMalloc(&rm->devPeer, sizeof(void*) * R));
  CUDACHECK(cudaMemcpy(rm->devPeer, peers.data(), sizeof(void*) * R, cudaMemcpyHostToDevice));
  rm->bytes = mirrorBytes + sigBytes(R) + 2 * sizeof(unsigned) + (sizeof(int) + sizeof(void*)) * R;
  comm->deviceBytes += rm->bytes;
  // Collective, same order on every rank (every rank has the same number of remote peers
  // when nodes are equal; window sizes may differ anyway).
  EPCHECK(epNetRegisterWindow(comm, st->buf.local, l.total, &rm->llWin));
  EPCHECK(epNetRegisterWindow(comm, rm->mirror, mirrorBytes, &rm->mirrorWin));
  EPCHECK(epNetRegisterWindow(comm, rm->sig, sigBytes(R), &rm->sigWin));
  ep::ll::RemoteArgs& a = rm->args;
  a.on = 1;
  a.R = R;
  a.mirrorOf = rm->mirrorOf;
  a.sig = rm->sig;
  a.shipCtr = rm->shipCtr;
  a.mirrorStride = l.total;
  a.llWin = rm->llWin;
  a.mirrorWin = rm->mirrorWin;
  a.sigWin = rm->sigWin;
  a.nCh = comm->net->nLlChannels;
  a.chBase = comm->net->nChannels - comm->net->nLlChannels;
  EPCHECK(epNetGetDevice(comm, &a.net));
  EP_USAGE_CHECK(a.nCh >= 1, "LL: the network was set up without LL channels");
  EP_INFO(EP_LOG_LL | EP_LOG_NET,
          "LL: %d peers on other nodes through the %s transport: %zu bytes of mirrors, channels [%d, %d)",
          rm->nRemote, comm->net->backend->name(), mirrorBytes, a.chBase, a.chBase + a.nCh);
  return epSuccess;
}

void epLlRemoteFree(epComm* comm, epLlState* st) {
  epLlRemote* rm = st->remote;
  if (rm == nullptr) return;
  if (comm->cudaDev >= 0) (void)cudaSetDevice(comm->cudaDev);
  releaseWindow(comm, &rm->sigWin);
  releaseWindow(comm, &rm->mirrorWin);
  releaseWindow(comm, &rm->llWin);
  if (rm->devPeer) (void)cudaFree(rm->devPeer);
  if (rm->mirrorOf) (void)cudaFree(rm->mirrorOf);
  if (rm->shipCtr) (void)cudaFree(rm->shipCtr);
  if (rm->sig) (void)cudaFree(rm->sig);
  if (rm->mirror) (void)cudaFree(rm->mirror);
  comm->deviceBytes -= rm->bytes;
  delete rm;
  st->remote = nullptr;
}

epResult_t epLlRemoteDrain(epComm* comm) { return epNetDrain(comm); }

epResult_t epLlRemoteZero(epComm* comm, epLlState* st) {
  epLlRemote* rm = st->remote;
  const ep::ll::Layout& l = st->layout;
  CUDACHECK(cudaSetDevice(comm->cudaDev));
  CUDACHECK(cudaMemset(rm->sig, 0, sigBytes(comm->nranks)));
  CUDACHECK(cudaMemset(rm->shipCtr, 0, 2 * sizeof(unsigned)));
  // The mirrors' headers would otherwise keep epochs of before the clean, which the
  // restarted epochs reach again: ship them zeroed, as the receivers' own are.
  for (int k = 0; k < rm->nRemote; k++)
    for (int b = 0; b < 2; b++)
      CUDACHECK(cudaMemset(rm->mirror + (size_t)k * l.total + l.sigOff(b), 0, l.ctrlBytes));
  return epSuccess;
}
