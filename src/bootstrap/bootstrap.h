/*************************************************************************
 * epcomm: out-of-band bootstrap among the ranks of a communicator (TCP).
 * SPDX-License-Identifier: Apache-2.0
 *
 * The unique id carries the root's address and a random 64-bit magic. Every
 * rank connects to the root, which checks the magic (wrong magic: refused and
 * logged), collects all ranks (or fails every one of them with epTimeout
 * naming the missing ranks after EP_BOOTSTRAP_TIMEOUT) and then serves the
 * collectives below. All collectives are blocking and must be called by every
 * rank in the same order.
 *
 * Timeouts: `timeoutMs` bounds every wait. Rank 0 names the ranks that did not
 * arrive; a rank that hears nothing from rank 0 gives up after 2*timeoutMs+1s
 * (rank 0 may itself be waiting the full timeout for a late rank). After any
 * failed collective the bootstrap refuses further use.
 * An id may be given to a communicator once per rank in a process (reuse is
 * epInvalidUsage). With EP_COMM_ID, the n-th epBootstrapGetUniqueId call of
 * every process returns the same id, so ranks must call it equally often.
 *************************************************************************/
#ifndef EP_BOOTSTRAP_H_
#define EP_BOOTSTRAP_H_

#include <cstddef>
#include <cstdint>

#include "epcomm.h"

struct epBootstrap;

/* Fills `id`. Starts the root listener in this process unless EP_COMM_ID
 * fixes the root address (then the root is started by rank 0 at init, and
 * every rank may call this and gets the same id). */
epResult_t epBootstrapGetUniqueId(epUniqueId* id);

/* Like epBootstrapGetUniqueId but always a private root on 127.0.0.1, ignoring
 * EP_COMM_ID: for communicators whose ranks all live in this process. */
epResult_t epBootstrapGetLocalUniqueId(epUniqueId* id);

/* Collective: connects this rank. timeoutMs bounds the wait for all ranks. */
epResult_t epBootstrapInit(const epUniqueId* id, int rank, int nranks, int timeoutMs, epBootstrap** out);

/* data holds nranks slots of `bytes` each; slot `rank` is this rank's input. */
epResult_t epBootstrapAllGather(epBootstrap* bs, void* data, size_t bytes);
epResult_t epBootstrapBroadcast(epBootstrap* bs, void* data, size_t bytes, int root);
epResult_t epBootstrapBarrier(epBootstrap* bs);

/* Tells the root (and through it every rank) to fail pending collectives with epRemoteError. */
epResult_t epBootstrapAbort(epBootstrap* bs);
epResult_t epBootstrapDestroy(epBootstrap* bs);

int epBootstrapRank(const epBootstrap* bs);
int epBootstrapSize(const epBootstrap* bs);
/* The id's magic: equal on every rank of the communicator. */
uint64_t epBootstrapMagic(const epBootstrap* bs);

#endif  // EP_BOOTSTRAP_H_
