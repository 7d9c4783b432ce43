/*************************************************************************
 * ep-eplb: plan redundant-expert placement (EPLB) from a load table.
 * SPDX-License-Identifier: Apache-2.0
 *
 *   ep-eplb -r R -p P [-g G] [-n N] [--json] TABLE.csv|TABLE.json
 *
 * Prints, per layer, the physical slots of each GPU, the replica counts, and
 * the per-GPU load imbalance (max/mean) before (expert e on GPU e/(E/P), the
 * placement without EPLB) and after. docs/eplb.md has a worked example.
 *************************************************************************/
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "epcomm.h"
#include "eplb/eplb_plan.h"
#include "eplb/load_table.h"

namespace {

const char* kUsage =
    "usage: ep-eplb -r SLOTS -p GPUS [-g GROUPS] [-n NODES] [options] TABLE\n"
    "\n"
    "TABLE: per-expert loads, one layer per row (CSV) or an array of rows (JSON,\n"
    "       optionally {\"loads\": [[...], ...]}); '-' reads standard input.\n"
    "  -r, --slots R        physical expert slots per layer (R >= E, R %% P == 0)\n"
    "  -p, --gpus P         GPUs of the expert-parallel group\n"
    "  -g, --groups G       expert groups (E %% G == 0), default 1\n"
    "  -n, --nodes N        nodes (P %% N == 0), default 1\n"
    "  -e, --experts E      fail unless the table has exactly E experts per layer\n"
    "  -l, --layers L       fail unless the table has exactly L layers\n"
    "      --format F       csv or json (default: from the name / content)\n"
    "      --force-global   global policy even when G %% N == 0\n"
    "      --upstream       reproduce the upstream EPLB packing (allows two replicas on one GPU)\n"
    "      --json           machine-readable output\n"
    "  -q, --quiet          only the per-layer imbalance lines\n"
    "  -h, --help\n";

struct Args {
  int slots = 0, gpus = 0, groups = 1, nodes = 1, experts = -1, layers = -1;
  ep::eplb::TableFormat format = ep::eplb::TableFormat::Auto;
  int flags = 0;
  bool json = false, quiet = false;
  std::string table;
};

[[noreturn]] void usageError(const std::string& msg) {
  fprintf(stderr, "ep-eplb: error: %s\n\n%s", msg.c_str(), kUsage);
  exit(2);
}

int parseInt(const std::string& opt, const char* v) {
  if (v == nullptr) usageError(opt + " needs a value");
  errno = 0;
  char* end = nullptr;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < 0 || x > 1 << 30) usageError(opt + ": '" + v + "' is not a non-negative integer");
  return (int)x;
}

Args parseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    auto val = [&]() { i++; return next; };
    if (s == "-h" || s == "--help") {
      fputs(kUsage, stdout);
      exit(0);
    } else if (s == "-r" || s == "--slots") {
      a.slots = parseInt(s, val());
    } else if (s == "-p" || s == "--gpus") {
      a.gpus = parseInt(s, val());
    } else if (s == "-g" || s == "--groups") {
      a.groups = parseInt(s, val());
    } else if (s == "-n" || s == "--nodes") {
      a.nodes = parseInt(s, val());
    } else if (s == "-e" || s == "--experts") {
      a.experts = parseInt(s, val());
    } else if (s == "-l" || s == "--layers") {
      a.layers = parseInt(s, val());
    } else if (s == "--format") {
      const char* f = val();
      if (f && strcmp(f, "csv") == 0) a.format = ep::eplb::TableFormat::Csv;
      else if (f && strcmp(f, "json") == 0) a.format = ep::eplb::TableFormat::Json;
      else usageError("--format must be csv or json");
    } else if (s == "--force-global") {
      a.flags |= EP_EPLB_FLAG_FORCE_GLOBAL;
    } else if (s == "--upstream") {
      a.flags |= EP_EPLB_FLAG_UPSTREAM_PACKING;
    } else if (s == "--json") {
      a.json = true;
    } else if (s == "-q" || s == "--quiet") {
      a.quiet = true;
    } else if (s.size() > 1 && s[0] == '-') {
      usageError("unknown option " + s);
    } else if (a.table.empty()) {
      a.table = s;
    } else {
      usageError("more than one table given ('" + a.table + "' and '" + s + "')");
    }
  }
  if (a.table.empty()) usageError("no load table given");
  if (a.slots == 0) usageError("-r/--slots is required");
  if (a.gpus == 0) usageError("-p/--gpus is required");
  return a;
}

