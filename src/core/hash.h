/*************************************************************************
 * epcomm: small non-cryptographic hashes (ids, host identity, config checks).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_HASH_H_
#define EP_HASH_H_

#include <cstddef>
#include <cstdint>

/* FNV-1a over bytes; `seed` chains several buffers. */
inline uint64_t epHashBytes(const void* data, size_t n, uint64_t seed = 0xcbf29ce484222325ull) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/* splitmix64 finaliser: spreads the bits of a counter or a weak hash. */
inline uint64_t epHashMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

#ifdef __CUDACC__
#define EP_HASH_HD __host__ __device__ __forceinline__
#else
#define EP_HASH_HD inline
#endif
/* A 32-bit avalanche mix (lowbias32), on the host and in kernels alike:
 * spreads tokens over EPLB replicas, makes test patterns. */
EP_HASH_HD uint32_t epHashMix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

/* Identity of the physical host: hostname plus the kernel boot id, so that two
 * containers sharing a hostname on different machines do not collide, and
 * EP_HOSTID (if set) to override it. */
uint64_t epHostHash();

/* Identity of this process, random per process: "same process" is decided by
 * it, not by the pid, which containers with their own pid namespace on one
 * host may share (a peer's raw pointer must never be taken for a local one). */
uint64_t epProcessToken();

#endif  // EP_HASH_H_
