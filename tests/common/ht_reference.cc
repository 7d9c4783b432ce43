/*************************************************************************
 * epcomm tests: host reference of HT layout, dispatch and combine.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/ht_reference.h"

#include <cmath>

#include "tests/common/dtype.h"
#include "tests/common/rng.h"

epTestHtLayout epTestHtLayoutRef(const epTestRouting& r, int nranks, int nNodes) {
  epTestHtLayout l;
  const int T = r.numTokens, K = r.numTopk, E = r.numExperts;
  const int L = E / nranks, perNode = nranks / (nNodes > 0 ? nNodes : 1);
  l.tokensPerRank.assign(nranks, 0);
  l.tokensPerNode.assign(nNodes, 0);
  l.tokensPerExpert.assign(E, 0);
  l.isTokenInRank.assign((size_t)T * nranks, 0);
  std::vector<uint8_t> node(nNodes);
  for (int t = 0; t < T; t++) {
    std::fill(node.begin(), node.end(), 0);
    for (int k = 0; k < K; k++) {
      int64_t e = r.topkIdx[(size_t)t * K + k];
      if (e < 0 || e >= E) continue;
      l.tokensPerExpert[e]++;
      int dst = (int)(e / L);
      l.isTokenInRank[(size_t)t * nranks + dst] = 1;
      node[dst / perNode] = 1;
    }
    for (int d = 0; d < nranks; d++) l.tokensPerRank[d] += l.isTokenInRank[(size_t)t * nranks + d];
    for (int n = 0; n < nNodes; n++) l.tokensPerNode[n] += node[n];
  }
  return l;
}

epTestHtRecvRef epTestHtRecvRefCompute(const std::vector<epTestRouting>& all, int me, int alignment) {
  epTestHtRecvRef ref;
  const int R = (int)all.size();
  const int K = all.empty() ? 0 : all[0].numTopk, E = all.empty() ? 0 : all[0].numExperts;
  const int L = R ? E / R : 0;
  ref.fromRank.assign(R, 0);
  ref.rankPrefix.assign(R + 1, 0);
  ref.perExpert.assign(L, 0);
  for (int s = 0; s < R; s++) {
    const epTestRouting& r = all[s];
    for (int t = 0; t < r.numTokens; t++) {
      bool here = false;
      for (int k = 0; k < K; k++) {
        int64_t e = r.topkIdx[(size_t)t * K + k];
        if (e >= 0 && e < E && e / L == me) here = true;
      }
      if (!here) continue;
      ref.fromRank[s]++;
      ref.srcRank.push_back(s);
      ref.srcIdx.push_back(t);
      for (int k = 0; k < K; k++) {
        int64_t e = r.topkIdx[(size_t)t * K + k];
        bool local = e >= 0 && e < E && e / L == me;
        ref.topkIdx.push_back(local ? (int32_t)(e - (int64_t)me * L) : -1);
        ref.topkWeights.push_back(local ? r.topkWeights[(size_t)t * K + k] : 0.0f);
        if (local) ref.perExpert[e - (int64_t)me * L]++;
      }
    }
    ref.rankPrefix[s + 1] = ref.rankPrefix[s] + ref.fromRank[s];
  }
  ref.numRecv = ref.rankPrefix[R];
  const int a = alignment > 0 ? alignment : 1;
  ref.perExpertAligned.resize(L);
  for (int l = 0; l < L; l++) ref.perExpertAligned[l] = (ref.perExpert[l] + a - 1) / a * a;
  return ref;
}

void epTestCombineInputRow(uint64_t seed, int holder, int srcRank, int srcIdx, int hidden, uint16_t* row) {
  epTestRng rng(seed ^ ((uint64_t)(uint32_t)holder << 40), EP_RNG_COMBINE, (uint64_t)srcRank);
  const uint64_t base = (uint64_t)(uint32_t)srcIdx * (uint64_t)hidden;
  for (int h = 0; h < hidden; h++) row[h] = epTestFloatToBf16((float)((rng.uniform(base + h) - 0.5) * 4.0));
}

void epTestCombineInput(uint64_t seed, int me, const std::vector<int>& srcRank, const std::vector<int>& srcIdx,
                        int hidden, std::vector<uint16_t>* x) {
  x->assign(srcRank.size() * (size_t)hidden, 0);
  for (size_t i = 0; i < srcRank.size(); i++)
    epTestCombineInputRow(seed, me, srcRank[i], srcIdx[i], hidden, x->data() + i * hidden);
}

void epTestCombineBias(uint64_t seed, int rank, int which, int numTokens, int hidden, std::vector<uint16_t>* bias) {
  epTestRng rng(seed, EP_RNG_BIAS + 16 * (uint64_t)which, (uint64_t)rank);
  bias->resize((size_t)numTokens * hidden);
  for (size_t i = 0; i < bias->size(); i++) (*bias)[i] = epTestFloatToBf16((float)((rng.uniform(i) - 0.5) * 2.0));
}

void epTestHtCombineRef(const std::vector<epTestRouting>& all, int me, int hidden, uint64_t seed,
                        const uint16_t* bias0, const uint16_t* bias1, std::vector<double>* out,
                        std::vector<double>* sumAbs) {
  const int R = (int)all.size();
  const epTestRouting& r = all[me];
  const int T = r.numTokens, K = r.numTopk, E = r.numExperts, L = E / R, H = hidden;
  out->assign((size_t)T * H, 0.0);
  sumAbs->assign((size_t)T * H, 0.0);
  std::vector<uint16_t> row(H);
  std::vector<uint8_t> dst(R);
  for (int t = 0; t < T; t++) {
    double* o = out->data() + (size_t)t * H;
    double* a = sumAbs->data() + (size_t)t * H;
    std::fill(dst.begin(), dst.end(), 0);
    for (int k = 0; k < K; k++) {
      int64_t e = r.topkIdx[(size_t)t * K + k];
      if (e >= 0 && e < E) dst[e / L] = 1;
    }
    for (int d = 0; d < R; d++) {
      if (!dst[d]) continue;
      epTestCombineInputRow(seed, d, me, t, H, row.data());
      for (int h = 0; h < H; h++) {
        double v = epTestBf16ToFloat(row[h]);
        o[h] += v;
        a[h] += std::fabs(v);
      }
    }
    for (const uint16_t* b : {bias0, bias1}) {
      if (!b) continue;
      for (int h = 0; h < H; h++) {
        double v = epTestBf16ToFloat(b[(size_t)t * H + h]);
        o[h] += v;
        a[h] += std::fabs(v);
      }
    }
  }
}

std::vector<float> epTestHtCombineWeightsRef(const epTestRouting& mine) {
  std::vector<float> w(mine.topkWeights.size(), 0.0f);
  for (size_t i = 0; i < w.size(); i++)
    if (mine.topkIdx[i] >= 0 && mine.topkIdx[i] < mine.numExperts) w[i] = mine.topkWeights[i];
  return w;
}

double epTestCombineTolerance(double ref, double sumAbs) {
  return std::ldexp(std::fabs(ref), -8) + std::ldexp(sumAbs, -18);
}
