/*************************************************************************
 * epcomm: the HT dispatch handle (epHtHandle_t): the layout one notify
 * computed, reused by dispatch, cached dispatch and combine. Tagged with the
 * communicator's hash so that a handle of another communicator is refused.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_INTRANODE_HT_HANDLE_H_
#define EP_INTRANODE_HT_HANDLE_H_

#include <cstdint>

#include "epcomm.h"
#include "intranode/ht_types.h"

struct epComm;
struct epInterHandle;

#define EP_HT_HANDLE_MAGIC 0x68746831u /* "hth1" */

struct epHtHandle {
  uint32_t magic = EP_HT_HANDLE_MAGIC;
  uint64_t commHash = 0;
  int nranks = 0;
  int rank = 0;
  int cudaDev = -1;
  int maxTokens = 0;

  /* Set by the last notify. */
  bool notified = false;
  int numTokens = 0;
  int numChannels = 0;
  int numExperts = 0;
  int numTopk = 0;
  int hostNumRecv = -1; /* -1 unless the last notify synchronised with the host */

  void* devMem = nullptr;
  epHtHandleDev dev;
  epHtHostInfo* hostInfo = nullptr;    /* host-mapped */
  epHtHostInfo* hostInfoDev = nullptr; /* the same, as a device pointer */

  /* Internode (src/internode): set when the comm spans several nodes; then the
   * arrays above are unused and the layout lives here. */
  epInterHandle* inter = nullptr;
};

/* Validates a handle against the communicator it is used with. */
epResult_t epHtHandleCheck(epComm* comm, epHtHandle* h, const char* fn);

#endif  // EP_INTRANODE_HT_HANDLE_H_
