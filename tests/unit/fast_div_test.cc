/*************************************************************************
 * epcomm unit tests: ep::dev::FastDiv (src/device/fast_div.h) against the
 * division operator, for every divisor the LL kernels use (1..4096 and some
 * large ones) over dense small numerators, random ones and the edges.
 *************************************************************************/
#include <gtest/gtest.h>

#include <random>

#include "device/fast_div.h"

namespace {

using ep::dev::FastDiv;

void checkDivisor(uint32_t d, std::mt19937& rng) {
  const FastDiv f(d);
  auto check = [&](uint32_t n) {
    ASSERT_EQ(f.div(n), n / d) << "n=" << n << " d=" << d;
    ASSERT_EQ(f.mod(n), n % d) << "n=" << n << " d=" << d;
  };
  for (uint32_t n = 0; n < 70000; n++) check(n);
  for (uint32_t k = 1; k < 64; k++) {  // around multiples of d up high
    const uint64_t base = (uint64_t)(0xffffffffu / d - k) * d;
    for (int e = -2; e <= 2; e++) check((uint32_t)(base + e));
  }
  for (uint32_t n : {0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu}) check(n);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 2000; i++) check(any(rng));
}

TEST(FastDiv, ExactForSmallDivisors) {
  std::mt19937 rng(7);
  for (uint32_t d = 1; d <= 4096; d++) {
    checkDivisor(d, rng);
    if (HasFatalFailure()) return;
  }
}

TEST(FastDiv, ExactForLargeDivisors) {
  std::mt19937 rng(11);
  for (uint32_t d : {65535u, 65536u, 65537u, 1000003u, 0x7fffffffu, 0x80000000u, 0xfffffffbu, 0xffffffffu}) {
    checkDivisor(d, rng);
    if (HasFatalFailure()) return;
  }
}

TEST(FastDiv, ZeroDivisorIsTreatedAsOne) {
  const FastDiv f(0);
  EXPECT_EQ(f.d, 1u);
  EXPECT_EQ(f.div(12345u), 12345u);
}

}  // namespace
