#!/usr/bin/env bash
# session5_x4.sh: first nvidia-h200-x4 call of session 5 (build-gpu carried as build/): the LL suite at 4
# ranks (commits of session 4 not yet run on a GPU), the unprofiled dispatch A/B of QUICK_SET at T=1,32,128,
# then EP_LL_PROFILE=2 (per-block timeline) for each set of TL_SET at T=1,128: rank 0's timeline in full,
# the other ranks' head lines (first-start stamps to compare clocks across GPUs).
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh
if [ "${SKIP_SUITE:-0}" != 1 ]; then
  timeout 90 "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np4.log" 2>&1
  echo "== LL suite np4 rc=$? ($(el))"; res "$O/ll_np4.log"
  for X in ${SUITE_SET:-}; do  # the suite again with each knob set (A/B candidates)
    timeout 90 "${MPI[@]}" -np 4 -x ${X//+/ -x } build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np4_b.log" 2>&1
    echo "== LL suite np4 $X rc=$? ($(el))"; res "$O/ll_np4_b.log"
  done
fi
n=0
for X in ${QUICK_SET:-EP_LL_ROUTE_BY=0 EP_LL_ROUTE_BY=1 EP_LL_LINES=0}; do
  n=$((n + 1))
  timeout 60 "${MPI[@]}" -np 4 -x ${X//+/ -x } build/bin/ep_ll_perf --tokens 1,32,128 --iters 40 --warmup 10 --no-nccl --no-hook \
    --reduce 1 --dedup 1 > "$O/q$n.log" 2>&1
  echo "== $X rc=$? ($(el))"; grep -E "^\| (1|32|128) \| dispatch \|" "$O/q$n.log" | cut -c1-70
done
n=0
for X in ${TL_SET:-EP_LL_ROUTE_BY=0 EP_LL_ROUTE_BY=1 EP_LL_LINES=0}; do
  n=$((n + 1))
  timeout 60 "${MPI[@]}" -np 4 -x EP_LL_PROFILE=2 -x ${X//+/ -x } build/bin/ep_ll_perf --tokens 1,128 --iters 30 --warmup 10 \
    --no-nccl --no-hook --reduce 1 --dedup 1 > "$O/tl$n.log" 2>&1
  echo "== timeline $X rc=$? ($(el))"
  grep "rank 0\] EP_LL_PROFILE dispatch" "$O/tl$n.log" | sed 's/EP_LL_PROFILE //; s/calls=[0-9]* //' | cut -c1-360
  grep "rank 0\] EP_LL_TIMELINE" "$O/tl$n.log" | cut -c1-1000
  grep "EP_LL_TIMELINE [lr]" "$O/tl$n.log" | grep -v "rank 0\]" | sort | cut -c1-200
done
