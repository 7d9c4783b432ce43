/*************************************************************************
 * epcomm tests: a fake verbs NIC (no hardware, no rdma-core calls).
 *
 * Implements the epIbvFns table over an in-process "fabric": devices and
 * ports as configured by the test, PDs, MRs with keys that are checked on
 * every access, CQs, RC QPs whose state transitions are validated and whose
 * work requests are executed against real memory of this process when the
 * owner polls its CQ:
 *   - RDMA WRITE copies (with adaptive routing on, the placement of plain
 *     writes is delayed and may land after later operations, as on a fabric
 *     that sprays packets; a requester completion or a WRITE_WITH_IMM at the
 *     responder first places every earlier write of the QP, as on real RC);
 *   - FETCH_AND_ADD adds atomically; inline writes copy at once;
 *   - WRITE_WITH_IMM consumes a receive at the peer QP and queues a
 *     RECV_RDMA_WITH_IMM completion on the peer's CQ.
 * A post beyond the QP's send-queue size fails with ENOMEM and is counted:
 * the transport's in-flight limit must make that impossible.
 *************************************************************************/
#ifndef EP_TESTS_IB_FAKE_VERBS_H_
#define EP_TESTS_IB_FAKE_VERBS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "transports/ib/ibvwrap.h"

namespace fakeib {

struct PortCfg {
  int state = IBV_PORT_ACTIVE;
  int linkLayer = IBV_LINK_LAYER_INFINIBAND;
  int mtu = IBV_MTU_4096;
  uint16_t lid = 1;
  std::vector<std::array<uint8_t, 16>> gids;  // GID table
  uint32_t maxMsgSz = 1u << 30;
};

struct DevCfg {
  std::string name;
  std::vector<PortCfg> ports;
  int maxQpWr = 16384;
  int maxCqe = 1 << 20;
  int maxRdAtom = 16;
};

struct Stats {
  uint64_t posts = 0;           // work requests accepted
  uint64_t sqOverflows = 0;     // posts refused because the send queue was full
  uint64_t badTransitions = 0;  // modify_qp calls out of order or with missing attributes
  uint64_t accessErrors = 0;    // key or bounds violations
  int maxOutstanding = 0;       // largest send-queue occupancy seen on any QP
  uint64_t reorderedPlacements = 0; // AR: writes placed after a later operation executed
  uint64_t rnrStalls = 0;       // WRITE_WITH_IMM waiting for a receive at the peer (infinite RNR retry)
};

/* Resets the fabric: devices, objects, statistics. */
void reset(const std::vector<DevCfg>& devs);
/* Adaptive-routing placement model on/off. */
void setAdaptiveRouting(bool on);
/* Behaviour of ibv_reg_dmabuf_mr: symbol absent, or the errno it fails with for fd -1. */
void setDmabuf(bool symbolPresent, int errnoForBadFd);
/* The table (valid until the next reset). */
const epIbvFns* table();
/* reset({d}), then opens that one device through the table (the device list
 * is freed again): the usual start of a single-NIC test. */
ibv_context* openOnly(const DevCfg& d);
/* One device `name` with one default (active InfiniBand) port. */
DevCfg singlePortNic(const char* name = "mlx5_0");
Stats stats();
/* Recorded modify_qp calls of the QP with number qpn: (mask, attr). */
std::vector<std::pair<int, ibv_qp_attr>> modifies(uint32_t qpn);
/* All QP numbers created so far. */
std::vector<uint32_t> qpns();

/* Builders. */
std::array<uint8_t, 16> gidV4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);
std::array<uint8_t, 16> gidLinkLocal(uint8_t last);

}  // namespace fakeib

#endif  // EP_TESTS_IB_FAKE_VERBS_H_
