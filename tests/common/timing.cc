/*************************************************************************
 * epcomm tests: timing of GPU calls with CUDA events.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "tests/common/timing.h"

#include <algorithm>
#include <cstdio>

double epTestMedian(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define TIMING_CUDA(call)                                                                         \
  do {                                                                                            \
    cudaError_t e_ = (call);                                                                      \
    if (e_ != cudaSuccess) {                                                                      \
      fprintf(stderr, "timing: %s failed: %s\n", #call, cudaGetErrorString(e_));                  \
      res = epCudaError;                                                                          \
      goto done;                                                                                  \
    }                                                                                             \
  } while (0)

epResult_t epTestTimeCalls(cudaStream_t stream, int warmup, int iters, int numSets,
                           const std::function<epResult_t(int set)>& call, epTestTiming* out) {
  epResult_t res = epSuccess;
  std::vector<cudaEvent_t> ev(2 * (size_t)std::max(iters, 0), nullptr);
  std::vector<double> us;
  if (numSets < 1) numSets = 1;
  if (iters < 1) return epInvalidArgument;
  for (auto& e : ev) TIMING_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < warmup; i++)
    if ((res = call(i % numSets)) != epSuccess) goto done;
  for (int i = 0; i < iters; i++) {
    TIMING_CUDA(cudaEventRecord(ev[2 * i], stream));
    if ((res = call(i % numSets)) != epSuccess) goto done;
    TIMING_CUDA(cudaEventRecord(ev[2 * i + 1], stream));
  }
  TIMING_CUDA(cudaStreamSynchronize(stream));
  for (int i = 0; i < iters; i++) {
    float ms = 0;
    TIMING_CUDA(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
    us.push_back(ms * 1000.0);
  }
  out->samples = iters;
  out->medianUs = epTestMedian(us);
  out->minUs = *std::min_element(us.begin(), us.end());
  out->maxUs = *std::max_element(us.begin(), us.end());
  out->meanUs = 0;
  for (double u : us) out->meanUs += u / iters;
done:
  for (auto& e : ev)
    if (e) cudaEventDestroy(e);
  return res;
}
