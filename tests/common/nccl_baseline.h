/*************************************************************************
 * epcomm tests: the NCCL baseline, with NCCL loaded at run time.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Nothing links NCCL: libnccl.so.2 (or the path in EP_NCCL_LIB) is opened
 * with dlopen. Rank 0's ncclUniqueId travels through the tests' out-of-band
 * exchange (oob.h). The baseline is what a user without epcomm would run for
 * the same rows: the permutation gather (device_ops.h) that builds the send
 * buffer, then a grouped ncclSend/ncclRecv alltoallv; for combine, the
 * reverse alltoallv and the per-token reduction.
 *************************************************************************/
#ifndef EP_TESTS_NCCL_BASELINE_H_
#define EP_TESTS_NCCL_BASELINE_H_

#include <cstddef>
#include <string>

#include <cuda_runtime_api.h>

#include "epcomm.h"
#include "tests/common/oob.h"

struct epTestNccl;

/* Collective. epNotSupported (with *why) when the library cannot be loaded on
 * any rank; every rank then gets the same answer, so callers can skip the
 * baseline together. */
epResult_t epTestNcclInit(epTestOob* oob, int rank, int nranks, epTestNccl** out, std::string* why);
/* "2.28.9 (/path/libnccl.so.2)" */
std::string epTestNcclDescribe(const epTestNccl* n);

/* Grouped ncclSend/ncclRecv: to peer p, sendRows[p] rows of rowBytes starting
 * at row sendOff[p] of `send`; from peer p, recvRows[p] rows into row recvOff[p]
 * of `recv`. Enqueued on `stream`. */
epResult_t epTestNcclAllToAllv(epTestNccl* n, const void* send, const int* sendRows, const int* sendOff, void* recv,
                               const int* recvRows, const int* recvOff, size_t rowBytes, cudaStream_t stream);
void epTestNcclDestroy(epTestNccl* n);

#endif  // EP_TESTS_NCCL_BASELINE_H_
