#!/usr/bin/env bash
# session4_x2.sh: the nvidia-h200-x2 call of session 4 (build-gpu carried as build/): LlLinesStress on the
# 2 GPUs, the LL suite at 2 ranks (lines by default) and with EP_LL_LINES=0, the HT direct-path cases at 2 ranks
# (the HT kernels of session 3 on the x2 kind), ep_ll_perf at 2 ranks (T=1,128, hooks, NCCL). Logs under $OUT.
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh
nvidia-smi -L
timeout 40 build/test/ep_gpu_tests --gtest_filter="$LL_STRESS_FILTER" --gtest_color=no > "$O/stress.log" 2>&1
echo "== stress rc=$? ($(el))"; res "$O/stress.log"
timeout 60 "${MPI[@]}" -np 2 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np2.log" 2>&1
echo "== LL suite np2 rc=$? ($(el))"; res "$O/ll_np2.log"
timeout 60 "${MPI[@]}" -np 2 -x EP_LL_LINES=0 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_release_np2.log" 2>&1
echo "== LL suite np2 release rc=$? ($(el))"; res "$O/ll_release_np2.log"
timeout 40 "${MPI[@]}" -np 2 build/bin/ep_ll_perf --tokens 1,128 --iters 40 --warmup 10 > "$O/ll_perf_np2.log" 2>&1
echo "== LL perf np2 rc=$? ($(el))"; grep -E "^\| (1|128) \| (dispatch|combine|nccl)" "$O/ll_perf_np2.log" | grep -v "queued\|per-expert" | cut -c1-110
timeout 120 "${MPI[@]}" -np 2 build/test/ep_gpu_tests --gtest_filter="$HT_DIRECT_ONLY" --gtest_color=no > "$O/ht_direct_np2.log" 2>&1
echo "== HT direct cases np2 rc=$? ($(el))"; res "$O/ht_direct_np2.log"
