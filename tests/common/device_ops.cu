/*************************************************************************
 * epcomm tests: small device kernels shared by the GPU suites and perf binaries.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/device_ops.h"

#include <cuda_bf16.h>

namespace {

template <typename V>
__global__ void gatherRows(char* dst, const char* src0, size_t n0, const char* src1, size_t n1,
                           const int32_t* idx, int numRows) {
  const size_t v0 = n0 / sizeof(V), v1 = n1 / sizeof(V), vrow = v0 + v1;
  for (int r = blockIdx.x; r < numRows; r += gridDim.x) {
    const int s = idx[r];
    V* d = (V*)(dst + (size_t)r * (n0 + n1));
    const V* a = (const V*)(src0 + (size_t)s * n0);
    for (size_t i = threadIdx.x; i < vrow; i += blockDim.x)
      d[i] = i < v0 ? a[i] : ((const V*)(src1 + (size_t)s * n1))[i - v0];
  }
}

// 8 BF16 per thread with 16-byte loads when hidden allows, else 2.
template <int V>
__global__ void reduceRowsBf16(__nv_bfloat16* out, const __nv_bfloat16* rows, const int32_t* off,
                               const int32_t* list, int numTokens, int hidden) {
  for (int t = blockIdx.x; t < numTokens; t += gridDim.x) {
    const int lo = off[t], hi = off[t + 1];
    for (int h = threadIdx.x * V; h < hidden; h += blockDim.x * V) {
      float acc[V];
#pragma unroll
      for (int v = 0; v < V; v++) acc[v] = 0.f;
      for (int j = lo; j < hi; j++) {
        const __nv_bfloat16* src = rows + (size_t)list[j] * hidden + h;
        if (V == 8) {
          int4 raw = *reinterpret_cast<const int4*>(src);
          const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
          for (int v = 0; v < V / 2; v++) {
            float2 f = __bfloat1622float2(b[v]);
            acc[2 * v] += f.x;
            acc[2 * v + 1] += f.y;
          }
        } else {
          float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src));
          acc[0] += f.x;
          acc[1] += f.y;
        }
      }
      __nv_bfloat162 o[V / 2];
#pragma unroll
      for (int v = 0; v < V / 2; v++) o[v] = __floats2bfloat162_rn(acc[2 * v], acc[2 * v + 1]);
      if (V == 8)
        *reinterpret_cast<int4*>(out + (size_t)t * hidden + h) = *reinterpret_cast<int4*>(o);
      else
        *reinterpret_cast<__nv_bfloat162*>(out + (size_t)t * hidden + h) = o[0];
    }
  }
}

__global__ void countByteMismatch(const uint8_t* a, const uint8_t* b, size_t n, unsigned long long* counter) {
  unsigned long long bad = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    bad += a[i] != b[i];
  for (int o = 16; o > 0; o >>= 1) bad += __shfl_xor_sync(0xffffffffu, bad, o);
  if ((threadIdx.x & 31) == 0 && bad) atomicAdd(counter, bad);
}

__global__ void countBf16OutOfTol(const __nv_bfloat16* got, const float* ref, const float* tol, size_t n,
                                  unsigned long long* counter) {
  unsigned long long bad = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    bad += !(fabsf(__bfloat162float(got[i]) - ref[i]) <= tol[i]);
  for (int o = 16; o > 0; o >>= 1) bad += __shfl_xor_sync(0xffffffffu, bad, o);
  if ((threadIdx.x & 31) == 0 && bad) atomicAdd(counter, bad);
}

int gridFor(size_t work, int perBlock) {
  size_t g = (work + perBlock - 1) / perBlock;
  return (int)(g < 1 ? 1 : (g > 4096 ? 4096 : g));
}
}  // namespace

cudaError_t epTestGatherRows(void* dst, const void* src0, size_t bytes0, const void* src1, size_t bytes1,
                             const int32_t* idx, int numRows, cudaStream_t stream) {
  if (numRows <= 0) return cudaSuccess;
  const int blocks = numRows < 1024 ? numRows : 1024;  // a block per row, grid-stride
  // Widest copy unit that every size and pointer allows (16, 8, 4 or 1 bytes).
  const uintptr_t all = (uintptr_t)dst | (uintptr_t)src0 | (uintptr_t)src1 | bytes0 | bytes1;
  const char* s0 = (const char*)src0;
  const char* s1 = (const char*)src1;
  if (all % 16 == 0)
    gatherRows<int4><<<blocks, 256, 0, stream>>>((char*)dst, s0, bytes0, s1, bytes1, idx, numRows);
  else if (all % 8 == 0)
    gatherRows<int2><<<blocks, 256, 0, stream>>>((char*)dst, s0, bytes0, s1, bytes1, idx, numRows);
  else if (all % 4 == 0)
    gatherRows<int><<<blocks, 256, 0, stream>>>((char*)dst, s0, bytes0, s1, bytes1, idx, numRows);
  else
    gatherRows<char><<<blocks, 256, 0, stream>>>((char*)dst, s0, bytes0, s1, bytes1, idx, numRows);
  return cudaGetLastError();
}

cudaError_t epTestReduceRowsBf16(void* out, const void* rows, const int32_t* off, const int32_t* list, int numTokens,
                                 int hidden, cudaStream_t stream) {
  if (numTokens <= 0) return cudaSuccess;
  if (hidden % 2) return cudaErrorInvalidValue;
  const int blocks = numTokens < 1024 ? numTokens : 1024;
  if (hidden % 8 == 0 && ((uintptr_t)out | (uintptr_t)rows) % 16 == 0)
    reduceRowsBf16<8><<<blocks, 128, 0, stream>>>((__nv_bfloat16*)out, (const __nv_bfloat16*)rows, off, list,
                                                   numTokens, hidden);
  else
    reduceRowsBf16<2><<<blocks, 256, 0, stream>>>((__nv_bfloat16*)out, (const __nv_bfloat16*)rows, off, list,
                                                  numTokens, hidden);
  return cudaGetLastError();
}

cudaError_t epTestCountByteMismatch(const void* a, const void* b, size_t bytes, unsigned long long* counter,
                                    cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  countByteMismatch<<<gridFor(bytes, 1024), 256, 0, stream>>>((const uint8_t*)a, (const uint8_t*)b, bytes, counter);
  return cudaGetLastError();
}

cudaError_t epTestCountBf16OutOfTol(const void* got, const float* ref, const float* tol, size_t n,
                                    unsigned long long* counter, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  countBf16OutOfTol<<<gridFor(n, 1024), 256, 0, stream>>>((const __nv_bfloat16*)got, ref, tol, n, counter);
  return cudaGetLastError();
}
