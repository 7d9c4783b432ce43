/*************************************************************************
 * epcomm: epConfig_t validation and resolution.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Each field of epConfig_t resolves, in order, to: the value the user set in
 * the config; else its EP_* environment knob (read once, cached); else the
 * default. The resolved config must be identical on every rank (checked at
 * init). docs/env.md lists the knobs.
 *************************************************************************/
#ifndef EP_CONFIG_H_
#define EP_CONFIG_H_

#include "epcomm.h"
#include "core/comm.h"

/* Checks that `config` was made by EP_CONFIG_INITIALIZER for a version this
 * library understands. NULL is fine (all defaults). */
epResult_t epConfigValidate(const epConfig_t* config);

/* Validates and resolves `config` (may be NULL) into `out`. */
epResult_t epConfigResolve(const epConfig_t* config, epResolvedConfig* out);

/* Collective: fails with epInvalidUsage naming the first differing field and
 * the ranks involved when ranks resolved different configs. */
epResult_t epConfigCheckAcrossRanks(epComm* comm);

#endif  // EP_CONFIG_H_
