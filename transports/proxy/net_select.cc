/*************************************************************************
 * epcomm: network backend selection (see net_select.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "transports/proxy/net_select.h"

const char* epNetKindName(epNetKind k) {
  switch (k) {
    case EP_NET_KIND_IB: return "ib";
    case EP_NET_KIND_EMULATED: return "emulated";
    default: return "none";
  }
}

epResult_t epNetSelect(const epNetSelectInput& in, epNetKind* out, std::string* msg) {
  *out = EP_NET_KIND_NONE;
  const bool virtualNodes = in.emulateNodes > 1;
  if (!in.requested.empty() && in.requested != "ib" && in.requested != "emulated") {
    *msg = "EP_NET='" + in.requested + "' is not one of ib, emulated (or unset for auto)";
    return epInvalidArgument;
  }
  if (in.requested == "emulated" || (in.requested.empty() && virtualNodes)) {
    if (in.nHosts > 1) {
      *msg = "EP_NET=emulated (or EP_EMULATE_NODES>1) needs every rank on one host, but the ranks span " +
             std::to_string(in.nHosts) + " hosts: unset EP_NET/EP_EMULATE_NODES to use the NICs";
      return epInvalidUsage;
    }
    *out = EP_NET_KIND_EMULATED;
    return epSuccess;
  }
  if (virtualNodes) {  // requested == "ib"
    *msg = "EP_EMULATE_NODES=" + std::to_string(in.emulateNodes) +
           " makes virtual nodes, which talk only through the emulated transport, but EP_NET=ib was requested: "
           "set EP_NET=emulated or unset EP_EMULATE_NODES";
    return epInvalidUsage;
  }
  if (in.ibAvailable) {
    *out = EP_NET_KIND_IB;
    return epSuccess;
  }
  if (in.requested == "ib") {
    *msg = "EP_NET=ib but no usable RDMA device: " + in.ibWhy;
  } else {
    *msg = "internode traffic needs an RDMA NIC and none is usable (" + in.ibWhy +
           "); set EP_NET=emulated (all ranks on one host, with EP_EMULATE_NODES) to run it over peer copies";
  }
  return epNotSupported;
}
