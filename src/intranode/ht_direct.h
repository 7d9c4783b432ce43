/*************************************************************************
 * epcomm: HT intranode direct path (registered buffers), host side.
 *
 * Dispatch: when every output of a rank lies in memory registered with
 * epCommRegister, senders write each token's row, scales and metadata
 * straight to its final row in the receiver's outputs (no ring, no copy on
 * the receiver). Combine: when x (and the top-k weights) are registered, the
 * token's origin rank reads the rows from the peers' inputs and reduces them
 * (pull). EP_HT_DIRECT=0 disables both (ring path for everything).
 * Every rank must take the same path in a call; a mismatch is reported by
 * the kernels (EP_DEVERR_PATH_MISMATCH) on every rank, nothing is moved.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_INTRANODE_HT_DIRECT_H_
#define EP_INTRANODE_HT_DIRECT_H_

#include <cstdint>

#include <cuda_runtime_api.h>

#include "epcomm.h"
#include "intranode/ht_args.h"
#include "intranode/ht_types.h"

struct epComm;
struct epHtState;
struct epHtHandle;

/* EP_HT_DIRECT (default 1): 0 disables the direct path. */
bool epHtDirectEnabled();

/* 1 if the comm's last call of `kind` (EP_HT_KIND_*) took the direct path,
 * 0 if the ring path, -1 without HT state. For tests and diagnostics. */
int epHtLastCallDirect(epComm* comm, int kind);

/* Fills `rec` with the registered (slot, offset) of every dispatch output and
 * returns true when the direct path can serve this call on this rank. */
bool epHtDispatchDirectRecord(epComm* comm, const epDispatchOutput_t* out, const epHtRowShape& shape, int K,
                              epHtDirectRec* rec);
/* The same for combine's x ([rows x hidden] BF16) and top-k weights. */
bool epHtCombineDirectRecord(epComm* comm, const epCombineInput_t* in, int K, int hostNumRecv, epHtDirectRec* rec);

epResult_t epHtLaunchDispatchDirect(epComm* comm, epHtState* st, const epDispatchInput_t* in,
                                    const epDispatchOutput_t* out, epHtHandle* h, const epHtRowShape& shape,
                                    const epHtDirectRec& rec, bool afterNotify, cudaStream_t stream);
epResult_t epHtLaunchCombineDirect(epComm* comm, epHtState* st, const epCombineInput_t* in,
                                   const epCombineOutput_t* out, epHtHandle* h, int K, const epHtDirectRec& rec,
                                   cudaStream_t stream);

#endif  // EP_INTRANODE_HT_DIRECT_H_
