/*************************************************************************
 * epcomm: host-side validation of HT dispatch/combine arguments, shared by
 * notify, dispatch and combine (bad input gets a clear error before any
 * kernel runs).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_INTRANODE_HT_ARGS_H_
#define EP_INTRANODE_HT_ARGS_H_

#include "epcomm.h"

struct epComm;
struct epHtHandle;

/* Row bytes and scale columns of a dispatch input (after validation). */
struct epHtRowShape {
  int xBytes;
  int scaleCols;     /* 4-byte scale words per row (0 for BF16) */
  long long sTok;    /* scale stride between tokens, in words */
  long long sCol;    /* scale stride between columns, in words */
};

/* Validates `in` for `fn`. needRouting: notify (top-k ids or isTokenInRank,
 * and numExperts) rather than dispatch. */
epResult_t epHtCheckDispatchInput(epComm* comm, const epDispatchInput_t* in, epHtHandle* h, bool needRouting,
                                  const char* fn, epHtRowShape* shape);

#endif  // EP_INTRANODE_HT_ARGS_H_
