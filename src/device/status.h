/*************************************************************************
 * epcomm: device-side error reporting shared by every kernel family.
 * SPDX-License-Identifier: Apache-2.0
 *
 * One epDeviceStatus per communicator lives in host-mapped pinned memory.
 * A kernel that sees bad input or gives up waiting records the first error
 * (atomicCAS on `code`) and bails out without writing out of bounds. The host
 * reads it with epCommGetAsyncError() once the stream has completed, or
 * directly in the host-synchronising calls.
 *************************************************************************/
#ifndef EP_DEVICE_STATUS_H_
#define EP_DEVICE_STATUS_H_

#include <cstdint>

enum epDeviceErrorKind : int {
  EP_DEVERR_NONE = 0,
  EP_DEVERR_BAD_EXPERT_ID = 1,     /* value = the id, a = token, b = top-k slot */
  EP_DEVERR_CAPACITY_OVERFLOW = 2, /* value = rows needed, a = capacity */
  EP_DEVERR_TIMEOUT = 3,           /* a = channel, b = peer rank, value = what was awaited */
  EP_DEVERR_BAD_HANDLE = 4,
  EP_DEVERR_NODE_LIMIT = 5,        /* value = nodes used by token a, b = limit */
  EP_DEVERR_PATH_MISMATCH = 6,     /* HT: rank a took the registered (direct) path = value, rank b the other one */
  EP_DEVERR_BAD_REGISTRATION = 7,  /* HT direct: rank a's registered region (slot b) misses row value */
  EP_DEVERR_LL_MODE_MISMATCH = 8   /* LL dispatch: rank a's call mode (value & 0xff) differs from rank b's
                                      ((value >> 8) & 0xff); bit 16 set: a combine (mode bits 1 reduced, 4 lines) */
};

struct epDeviceStatus {
  int kind;          /* epDeviceErrorKind; 0 while no error */
  int a, b;          /* context, see the kinds above */
  long long value;
  int family;        /* 1 = HT, 2 = LL, 3 = internode, 4 = layout/eplb */
};

#endif  // EP_DEVICE_STATUS_H_
