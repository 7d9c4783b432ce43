/*************************************************************************
 * epcomm: emulated-RDMA signal kernel (see emu_signal.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/emulated/emu_signal.h"

#include "transports/proxy/net_desc.h"

namespace {

// Signals of one batch are applied in batch order by one thread: the order
// in which the proxy observed their data land, i.e. posting order per
// (peer, channel). The data they cover completed before this launch (the
// proxy saw the copy's event), so the release atomic only has to make the
// word visible; the fence keeps later batches behind it.
__global__ void applySignals(epEmuSignalBatch b) {
  if (threadIdx.x != 0) return;
  for (int i = 0; i < b.n; i++) {
    unsigned long long* w = reinterpret_cast<unsigned long long*>(b.s[i].word);
    __threadfence_system();
    if (b.s[i].op == EP_NET_SIG_SET)
      atomicExch_system(w, (unsigned long long)b.s[i].value);
    else
      atomicAdd_system(w, (unsigned long long)b.s[i].value);
  }
  __threadfence_system();
}

}  // namespace

cudaError_t epEmuLaunchSignals(const epEmuSignalBatch& batch, cudaStream_t stream) {
  if (batch.n <= 0) return cudaSuccess;
  applySignals<<<1, 32, 0, stream>>>(batch);
  return cudaGetLastError();
}

cudaError_t epEmuPreloadSignalKernel() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, applySignals);
}