struct LayerReport {
  std::vector<int> phy2log, logcnt, log2phy;
  std::vector<double> before, after;  // before empty when E % P != 0
  double imbBefore = 0, imbAfter = 0, maxBefore = 0, maxAfter = 0, mean = 0;
};

double imbalance(const std::vector<double>& g, double* mx, double* mean) {
  double s = 0;
  *mx = 0;
  for (double x : g) s += x, *mx = std::max(*mx, x);
  *mean = s / g.size();
  return *mean > 0 ? *mx / *mean : 1.0;
}

void printJsonArray(const std::vector<int>& v, size_t b, size_t n) {
  putchar('[');
  for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", v[b + i]);
  putchar(']');
}
void printJsonArray(const std::vector<double>& v) {
  putchar('[');
  for (size_t i = 0; i < v.size(); i++) printf(i ? ",%.17g" : "%.17g", v[i]);
  putchar(']');
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parseArgs(argc, argv);
  ep::eplb::LoadTable t;
  std::string err;
  bool ok;
  if (a.table == "-") {
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) text.append(buf, n);
    ok = ep::eplb::parseLoadTable(text, a.format, &t, &err);
    if (!ok) err = "<stdin>: " + err;
  } else {
    ok = ep::eplb::readLoadTable(a.table, a.format, &t, &err);
  }
  if (!ok) {
    fprintf(stderr, "ep-eplb: error: %s\n", err.c_str());
    return 1;
  }
  if (a.experts >= 0 && t.experts != a.experts) {
    fprintf(stderr, "ep-eplb: error: %s: the table has %d experts per layer, but --experts says %d\n",
            a.table.c_str(), t.experts, a.experts);
    return 1;
  }
  if (a.layers >= 0 && t.layers != a.layers) {
    fprintf(stderr, "ep-eplb: error: %s: the table has %d layers, but --layers says %d\n", a.table.c_str(), t.layers,
            a.layers);
    return 1;
  }
  const int L = t.layers, E = t.experts, R = a.slots, P = a.gpus;
  int X = 0;
  if (epEplbMaxReplicas(E, R, &X) != epSuccess) {
    fprintf(stderr, "ep-eplb: error: %s\n", epGetLastError(nullptr));
    return 1;
  }
  std::vector<int> phy2log((size_t)L * R), log2phy((size_t)L * E * X), logcnt((size_t)L * E);
  int used = 0;
  epResult_t r = epEplbRebalance(t.values.data(), L, E, R, a.groups, a.nodes, P, a.flags, phy2log.data(),
                                 log2phy.data(), X, logcnt.data(), &used);
  if (r != epSuccess) {
    fprintf(stderr, "ep-eplb: error: %s (%s)\n", epGetLastError(nullptr), epGetErrorString(r));
    return 1;
  }
  const bool hier = !(a.flags & EP_EPLB_FLAG_FORCE_GLOBAL) && a.groups % a.nodes == 0;
  const int ppg = R / P, gpusPerNode = P / a.nodes;

  std::vector<LayerReport> reps(L);
  double sumBefore = 0, sumAfter = 0;
  for (int l = 0; l < L; l++) {
    LayerReport& rep = reps[l];
    const double* w = t.values.data() + (size_t)l * E;
    rep.phy2log.assign(phy2log.begin() + (size_t)l * R, phy2log.begin() + (size_t)(l + 1) * R);
    rep.logcnt.assign(logcnt.begin() + (size_t)l * E, logcnt.begin() + (size_t)(l + 1) * E);
    ep::eplb::gpuLoads(w, rep.phy2log.data(), rep.logcnt.data(), R, P, &rep.after);
    rep.imbAfter = imbalance(rep.after, &rep.maxAfter, &rep.mean);
    sumAfter += rep.imbAfter;
    if (E % P == 0) {
      ep::eplb::gpuLoadsUnbalanced(w, E, P, &rep.before);
      double m;
      rep.imbBefore = imbalance(rep.before, &rep.maxBefore, &m);
      sumBefore += rep.imbBefore;
    }
  }

  if (a.json) {
    printf("{\"layers\":%d,\"experts\":%d,\"slots\":%d,\"groups\":%d,\"nodes\":%d,\"gpus\":%d,", L, E, R, a.groups,
           a.nodes, P);
    printf("\"slots_per_gpu\":%d,\"policy\":\"%s\",\"upstream_packing\":%s,\"max_replicas\":%d,", ppg,
           hier ? "hierarchical" : "global", (a.flags & EP_EPLB_FLAG_UPSTREAM_PACKING) ? "true" : "false", used);
    printf("\"plan\":[");
    for (int l = 0; l < L; l++) {
      const LayerReport& rep = reps[l];
      printf("%s{\"layer\":%d,\"phy2log\":", l ? "," : "", l);
      printJsonArray(rep.phy2log, 0, R);
      printf(",\"logcnt\":");
      printJsonArray(rep.logcnt, 0, E);
      printf(",\"log2phy\":[");
      for (int e = 0; e < E; e++) {
        if (e) putchar(',');
        printJsonArray(log2phy, ((size_t)l * E + e) * X, used);
      }
      printf("],\"gpu_load_after\":");
      printJsonArray(rep.after);
      printf(",\"imbalance_after\":%.6f", rep.imbAfter);
      if (!rep.before.empty()) {
        printf(",\"gpu_load_before\":");
        printJsonArray(rep.before);
        printf(",\"imbalance_before\":%.6f", rep.imbBefore);
      } else {
        printf(",\"gpu_load_before\":null,\"imbalance_before\":null");
      }
      putchar('}');
    }
    printf("],\"mean_imbalance_after\":%.6f", sumAfter / std::max(L, 1));
    if (E % P == 0)
      printf(",\"mean_imbalance_before\":%.6f}\n", sumBefore / std::max(L, 1));
    else
      printf(",\"mean_imbalance_before\":null}\n");
    return 0;
  }

  printf("ep-eplb: %d layer(s) x %d experts, R=%d slots (%d redundant), G=%d, N=%d, P=%d (%d slots per GPU), "
         "policy %s%s\n",
         L, E, R, R - E, a.groups, a.nodes, P, ppg, hier ? "hierarchical" : "global",
         (a.flags & EP_EPLB_FLAG_UPSTREAM_PACKING) ? " (upstream packing)" : "");
  if (E % P != 0)
    printf("note: E %% P != 0, so there is no replica-free contiguous placement to compare with ('before' is n/a)\n");
  printf("imbalance = max / mean per-GPU load; before = expert e on GPU e/(E/P), after = this plan\n");
  for (int l = 0; l < L; l++) {
    const LayerReport& rep = reps[l];
    if (rep.before.empty())
      printf("layer %d: imbalance n/a -> %.4f   max GPU load n/a -> %.6g   mean %.6g\n", l, rep.imbAfter,
             rep.maxAfter, rep.mean);
    else
      printf("layer %d: imbalance %.4f -> %.4f   max GPU load %.6g -> %.6g   mean %.6g\n", l, rep.imbBefore,
             rep.imbAfter, rep.maxBefore, rep.maxAfter, rep.mean);
    if (a.quiet) continue;
    for (int g = 0; g < P; g++) {
      printf("  gpu %3d (node %d) load %10.6g :", g, g / gpusPerNode, rep.after[g]);
      for (int j = 0; j < ppg; j++) {
        int e = rep.phy2log[g * ppg + j];
        printf(" %d%s", e, rep.logcnt[e] > 1 ? "*" : "");
      }
      putchar('\n');
    }
    printf("  replicated (expert x count):");
    int n = 0;
    for (int e = 0; e < E; e++)
      if (rep.logcnt[e] > 1) printf(" %dx%d", e, rep.logcnt[e]), n++;
    printf("%s\n", n ? "" : " none");
  }
  if (L > 1) {
    if (E % P == 0)
      printf("mean imbalance over %d layers: %.4f -> %.4f\n", L, sumBefore / L, sumAfter / L);
    else
      printf("mean imbalance over %d layers: n/a -> %.4f\n", L, sumAfter / L);
  }
  return 0;
}
