/*************************************************************************
 * epcomm: small definitions shared by the EPLB sources (host and device).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_EPLB_INTERNAL_H_
#define EP_EPLB_INTERNAL_H_

/* Public entry point: unmangled and exported (see src/core/api.h). */
#ifndef EP_API
#define EP_API extern "C" __attribute__((visibility("default")))
#endif

#endif  // EP_EPLB_INTERNAL_H_
