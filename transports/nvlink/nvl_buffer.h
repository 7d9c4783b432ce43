/*************************************************************************
 * epcomm: symmetric NVLink buffers.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every rank allocates `bytes` of device memory and maps the buffers of the
 * ranks it reaches over NVLink/P2P (same node, or same virtual node when
 * nodes are emulated). Handles travel over the bootstrap: CUDA IPC handles
 * between processes; plain pointers plus peer access within one process
 * (epCommInitAll). Collective over all ranks of the communicator. Allocated
 * once (never per call) and freed by epNvlBufferFree at destroy.
 *************************************************************************/
#ifndef EP_TRANSPORT_NVL_BUFFER_H_
#define EP_TRANSPORT_NVL_BUFFER_H_

#include <cstddef>
#include <vector>

#include "epcomm.h"

struct epComm;

struct epNvlBuffer {
  void* local = nullptr;          /* this rank's buffer */
  size_t bytes = 0;
  std::vector<void*> peer;        /* [nranks] mapped peer buffer; nullptr if not NVLink-reachable */
  std::vector<char> ipcOpened;    /* [nranks] 1 where peer[r] came from cudaIpcOpenMemHandle */
  void** devPeer = nullptr;       /* device copy of `peer` (nranks entries) for kernels */
};

/* Collective. Zero-fills the buffer before the closing barrier. */
epResult_t epNvlBufferAlloc(epComm* comm, size_t bytes, epNvlBuffer* buf);
/* Local. The caller barriers first (epCommDestroy does), so that no peer still
 * writes into this memory. Safe on a partly built buffer. */
epResult_t epNvlBufferFree(epComm* comm, epNvlBuffer* buf);

#endif  // EP_TRANSPORT_NVL_BUFFER_H_
