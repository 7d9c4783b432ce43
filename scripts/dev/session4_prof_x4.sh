#!/usr/bin/env bash
# session4_prof_x4.sh: short LL profile call (nvidia-h200-x4): LlSmall + LlDispatchCombine.Formats at 4 ranks,
# then EP_LL_PROFILE at T=1,128 (pull and push), rank lines of the dispatch buckets. Extra env for the
# profile passes: PROF_ENV="EP_X=1 ..." (each value one more pass).
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
timeout 60 "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter='LlSmall.*:LlDispatchCombine.*' --gtest_color=no > "$O/suite.log" 2>&1
echo "== suite rc=$?"; grep -E "^\[  (PASSED|FAILED)" "$O/suite.log"
for X in ${PROF_SET:-EP_LL_LINES=1 EP_LL_LINES=0} ${PROF_ENV:-}; do
  timeout 60 "${MPI[@]}" -np 4 -x EP_LL_PROFILE=1 -x $X build/bin/ep_ll_perf --tokens 1,128 --iters 30 --warmup 10 --no-nccl \
    --no-hook --reduce 1 > "$O/prof_$X.log" 2>&1
  echo "== $X rc=$?"; grep -E "^\| (1|128) \| dispatch \|" "$O/prof_$X.log" | cut -c1-70
  grep "EP_LL_PROFILE dispatch" "$O/prof_$X.log" | sort | sed 's/EP_LL_PROFILE //; s/calls=[0-9]* //' | cut -c1-330
done
