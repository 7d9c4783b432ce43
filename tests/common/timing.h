/*************************************************************************
 * epcomm tests: timing of GPU calls, per /work/shared/BENCHMARKS.md.
 * SPDX-License-Identifier: Apache-2.0
 *
 * epTestTimeCalls() runs `warmup` untimed calls, then `iters` calls, each
 * bracketed by its own pair of CUDA events on `stream`, back to back (no host
 * sync between calls unless the call itself syncs, e.g. HT mode a). Call i
 * uses input set i % numSets: rotate >= 2 sets so that L2 cannot keep the
 * inputs. The result is the median (and min/mean/max) of the per-call times.
 *************************************************************************/
#ifndef EP_TESTS_TIMING_H_
#define EP_TESTS_TIMING_H_

#include <functional>
#include <vector>

#include <cuda_runtime_api.h>

#include "epcomm.h"

struct epTestTiming {
  double medianUs = 0, minUs = 0, meanUs = 0, maxUs = 0;
  int samples = 0;
};

/* `call(set)` enqueues one call on `stream` and returns epSuccess (any other
 * value stops the timing and is returned). iters must be >= 1; BENCHMARKS.md
 * asks for >= 20 (the perf binaries enforce it). */
epResult_t epTestTimeCalls(cudaStream_t stream, int warmup, int iters, int numSets,
                           const std::function<epResult_t(int set)>& call, epTestTiming* out);

/* Median of a sample (by value). */
double epTestMedian(std::vector<double> v);

#endif  // EP_TESTS_TIMING_H_
