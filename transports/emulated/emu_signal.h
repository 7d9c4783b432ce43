/*************************************************************************
 * epcomm: applying emulated-RDMA signals on the GPU (see emu_signal.cu).
 * SPDX-License-Identifier: Apache-2.0
 *
 * The host cannot do an atomic add on a peer GPU's memory, so the emulated
 * backend launches a one-warp kernel that applies a batch of signals with
 * system-scope atomics through the peer mappings (NVLink/P2P).
 *************************************************************************/
#ifndef EP_TRANSPORT_EMU_SIGNAL_H_
#define EP_TRANSPORT_EMU_SIGNAL_H_

#include <cstdint>

#include <cuda_runtime.h>

#define EP_EMU_SIGNAL_BATCH 32

struct epEmuSignal {
  uint64_t* word; /* peer address (mapped) */
  int64_t value;
  int32_t op;     /* epNetSigOp */
  int32_t pad;
};

struct epEmuSignalBatch {
  int n;
  epEmuSignal s[EP_EMU_SIGNAL_BATCH];
};

/* Enqueues the batch on `stream` (kernel parameters: no host buffer to keep alive). */
cudaError_t epEmuLaunchSignals(const epEmuSignalBatch& batch, cudaStream_t stream);

/* Loads the signal kernel now. With CUDA lazy loading (the default), the
 * first launch would load the module, and a module load waits for running
 * kernels: a kernel that spins on a signal this kernel must apply would
 * deadlock the device. Called once at backend creation. */
cudaError_t epEmuPreloadSignalKernel();

#endif  // EP_TRANSPORT_EMU_SIGNAL_H_
