/*************************************************************************
 * ep_ht_perf: command-line options (nccl-tests style).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_HT_PERF_OPTIONS_H_
#define EP_HT_PERF_OPTIONS_H_

#include <string>
#include <vector>

#include "epcomm.h"
#include "tests/common/routing.h"

struct HtPerfOptions {
  std::vector<int> tokens{4096}; /* -t, or --sweep-tokens */
  int hidden = 7168;             /* -H */
  int topk = 8;                  /* -k */
  int experts = 256;             /* -e */
  bool bf16 = true;              /* BF16 dispatch rows (--no-bf16 to skip) */
  bool fp8 = false;              /* --fp8: FP8 dispatch rows too */
  epScaleFormat_t scales = epScaleFloat32; /* --scales f32|ue8m0 */
  std::vector<int> sms{0};       /* --sms 4,8,16 (0: the comm's default) */
  int iters = 50;                /* -n, >= 20 */
  int warmup = 10;               /* -w */
  bool check = false;            /* -c */
  epTestRoutingSpec routing;     /* --routing, --mask, --seed */
  char mode = 'b';               /* --mode a|b|c */
  int sets = 2;                  /* --sets, >= 2 */
  bool nccl = true;              /* --no-nccl */
  int alignment = 1;             /* --alignment */
  std::string csv;               /* --csv FILE: rank 0 appends rows */
  bool ring = true;              /* --path ring|direct|both: unregistered outputs (ring path) */
  bool direct = true;            /*   and/or outputs registered with epCommRegister (direct path) */
  bool meta = true;              /* --rows-only clears it: dispatch asks for rows (+ FP8 scales) only, no top-k
                                    ids, weights or source index, and combine for no weights (prices the
                                    per-row metadata; cannot be combined with -c) */
};

/* Parses argv; on error or --help prints usage (rank 0 only) and returns false
 * with *exitCode set. */
bool htPerfParse(int argc, char** argv, int rank, HtPerfOptions* o, int* exitCode);

#endif  // EP_HT_PERF_OPTIONS_H_
