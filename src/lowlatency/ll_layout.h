/*************************************************************************
 * epcomm LL: layout of the symmetric LL buffer and of the per-source
 * routing metadata (host and device share these offsets).
 * SPDX-License-Identifier: Apache-2.0
 *
 * One rank's buffer = [set 0][set 1][metadata staging]. Each set:
 *   signals: int metaFlag[R]  epoch of the routing metadata from source s
 *            int dataCnt[R]   chunk messages received from source s (only grows)
 *            int ack[R]       epoch up to which peer d has consumed what we
 *                             wrote into d's copy of this set (flow control)
 *   meta:    R blocks of metaStride: routing of each source (dispatch only)
 *   data:    dispatch slots [s][t] (dedup) or [s][t][k] (plain), one message
 *            each; combine slots [d][t] (reduced) or [t][k] (plain), 2H bytes.
 * Slots are addressed by token index, so a sender never allocates a slot
 * (no atomics, and the receive order is deterministic).
 *
 * Routing metadata of one source (identical for every destination):
 *   int hdr[4]   = {T, hasWeights, 0, 0}
 *   int nMsgs[R] = messages this source sends to each rank (dedup: tokens
 *                  with an expert there; plain: picks there)
 *   int cnt[E]   = tokens of this source per global expert
 *   int pick[M*K]= e*M + j: global expert e and j = rank of the token among
 *                  this source's tokens of e (-1: masked)
 *   float w[M*K] = the dispatch's top-k weights (if hasWeights)
 *************************************************************************/
#ifndef EP_LL_LAYOUT_H_
#define EP_LL_LAYOUT_H_

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define EP_LL_HD __host__ __device__
#else
#define EP_LL_HD
#endif

namespace ep {
namespace ll {

constexpr int kMaxTopk = 16;
constexpr int kChunk = 512;         // channels one warp moves per task (32 lanes x 16)
constexpr int kThreads = 512;       // threads per LL block
constexpr int kMaxRanks = 1024;

EP_LL_HD static inline size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

struct Layout {
  int R = 0, M = 0, K = 0, H = 0, E = 0;  // maxima the buffer is sized for
  size_t sigBytes = 0;                     // per set
  size_t metaStride = 0;                   // per source
  size_t metaNOff = 0, metaCntOff = 0, metaPickOff = 0, metaWOff = 0;
  size_t dataBytes = 0;                    // per set
  size_t setBytes = 0;
  size_t stageOff = 0;                     // metadata staging (local only)
  size_t total = 0;

  size_t setOff(int b) const { return (size_t)b * setBytes; }
  size_t sigOff(int b) const { return setOff(b); }
  size_t metaOff(int b) const { return setOff(b) + sigBytes; }
  size_t dataOff(int b) const { return setOff(b) + sigBytes + (size_t)R * metaStride; }
};

static inline Layout makeLayout(int R, int M, int H, int E, int K) {
  Layout l;
  l.R = R; l.M = M; l.H = H; l.E = E; l.K = K;
  l.sigBytes = alignUp(sizeof(int) * 3 * (size_t)R, 128);
  l.metaNOff = 16;
  l.metaCntOff = 16 + sizeof(int) * (size_t)R;
  l.metaPickOff = alignUp(l.metaCntOff + sizeof(int) * (size_t)E, 16);
  l.metaWOff = l.metaPickOff + sizeof(int) * (size_t)M * K;
  l.metaStride = alignUp(l.metaWOff + sizeof(float) * (size_t)M * K, 128);
  size_t row2 = 2 * (size_t)H;  // a BF16 row; an FP8 message (H + H/32 bytes) is never larger
  size_t dispatchBytes = (size_t)R * M * K * row2;
  size_t combineSlots = (size_t)M * K > (size_t)R * M ? (size_t)M * K : (size_t)R * M;
  size_t combineBytes = combineSlots * row2;
  l.dataBytes = alignUp(dispatchBytes > combineBytes ? dispatchBytes : combineBytes, 128);
  l.setBytes = l.sigBytes + (size_t)R * l.metaStride + l.dataBytes;
  l.stageOff = 2 * l.setBytes;
  l.total = l.stageOff + l.metaStride;
  return l;
}

// Signal word offsets inside a set's signal block.
static inline size_t metaFlagOff(const Layout& l, int b, int s) { return l.sigOff(b) + sizeof(int) * (size_t)s; }
static inline size_t dataCntOff(const Layout& l, int b, int s) {
  return l.sigOff(b) + sizeof(int) * ((size_t)l.R + s);
}
static inline size_t ackOff(const Layout& l, int b, int d) { return l.sigOff(b) + sizeof(int) * (2 * (size_t)l.R + d); }

// Bytes of one dispatch message for a call.
static inline size_t dispatchMsgStride(int H, bool fp8) { return fp8 ? alignUp((size_t)H + (size_t)H / 32, 16) : 2 * (size_t)H; }

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_LAYOUT_H_
