/*************************************************************************
 * epcomm: HT internode (v1) entry points, called by the public HT entry
 * points (src/intranode, src/layout) when epInterWanted(comm): the comm
 * spans more than one node (real nodes or EP_EMULATE_NODES). Same contracts
 * as include/epcomm/ht.h (sizing modes a/b/c, handles, FP8, bad input).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_INTERNODE_INTER_API_H_
#define EP_INTERNODE_INTER_API_H_

#include "epcomm.h"
#include "epcomm/ht.h"
#include "internode/inter_state.h"

epResult_t epInterHandleCreate(epComm* comm, int maxTokens, epHtHandle_t* handle);
void epInterHandleFree(epInterHandle* ih);
epResult_t epInterDispatchNotify(epComm* comm, const epDispatchInput_t* in, epHtHandle_t handle, int* numRecvTokens,
                                 int* recvCountPerExpert, cudaStream_t stream);
epResult_t epInterDispatch(epComm* comm, const epDispatchInput_t* in, const epDispatchOutput_t* out,
                           epHtHandle_t handle, cudaStream_t stream);
epResult_t epInterCombine(epComm* comm, const epCombineInput_t* in, const epCombineOutput_t* out, epHtHandle_t handle,
                          cudaStream_t stream);

#endif  // EP_INTERNODE_INTER_API_H_
