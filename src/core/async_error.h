/*************************************************************************
 * epcomm: turning a device-recorded error (epDeviceStatus) into an
 * epResult_t and a message that names the token / expert / channel / peer.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_ASYNC_ERROR_H_
#define EP_ASYNC_ERROR_H_

#include <cstddef>

#include "epcomm.h"
#include "device/status.h"

/* Writes a message for `s` into msg[n] and returns the matching code
 * (epSuccess for EP_DEVERR_NONE). */
epResult_t epDeviceStatusDescribe(const epDeviceStatus& s, char* msg, size_t n);

#endif  // EP_ASYNC_ERROR_H_
