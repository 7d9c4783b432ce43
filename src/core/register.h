/*************************************************************************
 * epcomm: user-buffer registration (epCommRegister / epCommDeregister).
 * SPDX-License-Identifier: Apache-2.0
 *
 * A registration makes one device region of every rank addressable by its
 * NVLink peers, once, so that the data-path kernels can write (dispatch) or
 * read (combine) the caller's own buffers directly instead of going through
 * the symmetric buffer's rings. Collective and ordered like NCCL's
 * ncclCommRegister: every rank registers (and deregisters) the same sequence
 * of regions, so registration i gets the same slot on every rank.
 *
 * Per rank: the allocation that holds the region is exported with CUDA IPC
 * (cudaIpcGetMemHandle on its base, found with cuMemGetAddressRange), the
 * handles travel over the bootstrap, and every peer opens each peer
 * allocation once (mappings are shared by the registrations inside one
 * allocation and closed with the last of them). A device table
 * [EP_REG_MAX_SLOTS][nranks] holds, for each slot, the address of every
 * rank's registered region as seen from this rank; kernels translate a
 * peer's (slot, offset) into a pointer with it. Nothing happens per call.
 *************************************************************************/
#ifndef EP_CORE_REGISTER_H_
#define EP_CORE_REGISTER_H_

#include <cstddef>
#include <cstdint>

#include "epcomm.h"

struct epComm;

#define EP_REG_MAX_SLOTS 256

/* Slot and byte offset of [ptr, ptr + bytes) inside a registration of this
 * rank. NULL ptr: never registered. Returns false when no registration holds
 * the whole range. */
bool epRegLookup(epComm* comm, const void* ptr, size_t bytes, int* slot, long long* offset);

/* Bytes from ptr to the end of the registration holding it (0: none). */
size_t epRegBytesAfter(epComm* comm, const void* ptr);

/* Device table [EP_REG_MAX_SLOTS][nranks]: entry (slot, r) is rank r's
 * registered region of that slot as mapped in this process (NULL: none).
 * NULL before the first registration. */
char* const* epRegDevTable(epComm* comm);

/* Number of live registrations of this rank. */
int epRegCount(epComm* comm);

#endif  // EP_CORE_REGISTER_H_
