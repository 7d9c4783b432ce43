/*************************************************************************
 * epcomm tests: deterministic MoE routing generators.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/routing.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "tests/common/rng.h"

bool epTestParseRouting(const std::string& text, epTestRoutingSpec* spec, std::string* error) {
  std::string kind = text, arg;
  size_t colon = text.find(':');
  if (colon != std::string::npos) {
    kind = text.substr(0, colon);
    arg = text.substr(colon + 1);
  }
  char* end = nullptr;
  if (kind == "uniform") {
    spec->kind = epTestRoutingKind::Uniform;
    if (!arg.empty()) goto bad;
    return true;
  }
  if (kind == "zipf") {
    spec->kind = epTestRoutingKind::Zipf;
    if (arg.empty()) return true;
    spec->zipfAlpha = strtod(arg.c_str(), &end);
    if (*end != '\0' || !(spec->zipfAlpha >= 0.0)) goto bad;
    return true;
  }
  if (kind == "hot") {
    spec->kind = epTestRoutingKind::Hot;
    if (arg.empty()) return true;
    spec->hotFraction = strtod(arg.c_str(), &end);
    if (*end != '\0' || !(spec->hotFraction >= 0.0 && spec->hotFraction <= 1.0)) goto bad;
    return true;
  }
bad:
  if (error) *error = "bad routing '" + text + "' (expected uniform, zipf[:ALPHA] or hot[:FRACTION])";
  return false;
}

std::string epTestRoutingName(const epTestRoutingSpec& spec) {
  char buf[96];
  switch (spec.kind) {
    case epTestRoutingKind::Uniform: snprintf(buf, sizeof(buf), "uniform"); break;
    case epTestRoutingKind::Zipf: snprintf(buf, sizeof(buf), "zipf%g", spec.zipfAlpha); break;
    case epTestRoutingKind::Hot: snprintf(buf, sizeof(buf), "hot%g", spec.hotFraction); break;
  }
  std::string s = buf;
  if (spec.maskRate > 0) {
    snprintf(buf, sizeof(buf), "-m%g", spec.maskRate);
    s += buf;
  }
  return s;
}

int epTestRoutingTokens(const epTestRoutingSpec& spec, int rank) {
  return rank == spec.zeroTokenRank ? 0 : spec.numTokens;
}

int epTestHotExpert(const epTestRoutingSpec& spec) {
  if (spec.hotExpert >= 0) return spec.hotExpert;
  epTestRng rng(spec.seed, EP_RNG_EXPERTS, 0);
  return (int)rng.below(0, (uint32_t)spec.numExperts);
}

namespace {
// Indices of the k largest keys, best first; ties broken by the lower index.
void topkOf(const std::vector<double>& key, int k, std::vector<int>* idx) {
  idx->resize(key.size());
  std::iota(idx->begin(), idx->end(), 0);
  std::partial_sort(idx->begin(), idx->begin() + k, idx->end(), [&](int a, int b) {
    return key[a] != key[b] ? key[a] > key[b] : a < b;
  });
  idx->resize(k);
}
}  // namespace

epTestRouting epTestMakeRouting(const epTestRoutingSpec& spec, int rank) {
  epTestRouting r;
  const int T = epTestRoutingTokens(spec, rank), K = spec.numTopk, E = spec.numExperts;
  r.numTokens = T;
  r.numTopk = K;
  r.numExperts = E;
  r.topkIdx.assign((size_t)T * K, -1);
  r.topkWeights.assign((size_t)T * K, 0.0f);
  if (T == 0 || K <= 0 || E <= 0) return r;
  const int kk = std::min(K, E);  // more slots than experts: the rest stay -1

  epTestRng scores(spec.seed, EP_RNG_ROUTING, rank), masks(spec.seed, EP_RNG_MASK, rank),
      weights(spec.seed, EP_RNG_WEIGHTS, rank);
  // Zipf: log-popularity of each expert over a seed-wide permutation (same on all ranks).
  std::vector<double> logPop;
  if (spec.kind == epTestRoutingKind::Zipf) {
    std::vector<int> perm(E);
    std::iota(perm.begin(), perm.end(), 0);
    epTestRng pr(spec.seed, EP_RNG_EXPERTS, 1);
    for (int i = E - 1; i > 0; i--) std::swap(perm[i], perm[pr.below((uint64_t)i, (uint32_t)(i + 1))]);
    logPop.resize(E);
    for (int e = 0; e < E; e++) logPop[e] = -spec.zipfAlpha * std::log(1.0 + perm[e]);
  }
  const int hot = spec.kind == epTestRoutingKind::Hot ? epTestHotExpert(spec) : -1;

  std::vector<double> key(E);
  std::vector<int> best;
  for (int t = 0; t < T; t++) {
    const uint64_t base = (uint64_t)t * (E + 2);
    for (int e = 0; e < E; e++) {
      double u = scores.uniformOpen(base + e);
      key[e] = spec.kind == epTestRoutingKind::Zipf ? logPop[e] - std::log(-std::log(u)) : u;
    }
    bool withHot = false;
    if (hot >= 0) {
      withHot = scores.uniform(base + E) < spec.hotFraction;
      key[hot] = withHot ? 2.0 : -1.0;  // forced in, or kept out of the uniform draw
    }
    topkOf(key, kk, &best);
    if (withHot && kk > 1) {
      // The hot expert sits in a random slot, not always first.
      int slot = (int)scores.below(base + E + 1, (uint32_t)kk);
      std::swap(best[0], best[slot]);
    }
    for (int k = 0; k < kk; k++) {
      const uint64_t s = (uint64_t)t * K + k;
      bool masked = spec.maskRate > 0 && masks.uniform(s) < spec.maskRate;
      r.topkIdx[s] = masked ? -1 : best[k];
      r.topkWeights[s] = (float)(0.0625 + 0.9375 * weights.uniform(s));
    }
  }
  return r;
}

std::vector<epTestRouting> epTestMakeAllRoutings(const epTestRoutingSpec& spec, int nranks) {
  std::vector<epTestRouting> all;
  all.reserve(nranks);
  for (int r = 0; r < nranks; r++) all.push_back(epTestMakeRouting(spec, r));
  return all;
}

std::vector<int32_t> epTestTopkIdx32(const epTestRouting& r) {
  return std::vector<int32_t>(r.topkIdx.begin(), r.topkIdx.end());
}
