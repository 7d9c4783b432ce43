/*************************************************************************
 * epcomm tests: compare HT outputs with the host reference.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/ht_check.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tests/common/dtype.h"

void epTestCheckLayout(const epTestHtLayout& ref, const int* perRank, const int* perNode, const int* perExpert,
                       const uint8_t* inRank, epTestCheck* chk) {
  if (perRank)
    for (size_t i = 0; i < ref.tokensPerRank.size(); i++)
      if (perRank[i] != ref.tokensPerRank[i])
        chk->fail("numTokensPerRank[%zu] = %d, expected %d", i, perRank[i], ref.tokensPerRank[i]);
  if (perNode)
    for (size_t i = 0; i < ref.tokensPerNode.size(); i++)
      if (perNode[i] != ref.tokensPerNode[i])
        chk->fail("numTokensPerNode[%zu] = %d, expected %d", i, perNode[i], ref.tokensPerNode[i]);
  if (perExpert)
    for (size_t i = 0; i < ref.tokensPerExpert.size(); i++)
      if (perExpert[i] != ref.tokensPerExpert[i])
        chk->fail("numTokensPerExpert[%zu] = %d, expected %d", i, perExpert[i], ref.tokensPerExpert[i]);
  if (inRank) {
    const size_t R = ref.tokensPerRank.size();
    for (size_t i = 0; i < ref.isTokenInRank.size(); i++)
      if (inRank[i] != ref.isTokenInRank[i])
        chk->fail("isTokenInRank[token %zu][rank %zu] = %d, expected %d", i / R, i % R, inRank[i],
                  ref.isTokenInRank[i]);
  }
}

void epTestCheckDispatch(const epTestHtRecvRef& ref, const epTestPayloadSpec& p, int K,
                         const epTestHtDispatchGot& got, bool requireOrder, epTestCheck* chk) {
  if (got.numRecv != ref.numRecv) {
    chk->fail("numRecvTokens = %d, expected %d", got.numRecv, ref.numRecv);
    return;  // rows cannot be matched up
  }
  const size_t rb = epTestRowBytes(p), sb = epTestScaleBytes(p);
  std::vector<uint8_t> row(rb), sc(sb);
  const int R = (int)ref.fromRank.size();
  for (int s = 0; s < R; s++) {
    const int lo = ref.rankPrefix[s], hi = ref.rankPrefix[s + 1];
    // Source token -> reference row, to accept and verify the GPU's order.
    std::vector<int> refRowOf;
    if (got.srcIdx) {
      int maxIdx = 0;
      for (int i = lo; i < hi; i++) maxIdx = std::max(maxIdx, ref.srcIdx[i] + 1);
      refRowOf.assign(maxIdx, -1);
      for (int i = lo; i < hi; i++) refRowOf[ref.srcIdx[i]] = i;
    }
    for (int i = lo; i < hi; i++) {
      int refRow = i;
      if (got.srcIdx) {
        int t = got.srcIdx[i];
        if (t < 0 || t >= (int)refRowOf.size() || refRowOf[t] < 0) {
          chk->fail("row %d (from rank %d): recvSrcIdx = %d is not a token rank %d sent here", i, s, t, s);
          continue;
        }
        refRow = refRowOf[t];
        refRowOf[t] = -1;  // each token exactly once
        if (requireOrder && refRow != i)
          chk->fail("row %d (from rank %d): token %d out of order (expected token %d here)", i, s, t, ref.srcIdx[i]);
      }
      const int t = ref.srcIdx[refRow];
      if (got.x || got.scales) epTestTokenRow(p, s, t, row.data(), sb ? sc.data() : nullptr);
      if (got.x && memcmp(got.x + (size_t)i * rb, row.data(), rb) != 0) {
        size_t b = 0;
        while (b < rb && got.x[(size_t)i * rb + b] == row[b]) b++;
        chk->fail("row %d (rank %d token %d): payload differs first at byte %zu: got 0x%02x expected 0x%02x", i, s,
                  t, b, got.x[(size_t)i * rb + b], row[b]);
      }
      if (got.scales && sb && memcmp(got.scales + (size_t)i * sb, sc.data(), sb) != 0)
        chk->fail("row %d (rank %d token %d): scales differ", i, s, t);
      for (int k = 0; k < K; k++) {
        const size_t gi = (size_t)i * K + k, ri = (size_t)refRow * K + k;
        if (got.topkIdx && got.topkIdx[gi] != ref.topkIdx[ri])
          chk->fail("row %d (rank %d token %d) slot %d: recvTopkIdx = %d, expected %d", i, s, t, k, got.topkIdx[gi],
                    ref.topkIdx[ri]);
        if (got.topkWeights && memcmp(&got.topkWeights[gi], &ref.topkWeights[ri], 4) != 0)
          chk->fail("row %d (rank %d token %d) slot %d: recvTopkWeights = %.9g, expected %.9g", i, s, t, k,
                    got.topkWeights[gi], ref.topkWeights[ri]);
      }
    }
  }
  if (got.perExpert)
    for (size_t l = 0; l < ref.perExpertAligned.size(); l++)
      if (got.perExpert[l] != ref.perExpertAligned[l])
        chk->fail("recvCountPerExpert[%zu] = %d, expected %d (%d rows before alignment)", l, got.perExpert[l],
                  ref.perExpertAligned[l], ref.perExpert[l]);
}

void epTestRecvOrder(const epTestHtRecvRef& ref, const int32_t* gotSrcIdx, std::vector<int>* srcRank,
                     std::vector<int>* srcIdx) {
  *srcRank = ref.srcRank;
  if (gotSrcIdx)
    srcIdx->assign(gotSrcIdx, gotSrcIdx + ref.numRecv);
  else
    *srcIdx = ref.srcIdx;
}

void epTestCheckCombine(const std::vector<double>& ref, const std::vector<double>& sumAbs, const uint16_t* got,
                        int hidden, epTestCheck* chk) {
  for (size_t i = 0; i < ref.size(); i++) {
    double g = epTestBf16ToFloat(got[i]);
    double err = std::fabs(g - ref[i]), tol = epTestCombineTolerance(ref[i], sumAbs[i]);
    if (!(err <= tol))  // NaN fails too
      chk->fail("combine out[token %zu][%zu] = %.8g, expected %.8g (|err| %.3g > tol %.3g)", i / hidden, i % hidden, g,
                ref[i], err, tol);
  }
}

void epTestCheckUntouched(const uint8_t* buf, size_t from, size_t to, uint8_t byte, const char* what,
                          epTestCheck* chk) {
  for (size_t i = from; i < to; i++)
    if (buf[i] != byte) {
      chk->fail("%s: byte %zu was written (0x%02x, expected the 0x%02x poison/guard to stay)", what, i, buf[i], byte);
      return;
    }
}
