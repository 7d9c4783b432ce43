/*************************************************************************
 * epcomm: which network backend a communicator uses. Pure function.
 * SPDX-License-Identifier: Apache-2.0
 *
 *   EP_NET / config.net   EP_EMULATE_NODES>1   result
 *   ""  (auto)            no                   ib if a usable NIC, else epNotSupported naming EP_NET
 *   ""  (auto)            yes                  emulated
 *   "emulated"            any                  emulated (all ranks must share one host)
 *   "ib"                  no                   ib, or epNotSupported with the reason
 *   "ib"                  yes                  epInvalidUsage: virtual nodes exist only over emulation
 *************************************************************************/
#ifndef EP_TRANSPORT_NET_SELECT_H_
#define EP_TRANSPORT_NET_SELECT_H_

#include <string>

#include "epcomm.h"

enum epNetKind { EP_NET_KIND_NONE = 0, EP_NET_KIND_IB = 1, EP_NET_KIND_EMULATED = 2 };

struct epNetSelectInput {
  std::string requested;   /* resolved config.net: "", "ib" or "emulated" */
  int emulateNodes = 1;    /* EP_EMULATE_NODES */
  int nHosts = 1;          /* physical hosts the ranks span */
  bool ibAvailable = false;
  std::string ibWhy;       /* why not, when !ibAvailable */
};

/* On failure, `msg` holds a message that names the knob to change. */
epResult_t epNetSelect(const epNetSelectInput& in, epNetKind* out, std::string* msg);

const char* epNetKindName(epNetKind k);

#endif  // EP_TRANSPORT_NET_SELECT_H_
