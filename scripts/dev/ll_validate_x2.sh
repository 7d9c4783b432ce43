#!/usr/bin/env bash
# ll_validate_x2.sh: the LL validation call on nvidia-h200-x2 (build-gpu-lite or build-gpu carried as build/):
# LlLinesStress (SKIP_STRESS=1 leaves it out); the LL suite at 2 ranks (flagged lines by default), again per knob
# set of SUITE_SET, and with EP_LL_LINES=0; compute-sanitizer memcheck + racecheck on LlSmall.*; the LL suite
# over 2 virtual nodes x 1 GPU (emulated RDMA: the release protocol); the EP2 token sweep with hook phases and
# the in-run NCCL baseline; dispatch A/B per AB_SET (knobs joined with '+').
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh
if [ "${SKIP_STRESS:-0}" != 1 ]; then
  timeout 60 build/test/ep_gpu_tests --gtest_filter="$LL_STRESS_FILTER" --gtest_color=no > "$O/stress.log" 2>&1
  echo "== stress rc=$? ($(el))"; res "$O/stress.log"
fi
timeout 90 "${MPI[@]}" -np 2 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np2.log" 2>&1
echo "== LL suite np2 rc=$? ($(el))"; res "$O/ll_np2.log"
for X in ${SUITE_SET:-} EP_LL_LINES=0; do
  timeout 90 "${MPI[@]}" -np 2 -x ${X//+/ -x } build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np2_b.log" 2>&1
  echo "== LL suite np2 $X rc=$? ($(el))"; res "$O/ll_np2_b.log"
done
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck; do
  EP_TIMEOUT_MS=60000 timeout 120 "${MPI[@]}" -np 2 "$SAN" --tool $tool --error-exitcode 9 build/test/ep_gpu_tests \
    --gtest_filter='LlSmall.*' --gtest_color=no > "$O/san_$tool.log" 2>&1
  echo "== $tool rc=$? ($(el))"; res "$O/san_$tool.log"
done
timeout 90 "${MPI[@]}" -x EP_EMULATE_NODES=2 -x EP_NET=emulated -x EP_INTERNODE_MAX_HIDDEN=8192 -x CUDA_MODULE_LOADING=EAGER \
  -np 2 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_internode_np2.log" 2>&1
echo "== LL suite over 2 virtual nodes np2 rc=$? ($(el))"; res "$O/ll_internode_np2.log"
timeout 90 "${MPI[@]}" -np 2 build/bin/ep_ll_perf --tokens 1,8,32,64,128 --iters 50 --warmup 20 > "$O/perf.log" 2>&1
echo "== sweep rc=$? ($(el))"; grep -E "^\| [0-9]+ \|" "$O/perf.log" | grep -v "queued" | cut -c1-120
n=0
for X in ${AB_SET:-}; do
  n=$((n + 1))
  timeout 60 "${MPI[@]}" -np 2 -x ${X//+/ -x } build/bin/ep_ll_perf --tokens 1,32,128 --iters 40 --warmup 10 --no-nccl --no-hook \
    --reduce 1 --dedup 1 > "$O/ab$n.log" 2>&1
  echo "== A/B $X rc=$? ($(el))"; grep -E "^\| [0-9]+ \| dispatch \| fp8 dedup" "$O/ab$n.log" | cut -c1-70
done
