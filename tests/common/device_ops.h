/*************************************************************************
 * epcomm tests: small device kernels shared by the GPU suites and perf binaries.
 * SPDX-License-Identifier: Apache-2.0
 *
 *  - epTestGatherRows: the permutation a user of a plain alltoallv must run to
 *    build its send buffer (dst row i = src row idx[i], optionally with a
 *    second segment, e.g. FP8 scales, packed after it). Part of the timed NCCL
 *    baseline.
 *  - epTestReduceRowsBf16: the matching combine-side reduction (out[t] = fp32
 *    sum of the rows listed for t, to BF16), also part of the baseline.
 *  - epTestCount*: compare on the device and ADD the number of mismatches to a
 *    device counter, so long back-to-back loops can be checked without a host
 *    sync per iteration.
 * All launch on `stream` and return cudaGetLastError().
 *************************************************************************/
#ifndef EP_TESTS_DEVICE_OPS_H_
#define EP_TESTS_DEVICE_OPS_H_

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

/* dst[i] = src0[idx[i]] (bytes0) ++ src1[idx[i]] (bytes1, may be 0/NULL).
 * Row strides are the segment sizes. 16-byte copies when every size and
 * pointer allows it. */
cudaError_t epTestGatherRows(void* dst, const void* src0, size_t bytes0, const void* src1, size_t bytes1,
                             const int32_t* idx, int numRows, cudaStream_t stream);

/* out[t] (BF16, [numTokens x hidden]) = BF16(sum over j in [off[t], off[t+1]) of rows[list[j]]), fp32 sum. */
cudaError_t epTestReduceRowsBf16(void* out, const void* rows, const int32_t* off, const int32_t* list, int numTokens,
                                 int hidden, cudaStream_t stream);

/* *counter += number of bytes where a and b differ. */
cudaError_t epTestCountByteMismatch(const void* a, const void* b, size_t bytes, unsigned long long* counter,
                                    cudaStream_t stream);

/* *counter += number of i with !(|bf16(got[i]) - ref[i]| <= tol[i]). */
cudaError_t epTestCountBf16OutOfTol(const void* got, const float* ref, const float* tol, size_t n,
                                    unsigned long long* counter, cudaStream_t stream);

#endif  // EP_TESTS_DEVICE_OPS_H_
