/*************************************************************************
 * epcomm tests: a tiny out-of-band TCP exchange among test processes.
 * SPDX-License-Identifier: Apache-2.0
 *
 * epcomm's bootstrap is internal to the library, yet tests and perf binaries
 * need to move a few bytes between ranks themselves: the ncclUniqueId of the
 * NCCL baseline, per-rank results for rank 0's table, a pass/fail vote. So
 * rank 0 listens on the EP_COMM_ID host at port + 1 (EP_TEST_OOB_ADDR=host:port
 * overrides) and every rank connects to it: a star, fine for small messages.
 * All calls are collective (every rank, same order) and bounded by a timeout:
 * a rank that never shows up gives epTimeout, never a hang. One rank: no
 * sockets at all.
 *************************************************************************/
#ifndef EP_TESTS_OOB_H_
#define EP_TESTS_OOB_H_

#include <cstddef>

#include "epcomm.h"
#include "tests/common/world.h"

struct epTestOob;

epResult_t epTestOobInit(const epTestWorld& w, int timeoutMs, epTestOob** out);
/* data: nranks slots of `bytes`; slot `rank` is the input. */
epResult_t epTestOobAllGather(epTestOob* oob, void* data, size_t bytes);
epResult_t epTestOobBroadcast(epTestOob* oob, void* data, size_t bytes, int root);
epResult_t epTestOobBarrier(epTestOob* oob);
/* Logical OR / integer sum of one value over all ranks. */
epResult_t epTestOobAnyTrue(epTestOob* oob, bool mine, bool* any);
epResult_t epTestOobSum(epTestOob* oob, long long mine, long long* sum);
void epTestOobDestroy(epTestOob* oob);

#endif  // EP_TESTS_OOB_H_
