/*************************************************************************
 * epcomm: High-throughput (HT) dispatch/combine: layout, intranode and internode.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EPCOMM_HT_H_
#define EPCOMM_HT_H_

#include "epcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EPCOMM_HT_H_ */
