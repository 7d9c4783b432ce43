/*************************************************************************
 * epcomm tests: counter-based random numbers.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Every value is a pure function of (seed, stream, rank, index), so any rank
 * can regenerate any other rank's routing and token rows on the host without
 * exchanging data: that is how the GPU suites and the perf binaries predict
 * what each rank must receive. splitmix64's finalizer gives well-mixed bits
 * for consecutive counters.
 *************************************************************************/
#ifndef EP_TESTS_RNG_H_
#define EP_TESTS_RNG_H_

#include <cstdint>

/* Independent streams of one seed (never renumber: changes every data set). */
enum epTestRngStream : uint64_t {
  EP_RNG_ROUTING = 1,  /* top-k scores */
  EP_RNG_MASK = 2,     /* -1 masks */
  EP_RNG_WEIGHTS = 3,  /* top-k weights */
  EP_RNG_ROWS = 4,     /* token rows */
  EP_RNG_SCALES = 5,   /* FP8 scales */
  EP_RNG_COMBINE = 6,  /* rows fed to combine */
  EP_RNG_BIAS = 7,     /* combine biases */
  EP_RNG_EXPERTS = 8,  /* expert permutations (zipf popularity, hot expert) */
  EP_RNG_USER = 64     /* first stream free for callers */
};

static inline uint64_t epTestMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* A keyed counter: bits(i) is the i-th 64-bit value of (seed, stream, rank). */
struct epTestRng {
  uint64_t key;
  epTestRng(uint64_t seed, uint64_t stream, uint64_t rank)
      : key(epTestMix64(epTestMix64(epTestMix64(seed) ^ stream) ^ (rank + 0x51ed27ull))) {}
  uint64_t bits(uint64_t i) const { return epTestMix64(key ^ epTestMix64(i)); }
  /* Uniform in [0, 1) with 53 random bits. */
  double uniform(uint64_t i) const { return (double)(bits(i) >> 11) * (1.0 / 9007199254740992.0); }
  /* Uniform in (0, 1): safe for log(). */
  double uniformOpen(uint64_t i) const { return ((double)(bits(i) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  /* Uniform integer in [0, n). */
  uint32_t below(uint64_t i, uint32_t n) const { return (uint32_t)(((bits(i) >> 32) * (uint64_t)n) >> 32); }
};

#endif  // EP_TESTS_RNG_H_
