/*************************************************************************
 * epcomm tests: deterministic MoE routing generators.
 * SPDX-License-Identifier: Apache-2.0
 *
 * epTestMakeRouting(spec, rank) is a pure function of (spec, rank): every rank
 * can rebuild every other rank's top-k ids and weights and therefore compute
 * on the host what it must receive, with no data exchange.
 *
 * Kinds (what `--routing` accepts, see epTestParseRouting):
 *  - uniform   each token scores every expert with an iid uniform and keeps
 *              the top k (distinct experts, best first) -- DeepEP's tests
 *              take torch.topk of random scores the same way.
 *  - zipf:A    expert popularity p(e) ~ 1/(1+pos(e))^A over a seed-dependent
 *              permutation pos(); k distinct experts per token drawn without
 *              replacement in proportion to p (Gumbel top-k of log p).
 *  - hot[:F]   one expert (spec.hotExpert, or one chosen from the seed) is in
 *              the top-k of a fraction F (default 0.5) of the tokens; the
 *              other slots are uniform over the remaining experts.
 * Then each slot is independently replaced by -1 with probability maskRate,
 * and rank zeroTokenRank (if >= 0) gets no tokens at all.
 *************************************************************************/
#ifndef EP_TESTS_ROUTING_H_
#define EP_TESTS_ROUTING_H_

#include <cstdint>
#include <string>
#include <vector>

enum class epTestRoutingKind { Uniform, Zipf, Hot };

struct epTestRoutingSpec {
  epTestRoutingKind kind = epTestRoutingKind::Uniform;
  double zipfAlpha = 1.0;
  int hotExpert = -1;        /* -1: picked from the seed */
  double hotFraction = 0.5;  /* share of tokens that include the hot expert */
  double maskRate = 0.0;     /* probability that a slot is -1 */
  int numTokens = 0;         /* tokens per rank */
  int zeroTokenRank = -1;    /* this rank has 0 tokens (-1: none) */
  int numTopk = 8;
  int numExperts = 256;
  uint64_t seed = 1;
};

struct epTestRouting {
  int numTokens = 0;
  int numTopk = 0;
  int numExperts = 0;
  std::vector<int64_t> topkIdx;  /* [numTokens x numTopk], -1 = masked */
  std::vector<float> topkWeights; /* [numTokens x numTopk], in (0, 1] (also for masked slots) */
};

/* Parses "uniform", "zipf:1.2", "hot" or "hot:0.5" into spec->kind & params. */
bool epTestParseRouting(const std::string& text, epTestRoutingSpec* spec, std::string* error);
/* Short readable name: "uniform", "zipf1.2", "hot0.5", plus "-m0.1" for masks. */
std::string epTestRoutingName(const epTestRoutingSpec& spec);

/* Tokens `rank` holds under `spec`. */
int epTestRoutingTokens(const epTestRoutingSpec& spec, int rank);
/* The hot expert of a Hot spec (resolves hotExpert == -1). */
int epTestHotExpert(const epTestRoutingSpec& spec);

epTestRouting epTestMakeRouting(const epTestRoutingSpec& spec, int rank);
/* Routings of ranks 0..nranks-1. */
std::vector<epTestRouting> epTestMakeAllRoutings(const epTestRoutingSpec& spec, int nranks);

/* The ids as int32 (for epInt32 inputs). */
std::vector<int32_t> epTestTopkIdx32(const epTestRouting& r);

#endif  // EP_TESTS_ROUTING_H_
