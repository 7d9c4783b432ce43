/*************************************************************************
 * epcomm: how a public C entry point is defined.
 * SPDX-License-Identifier: Apache-2.0
 *
 * The library is compiled with -fvisibility=hidden and linked with a version
 * script that exports `ep*` only, so a public call must be both extern "C"
 * (an unmangled ep* name) and of default visibility:
 *
 *   EP_API epResult_t epCommCount(epComm_t comm, int* count) { ... }
 *
 * Every entry point validates its arguments (EP_PTR_CHECK / EP_ARG_CHECK) and,
 * once the comm is known good (epCommCheck), installs EP_COMM_SCOPE(comm) so
 * that log lines and the last-error text go to that communicator.
 *************************************************************************/
#ifndef EP_API_H_
#define EP_API_H_

#define EP_API extern "C" __attribute__((visibility("default")))

#endif  // EP_API_H_
