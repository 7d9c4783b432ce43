/*************************************************************************
 * epcomm unit tests: network descriptor encoding, decoding and validation.
 *************************************************************************/
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "transports/proxy/net_desc.h"
#include "transports/proxy/net_ring.h"

namespace {

epNetOpFields randomFields(std::mt19937_64& rng) {
  epNetOpFields f{};
  f.op = 1 + rng() % 3;
  f.sigOp = rng() % 2;
  f.srcWin = rng() % 256;
  f.dstWin = rng() % 256;
  f.sigWin = rng() % 256;
  f.peer = (int32_t)(rng() % 100000);
  f.srcOff = rng() & EP_NET_MAX_OFFSET;
  f.dstOff = rng() & EP_NET_MAX_OFFSET;
  f.bytes = (uint32_t)rng();
  f.sigSlot = (uint32_t)rng();
  f.sigValue = (int32_t)rng();
  return f;
}

void expectSame(const epNetOpFields& a, const epNetOpFields& b) {
  EXPECT_EQ(a.op, b.op);
  EXPECT_EQ(a.sigOp, b.sigOp);
  EXPECT_EQ(a.srcWin, b.srcWin);
  EXPECT_EQ(a.dstWin, b.dstWin);
  EXPECT_EQ(a.sigWin, b.sigWin);
  EXPECT_EQ(a.peer, b.peer);
  EXPECT_EQ(a.srcOff, b.srcOff);
  EXPECT_EQ(a.dstOff, b.dstOff);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.sigSlot, b.sigSlot);
  EXPECT_EQ(a.sigValue, b.sigValue);
}

TEST(ProxyDesc, RoundTripRandom) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; i++) {
    epNetOpFields f = randomFields(rng);
    epNetOpFields g = epNetDecode(epNetEncode(f));
    expectSame(f, g);
    if (::testing::Test::HasFailure()) break;
  }
}

TEST(ProxyDesc, ExtremeValuesSurvive) {
  epNetOpFields f{};
  f.op = EP_NET_OP_PUT_SIGNAL;
  f.sigOp = EP_NET_SIG_SET;
  f.srcWin = 255;
  f.dstWin = 254;
  f.sigWin = 253;
  f.peer = 0x7fffffff;
  f.srcOff = EP_NET_MAX_OFFSET;
  f.dstOff = EP_NET_MAX_OFFSET - 1;
  f.bytes = 0xffffffffu;
  f.sigSlot = 0xffffffffu;
  f.sigValue = -1;
  expectSame(f, epNetDecode(epNetEncode(f)));
  f.sigValue = INT32_MIN;
  f.sigSlot = 0x10000;  // crosses the 16-bit split of the slot field
  expectSame(f, epNetDecode(epNetEncode(f)));
}

TEST(ProxyDesc, KnownBitLayout) {
  // The wire layout is what a future device-side backend decodes: pin it.
  epNetOpFields f{};
  f.op = EP_NET_OP_SIGNAL;
  f.sigOp = EP_NET_SIG_SET;
  f.srcWin = 0x12;
  f.dstWin = 0x34;
  f.sigWin = 0x56;
  f.peer = 0x789a;
  f.srcOff = 0x1111;
  f.dstOff = 0x2222;
  f.bytes = 0x3333;
  f.sigSlot = 0xabcd1234;
  f.sigValue = 0x44;
  epNetDesc d = epNetEncode(f);
  EXPECT_EQ(d.w[0], 0x0000789a56341213ull);
  EXPECT_EQ(d.w[1], 0x1234000000001111ull);
  EXPECT_EQ(d.w[2], 0xabcd000000002222ull);
  EXPECT_EQ(d.w[3], 0x0000004400003333ull);
}

TEST(ProxyDesc, ZeroedSlotIsNotWork) {
  epNetDesc d;
  memset(&d, 0, sizeof(d));
  EXPECT_EQ(epNetDecode(d).op, (uint32_t)EP_NET_OP_INVALID);
  EXPECT_EQ(epNetValidate(epNetDecode(d), 8, 4), EP_NET_DESC_BAD_OP);
}

TEST(ProxyDesc, Validation) {
  epNetOpFields f{};
  f.op = EP_NET_OP_PUT;
  f.peer = 3;
  f.srcWin = 1;
  f.dstWin = 1;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_OK);
  f.peer = 4;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_BAD_PEER);
  f.peer = -1;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_BAD_PEER);
  f.peer = 0;
  f.dstWin = 2;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_BAD_WINDOW);
  f.dstWin = 0;
  f.srcOff = EP_NET_MAX_OFFSET + 1;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_BAD_OFFSET);
  f.srcOff = 0;
  // A plain put ignores the signal fields; a signal checks them.
  f.sigWin = 200;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_OK);
  f.op = EP_NET_OP_SIGNAL;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_BAD_WINDOW);
  f.sigWin = 1;
  f.sigOp = 7;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_BAD_SIGOP);
  f.op = 9;
  EXPECT_EQ(epNetValidate(f, 4, 2), EP_NET_DESC_BAD_OP);
}

TEST(ProxyDesc, SlotLayout) {
  EXPECT_EQ(sizeof(epNetDesc), 32u);
  EXPECT_EQ(sizeof(epNetSlot), 64u);
  EXPECT_EQ(offsetof(epNetSlot, seq), 32u);
  EXPECT_EQ(offsetof(epNetRingCtl, error), 64u);  // released and error on separate lines
}

}  // namespace
