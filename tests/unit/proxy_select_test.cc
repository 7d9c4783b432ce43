/*************************************************************************
 * epcomm unit tests: network backend selection and window bounds checks.
 *************************************************************************/
#include <gtest/gtest.h>

#include "transports/proxy/net_select.h"
#include "transports/proxy/net_window.h"

namespace {

epNetKind pick(const char* req, int emu, int hosts, bool ib, epResult_t* res, std::string* msg) {
  epNetSelectInput in;
  in.requested = req;
  in.emulateNodes = emu;
  in.nHosts = hosts;
  in.ibAvailable = ib;
  in.ibWhy = "libibverbs.so.1 not found";
  epNetKind k;
  *res = epNetSelect(in, &k, msg);
  return k;
}

TEST(ProxySelect, Rules) {
  epResult_t r;
  std::string m;
  EXPECT_EQ(pick("", 1, 2, true, &r, &m), EP_NET_KIND_IB);
  EXPECT_EQ(r, epSuccess);
  EXPECT_EQ(pick("", 2, 1, true, &r, &m), EP_NET_KIND_EMULATED) << "virtual nodes use emulation even with a NIC";
  EXPECT_EQ(pick("emulated", 1, 1, true, &r, &m), EP_NET_KIND_EMULATED);
  EXPECT_EQ(pick("ib", 1, 2, true, &r, &m), EP_NET_KIND_IB);
}

TEST(ProxySelect, NoNicNamesTheKnob) {
  epResult_t r;
  std::string m;
  pick("", 1, 2, false, &r, &m);
  EXPECT_EQ(r, epNotSupported);
  EXPECT_NE(m.find("EP_NET"), std::string::npos) << m;
  EXPECT_NE(m.find("libibverbs"), std::string::npos) << "the reason is lost: " << m;
  pick("ib", 1, 2, false, &r, &m);
  EXPECT_EQ(r, epNotSupported);
  EXPECT_NE(m.find("EP_NET=ib"), std::string::npos) << m;
}

TEST(ProxySelect, Misuse) {
  epResult_t r;
  std::string m;
  pick("ib", 2, 1, true, &r, &m);
  EXPECT_EQ(r, epInvalidUsage);
  EXPECT_NE(m.find("EP_EMULATE_NODES"), std::string::npos) << m;
  pick("emulated", 1, 2, true, &r, &m);
  EXPECT_EQ(r, epInvalidUsage);
  pick("rdma", 1, 1, true, &r, &m);
  EXPECT_EQ(r, epInvalidArgument);
}

TEST(ProxyWindow, BoundsAndLiveness) {
  epNetWindowTable t(2);
  std::vector<char> a(100), b(64);
  EXPECT_EQ(t.freeId(), 0);
  t.publish(0, a.data(), 100, false, {100, 50});
  t.publish(1, b.data(), 64, false, {64, 16});
  EXPECT_EQ(t.count(), 2);
  epNetOpFields f{};
  f.op = EP_NET_OP_PUT;
  f.peer = 1;
  f.srcWin = 0;
  f.dstWin = 0;
  f.bytes = 50;
  std::string why;
  EXPECT_EQ(t.check(f, &why), EP_NET_DESC_OK) << why;
  f.dstOff = 1;  // peer 1 registered only 50 bytes
  EXPECT_EQ(t.check(f, &why), EP_NET_DESC_BAD_OFFSET);
  f.dstOff = 0;
  f.srcOff = 51;  // local window is 100 bytes
  EXPECT_EQ(t.check(f, &why), EP_NET_DESC_BAD_OFFSET);
  f.srcOff = UINT64_MAX - 10;  // overflow must not wrap into "fits"
  f.bytes = 20;
  EXPECT_NE(t.check(f, &why), EP_NET_DESC_OK);
  f = epNetOpFields{};
  f.op = EP_NET_OP_SIGNAL;
  f.peer = 1;
  f.sigWin = 1;
  f.sigSlot = 1;  // bytes 8..15 of 16: fits
  EXPECT_EQ(t.check(f, &why), EP_NET_DESC_OK) << why;
  f.sigSlot = 2;
  EXPECT_EQ(t.check(f, &why), EP_NET_DESC_BAD_OFFSET);
  t.retire(1);
  f.sigSlot = 0;
  EXPECT_EQ(t.check(f, &why), EP_NET_DESC_BAD_WINDOW) << "retired window still usable";
  EXPECT_EQ(t.freeId(), 1);
}

}  // namespace
