/*************************************************************************
 * ep_ht_perf: command-line options (nccl-tests style).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/perf/ep_ht_perf/options.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>

namespace {
const char* kUsage =
    "ep_ht_perf: epcomm high-throughput (HT) intranode dispatch/combine benchmark, with the NCCL baseline.\n"
    "One process per GPU:\n"
    "  mpirun --allow-run-as-root -np 4 build/bin/ep_ht_perf [options]\n"
    "  scripts/eprun -np 4 build/bin/ep_ht_perf [options]        (no MPI: EP_RANK/EP_NRANKS + EP_COMM_ID)\n"
    "Options:\n"
    "  -t, --tokens N          tokens per rank (default 4096)\n"
    "      --sweep-tokens L    comma list of token counts, e.g. 512,1024,2048,4096\n"
    "  -H, --hidden N          hidden size (default 7168)\n"
    "  -k, --topk N            top-k (default 8)\n"
    "  -e, --experts N         experts (default 256; must divide by the ranks)\n"
    "      --fp8               also time FP8 e4m3 dispatch (+ per-128 scales)\n"
    "      --no-bf16           skip BF16 dispatch rows (combine still runs)\n"
    "      --scales F          FP8 scales: f32 (default) or ue8m0\n"
    "      --sms L             SM budget(s) per call, comma list for a sweep, e.g. 4,8,16,24,32 (0: comm default)\n"
    "  -n, --iters N           timed calls per measurement, median reported (default 50, min 20)\n"
    "  -w, --warmup N          untimed calls first (default 10)\n"
    "  -c, --check [0|1]       verify outputs against the host reference (default 0)\n"
    "      --routing R         uniform | zipf:ALPHA | hot[:FRACTION] (default uniform)\n"
    "      --mask P            probability that a top-k slot is -1 (default 0)\n"
    "      --mode M            a: notify with host sync + dispatch; b: notify + dispatch, no host sync (default);\n"
    "                          c: cached dispatch only (notify once beforehand)\n"
    "      --sets N            input sets rotated between calls so L2 cannot hold them (default 2, min 2)\n"
    "      --alignment N       per-expert count alignment (default 1)\n"
    "      --seed N            data/routing seed\n"
    "      --no-nccl           skip the NCCL baseline\n"
    "      --path P            ring | direct | both (default): time the ring path (unregistered buffers) and/or the\n"
    "                          direct path (outputs and combine input registered with epCommRegister); rows say which\n"
    "      --rows-only         diagnostic: dispatch outputs rows (+ FP8 scales) only, no top-k ids, weights or\n"
    "                          source index; combine without weights (rows say \"+rows-only\"; not with -c)\n"
    "      --csv FILE          rank 0 appends per row: tokens,sms,call,us,logical GB/s,NVLink GB/s,NCCL us\n"
    "Metrics (BENCHMARKS.md): logical GB/s = bytes of every received row, own rank included, / time;\n"
    "NVLink GB/s counts only rows from other ranks; BF16 row = 2H, FP8 row = H + 4H/128; combine counts the\n"
    "dispatch's rows in BF16. Times are CUDA-event medians per rank; the table shows the mean over ranks\n"
    "(GB/s: mean of per-rank GB/s, and the slowest rank's). NCCL baseline: permutation gather + grouped\n"
    "ncclSend/ncclRecv of the same rows (combine: reverse alltoallv + fp32 reduction); speedup = NCCL / epcomm.\n"
    "Env: EP_NCCL_LIB (default libnccl.so.2), EP_COMM_ID, NCCL_NVLS_ENABLE=0 recommended.\n";

bool parseList(const char* s, std::vector<int>* out) {
  out->clear();
  const char* p = s;
  while (*p) {
    char* end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 0 || v > (1 << 30)) return false;
    out->push_back((int)v);
    p = end;
    if (*p == ',') p++;
    else if (*p) return false;
  }
  return !out->empty();
}

bool parseInt(const char* s, int lo, int* out) {
  char* end;
  long v = strtol(s, &end, 10);
  if (*end || end == s || v < lo || v > (1 << 30)) return false;
  *out = (int)v;
  return true;
}
}  // namespace

bool htPerfParse(int argc, char** argv, int rank, HtPerfOptions* o, int* exitCode) {
  enum { OPT_SWEEP = 256, OPT_FP8, OPT_NOBF16, OPT_SCALES, OPT_SMS, OPT_ROUTING, OPT_MASK, OPT_MODE, OPT_SETS,
         OPT_NONCCL, OPT_ALIGN, OPT_SEED, OPT_CSV, OPT_PATH, OPT_ROWSONLY };
  static const struct option longOpts[] = {
      {"tokens", required_argument, 0, 't'},      {"hidden", required_argument, 0, 'H'},
      {"topk", required_argument, 0, 'k'},        {"experts", required_argument, 0, 'e'},
      {"iters", required_argument, 0, 'n'},       {"warmup", required_argument, 0, 'w'},
      {"check", optional_argument, 0, 'c'},       {"help", no_argument, 0, 'h'},
      {"sweep-tokens", required_argument, 0, OPT_SWEEP}, {"fp8", no_argument, 0, OPT_FP8},
      {"no-bf16", no_argument, 0, OPT_NOBF16},    {"scales", required_argument, 0, OPT_SCALES},
      {"sms", required_argument, 0, OPT_SMS},     {"routing", required_argument, 0, OPT_ROUTING},
      {"mask", required_argument, 0, OPT_MASK},   {"mode", required_argument, 0, OPT_MODE},
      {"sets", required_argument, 0, OPT_SETS},   {"no-nccl", no_argument, 0, OPT_NONCCL},
      {"alignment", required_argument, 0, OPT_ALIGN}, {"seed", required_argument, 0, OPT_SEED},
      {"csv", required_argument, 0, OPT_CSV},     {"path", required_argument, 0, OPT_PATH},
      {"rows-only", no_argument, 0, OPT_ROWSONLY},
      {0, 0, 0, 0}};
  o->routing.seed = 1;
  std::string err;
  int c, v;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "t:H:k:e:n:w:c::h", longOpts, nullptr)) != -1) {
    bool ok = true;
    switch (c) {
      case 't': ok = parseInt(optarg, 0, &v); if (ok) o->tokens = {v}; break;
      case OPT_SWEEP: ok = parseList(optarg, &o->tokens); break;
      case 'H': ok = parseInt(optarg, 1, &o->hidden); break;
      case 'k': ok = parseInt(optarg, 1, &o->topk); break;
      case 'e': ok = parseInt(optarg, 1, &o->experts); break;
      case 'n': ok = parseInt(optarg, 20, &o->iters); if (!ok) err = "-n must be >= 20 (median of at least 20 runs)"; break;
      case 'w': ok = parseInt(optarg, 0, &o->warmup); break;
      case 'c': o->check = optarg ? atoi(optarg) != 0 : true; break;
      case OPT_FP8: o->fp8 = true; break;
      case OPT_NOBF16: o->bf16 = false; break;
      case OPT_SCALES:
        if (!strcmp(optarg, "f32")) o->scales = epScaleFloat32;
        else if (!strcmp(optarg, "ue8m0")) o->scales = epScaleUE8M0;
        else ok = false;
        break;
      case OPT_SMS: ok = parseList(optarg, &o->sms); break;
      case OPT_ROUTING: ok = epTestParseRouting(optarg, &o->routing, &err); break;
      case OPT_MASK: {
        char* end;
        o->routing.maskRate = strtod(optarg, &end);
        ok = !*end && o->routing.maskRate >= 0 && o->routing.maskRate <= 1;
        break;
      }
      case OPT_MODE: ok = strlen(optarg) == 1 && strchr("abc", optarg[0]); if (ok) o->mode = optarg[0]; break;
      case OPT_SETS: ok = parseInt(optarg, 2, &o->sets); if (!ok) err = "--sets must be >= 2"; break;
      case OPT_NONCCL: o->nccl = false; break;
      case OPT_ALIGN: ok = parseInt(optarg, 1, &o->alignment); break;
      case OPT_SEED: ok = parseInt(optarg, 0, &v); if (ok) o->routing.seed = (uint64_t)v; break;
      case OPT_CSV: o->csv = optarg; break;
      case OPT_PATH:
        ok = !strcmp(optarg, "ring") || !strcmp(optarg, "direct") || !strcmp(optarg, "both");
        o->ring = strcmp(optarg, "direct") != 0;
        o->direct = strcmp(optarg, "ring") != 0;
        break;
      case OPT_ROWSONLY: o->meta = false; break;
      case 'h':
        if (rank == 0) fputs(kUsage, stdout);
        *exitCode = 0;
        return false;
      default: ok = false; break;
    }
    if (!ok) {
      if (rank == 0) {
        fprintf(stderr, "ep_ht_perf: bad option or value '%s'%s%s (--help lists the options)\n", argv[optind - 1],
                err.empty() ? "" : ": ", err.c_str());
      }
      *exitCode = 2;
      return false;
    }
  }
  if (!o->meta && o->check) {
    if (rank == 0)
      fprintf(stderr, "ep_ht_perf: --rows-only leaves the metadata outputs out, so -c cannot check them; "
                      "run the check without --rows-only\n");
    *exitCode = 2;
    return false;
  }
  o->routing.numTopk = o->topk;
  o->routing.numExperts = o->experts;
  return true;
}
