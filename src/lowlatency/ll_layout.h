/*************************************************************************
 * epcomm LL: layout of the symmetric LL buffer (host and device share
 * these offsets).
 * SPDX-License-Identifier: Apache-2.0
 *
 * One rank's buffer = [set 0][set 1]. Each set:
 *   signals: int dataCnt[R]  unused (kept zero): data waits are per sending
 *                            block (blkDone)
 *            int ack[R]      uses of this set that peer d has finished
 *                            receiving (flow control, see ll_common.cuh)
 *            u32 blkDone[R][kMaxBlocks]  the epoch of the use once
 *                            block vb of source s has written (and released)
 *                            all its messages here, so a receiver can copy
 *                            a message as soon as the blocks that wrote it
 *                            are done, not when the whole source is
 *   info:    per source s, (2 + L) 64-bit words, each (epoch << 32) | value:
 *            [0] tokens T of s | (sending blocks << 20) (a combine: its
 *            sending blocks), [1] chunk messages s sends here,
 *            [2 + e] tokens of s for local expert e. A word is valid once its
 *            epoch equals the receiver's use number of the set: no separate
 *            flag, no header round trip (dispatch only).
 *   headers: [s][t] one DispatchHdr per (source, token) that has an expert
 *            here: epoch, and per top-k slot the local row (le * M + j) or
 *            -1, and the top-k weight (dispatch only).
 *   routing: (lines dispatch, ll_dispatch_lines.cuh) per source s, [M x K]
 *            tagged 64-bit words (epoch << 32) | (row j << 16 | local
 *            expert), or 0xffffffff when the pick's expert is not here, then
 *            [M x K] tagged weight words: source s stores them at the start of
 *            the call (its counts go to the info words [2 + e] as the release
 *            protocol's do); a receiver's row is base(e, s) + j.
 *   lines:   (lines dispatch) slots [s][t], per 512-channel chunk
 *            kLinesPerChunk flagged 128-byte lines: 7 payload units of 16
 *            bytes (the chunk's 512 FP8 bytes, then its 4 scales) and a flag
 *            unit holding the epoch of the use (ll_lines.cuh). The receiver
 *            takes a line as soon as its flag shows the epoch: no release.
 *            (lines combine, reduced on the sender) slots [d][t]: expert rank
 *            d's partial sum of token t, per 448-channel chunk
 *            kCombineLinesPerChunk lines of 56 BF16 channels each. Both kinds
 *            keep flags at the same offsets (whole 128-byte lines from the
 *            slot start), so a line of one kind never reads as a flag of the
 *            other; every flag holds an epoch of its set, which only grows.
 *   data:    dispatch slots [s][t] (dedup) or [s][t][k] (plain), one message
 *            each; combine slots [d][t] (reduced) or [t][k] (plain), 2H bytes.
 * Signals, info, headers, routing words and lines form the "control" part
 * that epLowLatencyClean zeroes (a stale tag or line flag must never match
 * an epoch of the restarted sequence). Slots are addressed by token index, so a sender never allocates a
 * slot (no atomics, and the receive order is deterministic).
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
constexpr int kWarpsPerBlock = kThreads / 32;  // send work item i is on virtual block (i mod (blocks * this)) / this
constexpr int kMaxRanks = 1024;
constexpr int kMaxBlocks = 256;     // blocks an LL kernel may use (blkDone slots per source)
constexpr int kTokenBits = 16;      // the T word: T in the low bits, the sender's block count and mode above
constexpr int kLineBytes = 128;     // a flagged line: 7 payload units of 16 bytes + 1 flag unit
constexpr int kLineUnits = 7;       // payload units per line
constexpr int kLinesPerChunk = 5;   // 512 FP8 bytes (32 units) + 4 scales (1 unit) = 33 units -> 5 lines
// Lines combine: a chunk is 8 lines (two warp-wide stores of 4 lines) of 7 x 8 BF16 channels each.
constexpr int kCombineLinesPerChunk = 8;
constexpr int kCombineLineChunk = kCombineLinesPerChunk * kLineUnits * 8;  // 448 channels
EP_LL_HD static inline int combineLineChunks(int H) { return (H + kCombineLineChunk - 1) / kCombineLineChunk; }

// Per-(source, token) routing header of a dispatch message.
struct DispatchHdr {
  int epoch;
  int pad[3];
  int pick[kMaxTopk];   // le * M + j for a top-k slot whose expert is local here, else -1
  float w[kMaxTopk];    // the dispatch's top-k weight (0 without weights)
};
static_assert(sizeof(DispatchHdr) % 16 == 0, "header keeps 16-byte alignment");

EP_LL_HD static inline size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

struct Layout {
  int R = 0, M = 0, K = 0, H = 0, E = 0, L = 0;  // maxima the buffer is sized for
  size_t sigBytes = 0;                            // per set
  size_t infoStride = 0;                          // per source
  size_t infoBytes = 0, hdrBytes = 0, routeBytes = 0, ctrlBytes = 0;
  size_t lineStride = 0, lineBytes = 0;           // a (source, token) line slot; the region, per set
  size_t dataBytes = 0;                           // per set
  size_t setBytes = 0;
  size_t total = 0;

  size_t setOff(int b) const { return (size_t)b * setBytes; }
  size_t sigOff(int b) const { return setOff(b); }
  size_t infoOff(int b) const { return setOff(b) + sigBytes; }
  size_t hdrOff(int b) const { return infoOff(b) + infoBytes; }
  size_t routeOff(int b) const { return hdrOff(b) + hdrBytes; }
  size_t lineOff(int b) const { return routeOff(b) + routeBytes; }
  size_t dataOff(int b) const { return setOff(b) + ctrlBytes; }
};

static inline Layout makeLayout(int R, int M, int H, int E, int K) {
  Layout l;
  l.R = R; l.M = M; l.H = H; l.E = E; l.K = K; l.L = E / R;
  l.sigBytes = alignUp(sizeof(int) * (2 + (size_t)kMaxBlocks) * (size_t)R, 128);
  l.infoStride = sizeof(uint64_t) * (2 + (size_t)l.L);
  l.infoBytes = alignUp(l.infoStride * R, 128);
  l.hdrBytes = alignUp(sizeof(DispatchHdr) * (size_t)R * M, 128);
  l.routeBytes = alignUp(2 * sizeof(uint64_t) * (size_t)R * M * K, 128);
  // A slot holds a dispatch message's lines or a reduced combine row's (the larger).
  size_t dLines = (size_t)kLinesPerChunk * (((size_t)H + kChunk - 1) / kChunk);
  size_t cLines = (size_t)kCombineLinesPerChunk * combineLineChunks(H);
  l.lineStride = (size_t)kLineBytes * (dLines > cLines ? dLines : cLines);
  l.lineBytes = l.lineStride * (size_t)R * M;
  l.ctrlBytes = l.sigBytes + l.infoBytes + l.hdrBytes + l.routeBytes + l.lineBytes;
  size_t row2 = 2 * (size_t)H;  // a BF16 row; an FP8 message (H + H/32 bytes) is never larger
  size_t dispatchBytes = (size_t)R * M * K * row2;
  size_t combineSlots = (size_t)M * K > (size_t)R * M ? (size_t)M * K : (size_t)R * M;
  size_t combineBytes = combineSlots * row2;
  l.dataBytes = alignUp(dispatchBytes > combineBytes ? dispatchBytes : combineBytes, 128);
  l.setBytes = l.ctrlBytes + l.dataBytes;
  l.total = 2 * l.setBytes;
  return l;
}

// Signal words inside set b's signal block.
static inline size_t dataCntOff(const Layout& l, int b, int s) { return l.sigOff(b) + sizeof(int) * (size_t)s; }
static inline size_t ackOff(const Layout& l, int b, int d) { return l.sigOff(b) + sizeof(int) * ((size_t)l.R + d); }
// blkDone[s][vb] relative to the set's signal block (R ranks).
EP_LL_HD static inline size_t blkDoneRel(int R, int s, int vb) {
  return sizeof(int) * (2 * (size_t)R + (size_t)s * kMaxBlocks + (size_t)vb);
}

// Lines dispatch: source s's tagged id word of (token t, slot k), and its weight word, relative to the routing region.
EP_LL_HD static inline size_t routeIdRel(int M, int K, int s, int t, int k) {
  return sizeof(uint64_t) * (2 * (size_t)s * M * K + (size_t)t * K + k);
}
EP_LL_HD static inline size_t routeWeightRel(int M, int K, int s, int t, int k) {
  return routeIdRel(M, K, s, t, k) + sizeof(uint64_t) * (size_t)M * K;
}

// Lines combine: chunk c of expert rank d's reduced row of token t, relative to the line region.
EP_LL_HD static inline size_t combineLineRel(int M, size_t lineStride, int d, int t, int c) {
  return ((size_t)d * M + t) * lineStride + (size_t)c * kCombineLinesPerChunk * kLineBytes;
}

// Bytes of one dispatch message for a call.
static inline size_t dispatchMsgStride(int H, bool fp8) { return fp8 ? alignUp((size_t)H + (size_t)H / 32, 16) : 2 * (size_t)H; }

}  // namespace ll
}  // namespace ep

#endif  // EP_LL_LAYOUT_H_
