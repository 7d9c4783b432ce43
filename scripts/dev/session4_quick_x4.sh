#!/usr/bin/env bash
# session4_quick_x4.sh: quick LL dispatch iteration (nvidia-h200-x4, build-gpu carried as build/):
# LlSmall + LlDispatchCombine at 4 ranks, then per knob set in QUICK_SET (default: lines, lines with
# EP_LL_SEND_SMS=24, release) the unprofiled dispatch at T=1,32,128, then one EP_LL_PROFILE pass
# (first set) with the receiving-block stamps of rank 0.
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
timeout 60 "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter='LlSmall.*:LlDispatchCombine.*' --gtest_color=no > "$O/suite.log" 2>&1
echo "== suite rc=$?"; grep -E "^\[  (PASSED|FAILED)" "$O/suite.log"; grep -A6 "Failure" "$O/suite.log" | head -20
SET=${QUICK_SET:-"EP_LL_LINES=1 EP_LL_SEND_SMS=24 EP_LL_LINES=0"}
n=0
for X in $SET; do
  n=$((n + 1))
  timeout 60 "${MPI[@]}" -np 4 -x $X build/bin/ep_ll_perf --tokens 1,32,128 --iters 40 --warmup 10 --no-nccl --no-hook \
    --reduce 1 --dedup 1 > "$O/q$n.log" 2>&1
  echo "== $X rc=$?"; grep -E "^\| (1|32|128) \| dispatch \|" "$O/q$n.log" | cut -c1-70
done
X1=${SET%% *}
timeout 60 "${MPI[@]}" -np 4 -x EP_LL_PROFILE=1 -x $X1 build/bin/ep_ll_perf --tokens 1,128 --iters 30 --warmup 10 --no-nccl \
  --no-hook --reduce 1 --dedup 1 > "$O/prof.log" 2>&1
echo "== profile $X1 rc=$?"; grep "rank 0\] EP_LL_PROFILE dispatch" "$O/prof.log" | sed 's/EP_LL_PROFILE //; s/calls=[0-9]* //' | cut -c1-360
