/*************************************************************************
 * epcomm: Expert-parallel load balancing (EPLB), expert mapping and group-limited gating.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EPCOMM_EPLB_H_
#define EPCOMM_EPLB_H_

#include "epcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EPCOMM_EPLB_H_ */
