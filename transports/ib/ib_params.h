/*************************************************************************
 * epcomm: the EP_IB_* knobs of the verbs transport (listed in docs/env.md and
 * explained in docs/internode.md). Integer knobs are cached on first use.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_TRANSPORT_IB_PARAMS_H_
#define EP_TRANSPORT_IB_PARAMS_H_

#include "core/param.h"

/* EP_IB_HCA (string, NCCL grammar, src/core/name_filter.h): read with epGetEnv. */
EP_PARAM(IbGidIndex, "IB_GID_INDEX", -1)        /* -1: pick automatically (RoCE v2, IPv4 first) */
EP_PARAM(IbRoceVersion, "IB_ROCE_VERSION", 2)   /* RoCE version wanted by the automatic GID choice */
EP_PARAM(IbSl, "IB_SL", 0)                      /* service level of HT traffic */
EP_PARAM(IbSlLl, "IB_SL_LL", -1)                /* service level of LL traffic; -1: EP_IB_SL */
EP_PARAM(IbTc, "IB_TC", 0)                      /* traffic class (RoCE GRH / IB global routes) */
EP_PARAM(IbTcLl, "IB_TC_LL", -1)                /* traffic class of LL traffic; -1: EP_IB_TC */
EP_PARAM(IbAdaptiveRouting, "IB_ADAPTIVE_ROUTING", -1) /* -1: on for InfiniBand, off for RoCE */
EP_PARAM(IbCc, "IB_CC", 0)                      /* 1: mark packets ECN-capable (RoCE congestion control) */
EP_PARAM(IbTimeout, "IB_TIMEOUT", 20)           /* local ACK timeout exponent: 4.096us * 2^N */
EP_PARAM(IbRetryCnt, "IB_RETRY_CNT", 7)
EP_PARAM(IbMaxInflight, "IB_MAX_INFLIGHT", 128) /* work requests in flight per QP */
EP_PARAM(IbDmabuf, "IB_DMABUF", -1)             /* -1: use dmabuf when supported; 0: never; 1: require */
EP_PARAM(IbPkey, "IB_PKEY", 0)                  /* partition key index */
EP_PARAM(IbMtu, "IB_MTU", 0)                    /* 0: the ports' active MTU; else 256..4096 */
EP_PARAM(IbChunkBytes, "IB_CHUNK_BYTES", 0)     /* split puts into writes of at most this (0: port max) */
/* EP_IB_SIGNAL (string): "atomic" (default) or "imm": read with epGetEnv. */

#endif  // EP_TRANSPORT_IB_PARAMS_H_
