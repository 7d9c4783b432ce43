/*************************************************************************
 * epcomm: epEplbAllReduceLoad, the sum of a load table across the ranks of a
 * communicator (out of band, through the bootstrap): EPLB needs the global
 * load, and a plan computed from one rank's local counts is meaningless.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <cstring>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "core/checks.h"
#include "core/comm.h"
#include "eplb/eplb_internal.h"

EP_API epResult_t epEplbAllReduceLoad(epComm_t comm, const long long* local, long long* global, size_t count) {
  static const char* fn = "epEplbAllReduceLoad";
  EPCHECK(epCommCheck(comm, fn));
  EP_COMM_SCOPE(comm);
  if (count > 0) {
    EP_PTR_CHECK(local, fn);
    EP_PTR_CHECK(global, fn);
  }
  // Agree on the count first, so a rank that passes a different size gets an
  // error instead of a mis-sized gather.
  std::vector<unsigned long long> counts(comm->nranks, 0);
  counts[comm->rank] = (unsigned long long)count;
  EPCHECK(epBootstrapAllGather(comm->bootstrap, counts.data(), sizeof(unsigned long long)));
  for (int r = 0; r < comm->nranks; r++)
    EP_ARG_CHECK(counts[r] == count,
                 "%s: every rank must pass the same count, but this rank (%d) passed %zu and rank %d passed %llu", fn,
                 comm->rank, count, r, counts[r]);
  if (count == 0) return epSuccess;
  std::vector<long long> all((size_t)comm->nranks * count);
  memcpy(all.data() + (size_t)comm->rank * count, local, count * sizeof(long long));
  EPCHECK(epBootstrapAllGather(comm->bootstrap, all.data(), count * sizeof(long long)));
  // Integer sums in rank order: exact and the same on every rank.
  for (size_t i = 0; i < count; i++) {
    long long s = 0;
    for (int r = 0; r < comm->nranks; r++) s += all[(size_t)r * count + i];
    global[i] = s;
  }
  EP_INFO(EP_LOG_EPLB, "%s: summed %zu load entries over %d ranks", fn, count, comm->nranks);
  return epSuccess;
}
