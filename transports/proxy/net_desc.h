/*************************************************************************
 * epcomm: the network work descriptor that kernels post and a backend runs.
 * SPDX-License-Identifier: Apache-2.0
 *
 * A descriptor names memory by (window, offset), never by pointer: windows
 * are symmetric regions registered collectively (epNetRegisterWindow), so the
 * same descriptor means the same thing to the CPU proxy over verbs, to the
 * emulated copy-engine backend and to a future GPU-initiated (IBGDA) backend,
 * which resolves (window, peer) to an rkey/address on the device. Kernels
 * never see keys or addresses of remote memory.
 *
 * Operations (RDMA semantics, per (peer, channel) in posting order):
 *   PUT         copy `bytes` from local (srcWin, srcOff) to peer (dstWin, dstOff)
 *   PUT_SIGNAL  PUT, then apply the signal; the signal becomes visible at the
 *               peer only after the data of this PUT (and of every earlier op
 *               of the same (peer, channel)) has landed
 *   SIGNAL      apply the signal only, ordered after earlier ops likewise
 * Signal: a 64-bit word at peer (sigWin, 8 * sigSlot); sigOp ADD adds
 * (int64)sigValue, SET stores (uint64)(uint32)sigValue.
 *
 * Encoding: 32 bytes, four little-endian 64-bit words, so a GPU thread
 * writes it with two 16-byte stores:
 *   w0 = op:4 | sigOp:4 | srcWin:8 | dstWin:8 | sigWin:8 | peer:32
 *   w1 = srcOff:48 | sigSlot[15:0]:16
 *   w2 = dstOff:48 | sigSlot[31:16]:16
 *   w3 = bytes:32  | sigValue:32
 * Limits that follow: offsets < 2^48, bytes < 2^32, 256 windows, 2^32 signal slots.
 * Header usable from host C++ and CUDA.
 *************************************************************************/
#ifndef EP_TRANSPORT_NET_DESC_H_
#define EP_TRANSPORT_NET_DESC_H_

#include <cstdint>

#if defined(__CUDACC__)
#define EP_HD __host__ __device__ __forceinline__
#else
#define EP_HD inline
#endif

enum epNetOp : uint32_t {
  EP_NET_OP_INVALID = 0, /* a zeroed slot never decodes to work */
  EP_NET_OP_PUT = 1,
  EP_NET_OP_PUT_SIGNAL = 2,
  EP_NET_OP_SIGNAL = 3,
  EP_NET_OP_COUNT = 4
};

enum epNetSigOp : uint32_t { EP_NET_SIG_ADD = 0, EP_NET_SIG_SET = 1 };

#define EP_NET_MAX_WINDOWS 256
#define EP_NET_MAX_OFFSET ((1ull << 48) - 1)

/* Wire form (in the ring). */
struct alignas(16) epNetDesc {
  uint64_t w[4];
};
static_assert(sizeof(epNetDesc) == 32, "descriptor must stay 32 bytes");

/* Decoded form, what backends consume. */
struct epNetOpFields {
  uint32_t op;
  uint32_t sigOp;
  uint32_t srcWin, dstWin, sigWin;
  int32_t peer;
  uint64_t srcOff, dstOff;
  uint32_t bytes;
  uint32_t sigSlot;
  int32_t sigValue;
};

EP_HD epNetDesc epNetEncode(const epNetOpFields& f) {
  epNetDesc d;
  const uint64_t m48 = EP_NET_MAX_OFFSET;
  d.w[0] = (uint64_t)(f.op & 0xf) | ((uint64_t)(f.sigOp & 0xf) << 4) | ((uint64_t)(f.srcWin & 0xff) << 8) |
           ((uint64_t)(f.dstWin & 0xff) << 16) | ((uint64_t)(f.sigWin & 0xff) << 24) |
           ((uint64_t)(uint32_t)f.peer << 32);
  d.w[1] = (f.srcOff & m48) | ((uint64_t)(f.sigSlot & 0xffff) << 48);
  d.w[2] = (f.dstOff & m48) | ((uint64_t)(f.sigSlot >> 16) << 48);
  d.w[3] = (uint64_t)f.bytes | ((uint64_t)(uint32_t)f.sigValue << 32);
  return d;
}

EP_HD epNetOpFields epNetDecode(const epNetDesc& d) {
  epNetOpFields f;
  const uint64_t m48 = EP_NET_MAX_OFFSET;
  f.op = (uint32_t)(d.w[0] & 0xf);
  f.sigOp = (uint32_t)((d.w[0] >> 4) & 0xf);
  f.srcWin = (uint32_t)((d.w[0] >> 8) & 0xff);
  f.dstWin = (uint32_t)((d.w[0] >> 16) & 0xff);
  f.sigWin = (uint32_t)((d.w[0] >> 24) & 0xff);
  f.peer = (int32_t)(uint32_t)(d.w[0] >> 32);
  f.srcOff = d.w[1] & m48;
  f.dstOff = d.w[2] & m48;
  f.sigSlot = (uint32_t)(d.w[1] >> 48) | ((uint32_t)(d.w[2] >> 48) << 16);
  f.bytes = (uint32_t)(d.w[3] & 0xffffffffu);
  f.sigValue = (int32_t)(uint32_t)(d.w[3] >> 32);
  return f;
}

EP_HD bool epNetOpHasData(uint32_t op) { return op == EP_NET_OP_PUT || op == EP_NET_OP_PUT_SIGNAL; }
EP_HD bool epNetOpHasSignal(uint32_t op) { return op == EP_NET_OP_PUT_SIGNAL || op == EP_NET_OP_SIGNAL; }

/* Checks what the encoding cannot represent or a backend cannot run; the
 * device post functions call it before writing a slot, the proxy again on
 * decode (a corrupted slot must not become a wild write). Returns 0 when
 * valid, else a small positive code naming the first bad field. */
enum epNetDescError : int {
  EP_NET_DESC_OK = 0,
  EP_NET_DESC_BAD_OP = 1,
  EP_NET_DESC_BAD_PEER = 2,
  EP_NET_DESC_BAD_WINDOW = 3,
  EP_NET_DESC_BAD_OFFSET = 4,
  EP_NET_DESC_BAD_SIGOP = 5
};

EP_HD int epNetValidate(const epNetOpFields& f, int nranks, int nwindows) {
  if (f.op == EP_NET_OP_INVALID || f.op >= EP_NET_OP_COUNT) return EP_NET_DESC_BAD_OP;
  if (f.peer < 0 || f.peer >= nranks) return EP_NET_DESC_BAD_PEER;
  if (epNetOpHasData(f.op)) {
    if ((int)f.srcWin >= nwindows || (int)f.dstWin >= nwindows) return EP_NET_DESC_BAD_WINDOW;
    if (f.srcOff > EP_NET_MAX_OFFSET || f.dstOff > EP_NET_MAX_OFFSET) return EP_NET_DESC_BAD_OFFSET;
  }
  if (epNetOpHasSignal(f.op)) {
    if ((int)f.sigWin >= nwindows) return EP_NET_DESC_BAD_WINDOW;
    if (f.sigOp != EP_NET_SIG_ADD && f.sigOp != EP_NET_SIG_SET) return EP_NET_DESC_BAD_SIGOP;
  }
  return EP_NET_DESC_OK;
}

#endif  // EP_TRANSPORT_NET_DESC_H_
