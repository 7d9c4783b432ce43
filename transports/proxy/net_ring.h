/*************************************************************************
 * epcomm: the proxy work ring (one per channel), shared by GPU producers and
 * the CPU proxy. Header usable from host C++ and CUDA.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Memory:
 *   slots[capacity]  host-pinned, mapped into the GPU (cudaHostAllocMapped):
 *                    64-byte slots = 32-byte descriptor + publish sequence
 *   ctl              host-pinned, mapped: `released` (proxy -> producers) and
 *                    `error` (proxy tells producers to stop waiting)
 *   claim            the ticket counter, in device memory for GPU producers
 *                    (host memory for host producers in tests)
 *
 * Protocol (multi-producer, single consumer, tickets t = 0, 1, 2, ...):
 *  1. claim: a producer takes ticket t only with CAS(claim, t, t+1) and only
 *     while t < released + capacity. So a ticket is only ever issued for a
 *     slot whose previous user (t - capacity) was released: OVERFLOW IS
 *     IMPOSSIBLE BY CONSTRUCTION, and a producer that times out waiting for
 *     credit holds no ticket (it leaves no hole the proxy would wait on).
 *  2. write: the descriptor into slots[t % capacity], then publish with a
 *     release store seq = t + 1.
 *  3. consume: the proxy reads slots in ticket order; slot t is ready when
 *     seq == t + 1 (acquire). Any other value except the previous lap's
 *     (t + 1 - capacity) or 0 means corruption and is fatal.
 *  4. release: when the op of ticket t has completed (data landed and signal
 *     applied at the peer), the proxy marks it; `released` advances over the
 *     contiguous completed prefix (release store). A producer that needs its
 *     source buffer back waits for released > t (epNetRingWaitDone).
 *************************************************************************/
#ifndef EP_TRANSPORT_NET_RING_H_
#define EP_TRANSPORT_NET_RING_H_

#include <cstdint>

#include "transports/proxy/net_desc.h"

#if defined(__CUDACC__)
#include "device/ptx.cuh"
#else
#include <ctime>
#endif

struct alignas(64) epNetSlot {
  epNetDesc desc;
  uint64_t seq; /* t + 1 once ticket t's descriptor is readable */
  uint64_t pad[3];
};
static_assert(sizeof(epNetSlot) == 64, "one slot per cache line");

struct alignas(64) epNetRingCtl {
  uint64_t released;   /* tickets [0, released) are complete and their slots free */
  uint64_t pad0[7];
  uint64_t error;      /* non-zero: the proxy failed; producers give up (value: epResult_t) */
  uint64_t pad1[7];
};

/* What a producer needs (passed to kernels by value, or in a device array). */
struct epNetRing {
  epNetSlot* slots;        /* capacity slots; device alias of host-pinned memory */
  epNetRingCtl* ctl;       /* device alias of host-pinned memory */
  uint64_t* claim;         /* ticket counter (device memory for GPU producers) */
  uint32_t capacity;       /* power of two */
  int32_t channel;
  int32_t nranks;          /* for descriptor validation */
  int32_t nwindows;        /* windows registered when this view was taken */
};

/* Post results (device and host producers). */
enum epNetPostResult : int {
  EP_NET_POST_OK = 0,
  EP_NET_POST_TIMEOUT = 1,  /* no credit (or completion) within the deadline */
  EP_NET_POST_ABORTED = 2,  /* the proxy reported an error */
  EP_NET_POST_BAD_DESC = 3  /* epNetValidate failed; nothing was written */
};

