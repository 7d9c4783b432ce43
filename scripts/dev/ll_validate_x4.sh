#!/usr/bin/env bash
# ll_validate_x4.sh: the LL validation and table call (nvidia-h200-x4, build-gpu carried as build/; the final call
# of sessions 4 and 5): LlLinesStress (SKIP_STRESS=1 leaves it out); LL suite at 4 and 2 ranks (flagged lines by
# default) and at 4 ranks with EP_LL_LINES=0;
# compute-sanitizer memcheck + racecheck on LlSmall.* (2 ranks); the LL suite over 2 virtual nodes
# (remote peers through the emulated RDMA proxy: the release protocol); the token sweep with hook phases
# and the in-run NCCL baseline; A/B at T=1,8,32,64,128 per knob set in AB_SET (default EP_LL_LINES=0); hot-expert
# routing.
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh
if [ "${SKIP_STRESS:-0}" != 1 ]; then
  timeout 60 build/test/ep_gpu_tests --gtest_filter="$LL_STRESS_FILTER" --gtest_color=no > "$O/stress.log" 2>&1
  echo "== stress rc=$? ($(el))"; res "$O/stress.log"
fi
for n in 4 2; do
  timeout 90 "${MPI[@]}" -np $n build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np$n.log" 2>&1
  echo "== LL suite np$n rc=$? ($(el))"; res "$O/ll_np$n.log"
done
timeout 90 "${MPI[@]}" -np 4 -x EP_LL_LINES=0 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_release_np4.log" 2>&1
echo "== LL suite np4 EP_LL_LINES=0 rc=$? ($(el))"; res "$O/ll_release_np4.log"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck; do
  EP_TIMEOUT_MS=60000 timeout 120 "${MPI[@]}" -np 2 "$SAN" --tool $tool --error-exitcode 9 build/test/ep_gpu_tests \
    --gtest_filter='LlSmall.*' --gtest_color=no > "$O/san_$tool.log" 2>&1
  echo "== $tool rc=$? ($(el))"; res "$O/san_$tool.log"
done
timeout 90 "${MPI[@]}" -x EP_EMULATE_NODES=2 -x EP_NET=emulated -x EP_INTERNODE_MAX_HIDDEN=8192 -x CUDA_MODULE_LOADING=EAGER \
  -np 4 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_internode_np4.log" 2>&1
echo "== LL suite over 2 virtual nodes np4 rc=$? ($(el))"; res "$O/ll_internode_np4.log"
timeout 90 "${MPI[@]}" -np 4 build/bin/ep_ll_perf --tokens 1,8,32,64,128 --iters 50 --warmup 20 > "$O/perf.log" 2>&1
echo "== sweep rc=$? ($(el))"
n=0
for X in ${AB_SET:-EP_LL_LINES=0}; do
  n=$((n + 1))
  timeout 60 "${MPI[@]}" -np 4 -x $X build/bin/ep_ll_perf --tokens 1,8,32,64,128 --iters 40 --warmup 10 --no-nccl --no-hook \
    --reduce 1 > "$O/ab$n.log" 2>&1
  echo "== A/B $X rc=$? ($(el))"; grep -E "^\| [0-9]+ \| dispatch \| fp8 dedup" "$O/ab$n.log" | cut -c1-70
done
timeout 40 "${MPI[@]}" -np 4 build/bin/ep_ll_perf --tokens 128 --routing hot --no-hook --iters 30 --warmup 10 > "$O/hot.log" 2>&1
echo "== hot rc=$? ($(el))"; grep -E "^\| 128 \| (dispatch|combine|nccl)" "$O/hot.log" | grep -v queued | cut -c1-110
echo "#### sweep"; grep -E "^\| [0-9]+ \|" "$O/perf.log" | grep -v "queued" | cut -c1-120
