/*************************************************************************
 * epcomm: Low-latency (LL) dispatch/combine with receive hooks.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EPCOMM_LL_H_
#define EPCOMM_LL_H_

#include "epcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EPCOMM_LL_H_ */
