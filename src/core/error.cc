/*************************************************************************
 * epcomm: error strings, last-error text, version.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/api.h"
#include "core/checks.h"
#include "core/comm.h"

EP_API epResult_t epGetVersion(int* version) {
  EP_PTR_CHECK(version, "epGetVersion");
  *version = EP_VERSION_CODE;
  return epSuccess;
}

EP_API const char* epGetErrorString(epResult_t result) {
  switch (result) {
    case epSuccess: return "no error";
    case epCudaError: return "unhandled CUDA error (run with EP_DEBUG=WARN for details)";
    case epSystemError: return "unhandled system error (socket, file or library load; run with EP_DEBUG=WARN for details)";
    case epInternalError: return "internal error - please report this issue to the epcomm developers";
    case epInvalidArgument: return "invalid argument (run with EP_DEBUG=WARN for details)";
    case epInvalidUsage: return "invalid usage (run with EP_DEBUG=WARN for details)";
    case epRemoteError: return "remote process exited, aborted or reported an error";
    case epTimeout: return "timeout: a peer or a device wait did not complete in time";
    case epInProgress: return "operation in progress";
    case epNotSupported: return "not supported on this system or build";
    default: return "unknown result code";
  }
}

EP_API const char* epGetLastError(epComm_t comm) {
  if (comm != nullptr && comm->magic == EP_COMM_MAGIC) return comm->lastError;
  return epThreadLastError();
}
