#!/usr/bin/env bash
# session4_table_x4.sh: the committed LL table of session 4 (nvidia-h200-x4, build-gpu carried as build/):
# LL suite at 4 ranks, the token sweep (defaults: lines for non-hooked calls, release for hooked ones) with hook
# phases and the in-run NCCL baseline, then the same dispatch sweep with EP_LL_LINES=0 (release everywhere).
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh
timeout 60 "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np4.log" 2>&1
echo "== LL suite np4 rc=$?"; grep -aE "^\[  (PASSED|FAILED)" "$O/ll_np4.log" | sort | uniq -c
timeout 60 "${MPI[@]}" -np 4 build/bin/ep_ll_perf --tokens 1,8,32,64,128 --iters 50 --warmup 20 > "$O/sweep.log" 2>&1
echo "== sweep rc=$?"
timeout 40 "${MPI[@]}" -np 4 -x EP_LL_LINES=0 build/bin/ep_ll_perf --tokens 1,8,32,64,128 --iters 50 --warmup 20 --no-nccl \
  --no-hook --reduce 1 --dedup 1 > "$O/release.log" 2>&1
echo "== release rc=$?"; grep -E "^\| [0-9]+ \| dispatch \|" "$O/release.log" | cut -c1-80
echo "#### sweep"; grep -E "^\| [0-9]+ \| (dispatch|combine|nccl)" "$O/sweep.log" | grep -v "queued" | cut -c1-120