// ---------------------------------------------------------------- atomics, both sides
EP_HD uint64_t epNetLoadAcquire(const uint64_t* p) {
#if defined(__CUDA_ARCH__)
  return ep::dev::ld_acquire_sys(p);
#else
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#endif
}
EP_HD uint64_t epNetLoadRelaxed(const uint64_t* p) {
#if defined(__CUDA_ARCH__)
  return *(const volatile uint64_t*)p;
#else
  return __atomic_load_n(p, __ATOMIC_RELAXED);
#endif
}
EP_HD void epNetStoreRelease(uint64_t* p, uint64_t v) {
#if defined(__CUDA_ARCH__)
  ep::dev::st_release_sys(p, v);
#else
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
#endif
}
/* Returns the value seen before; success iff it equals `expected`. */
EP_HD uint64_t epNetCas(uint64_t* p, uint64_t expected, uint64_t desired) {
#if defined(__CUDA_ARCH__)
  return (uint64_t)atomicCAS((unsigned long long*)p, (unsigned long long)expected, (unsigned long long)desired);
#else
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
  return expected;
#endif
}
EP_HD uint64_t epNetNowNs() {
#if defined(__CUDA_ARCH__)
  return ep::dev::globaltimer_ns();
#else
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
#endif
}
EP_HD void epNetPause() {
#if defined(__CUDA_ARCH__)
  __nanosleep(64);
#elif defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// ---------------------------------------------------------------- producer side
/* Claims one ticket, waiting (bounded by timeoutNs) for a free slot. */
EP_HD int epNetRingClaim(const epNetRing& r, uint64_t timeoutNs, uint64_t* ticket) {
  uint64_t t = epNetLoadRelaxed(r.claim);
  uint64_t released = epNetLoadAcquire(&r.ctl->released);
  uint64_t deadline = 0;
  for (;;) {
    if (t < released + r.capacity) {
      uint64_t seen = epNetCas(r.claim, t, t + 1);
      if (seen == t) break;
      t = seen;  // lost the race: retry with the current ticket
      continue;
    }
    // Ring full: wait for the proxy to release, never write past it.
    if (epNetLoadRelaxed(&r.ctl->error) != 0) return EP_NET_POST_ABORTED;
    uint64_t now = epNetNowNs();
    if (deadline == 0) deadline = now + timeoutNs;
    else if (now > deadline) return EP_NET_POST_TIMEOUT;
    epNetPause();
    released = epNetLoadAcquire(&r.ctl->released);
    t = epNetLoadRelaxed(r.claim);
  }
  *ticket = t;
  return EP_NET_POST_OK;
}

/* Writes and publishes a descriptor under a claimed ticket. */
EP_HD void epNetRingPublish(const epNetRing& r, uint64_t ticket, const epNetDesc& d) {
  epNetSlot* s = &r.slots[ticket & (r.capacity - 1)];
#if defined(__CUDA_ARCH__)
  // Two 16-byte stores into the mapped host page; the release below orders them.
  int4* dst = reinterpret_cast<int4*>(&s->desc);
  const int4* src = reinterpret_cast<const int4*>(&d);
  dst[0] = src[0];
  dst[1] = src[1];
#else
  s->desc = d;
#endif
  epNetStoreRelease(&s->seq, ticket + 1);
}

/* Validates, claims and publishes: the whole post of one descriptor. */
EP_HD int epNetRingPost(const epNetRing& r, const epNetOpFields& f, uint64_t timeoutNs, uint64_t* ticketOut) {
  if (epNetValidate(f, r.nranks, r.nwindows) != EP_NET_DESC_OK) return EP_NET_POST_BAD_DESC;
  uint64_t t;
  int rc = epNetRingClaim(r, timeoutNs, &t);
  if (rc != EP_NET_POST_OK) return rc;
  epNetRingPublish(r, t, epNetEncode(f));
  if (ticketOut) *ticketOut = t;
  return EP_NET_POST_OK;
}

/* Waits until the op of `ticket` (and every earlier one of this ring) completed. */
EP_HD int epNetRingWaitDone(const epNetRing& r, uint64_t ticket, uint64_t timeoutNs) {
  uint64_t deadline = 0;
  while (epNetLoadAcquire(&r.ctl->released) <= ticket) {
    if (epNetLoadRelaxed(&r.ctl->error) != 0) return EP_NET_POST_ABORTED;
    uint64_t now = epNetNowNs();
    if (deadline == 0) deadline = now + timeoutNs;
    else if (now > deadline) return EP_NET_POST_TIMEOUT;
    epNetPause();
  }
  return EP_NET_POST_OK;
}

#endif  // EP_TRANSPORT_NET_RING_H_
