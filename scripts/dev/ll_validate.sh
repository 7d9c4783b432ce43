#!/usr/bin/env bash
# ll_validate.sh: the LL validation and table call (build-gpu or build-gpu-lite carried as build/), NP ranks
# (default 4: nvidia-h200-x4; NP=2 on nvidia-h200-x2): LlLinesStress (SKIP_STRESS=1 leaves it out); the LL suite
# at NP ranks (flagged lines by default), at 2 ranks too when NP=4, again per knob set of SUITE_SET, and with
# EP_LL_LINES=0; compute-sanitizer memcheck + racecheck on LlSmall.* (2 ranks); the LL suite over 2 virtual
# nodes (emulated RDMA: the release protocol); the token sweep with hook phases and the in-run NCCL baseline;
# dispatch A/B at T=1,8,32,64,128 per AB_SET (knobs joined with '+'); hot-expert routing.
# (Was ll_validate_x4.sh, the final call of sessions 4 and 5; session 6 ran it with NP=2 and NP=4.)
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NP=${NP:-4}
if [ "${SKIP_STRESS:-0}" != 1 ]; then
  timeout 60 build/test/ep_gpu_tests --gtest_filter="$LL_STRESS_FILTER" --gtest_color=no > "$O/stress.log" 2>&1
  echo "== stress rc=$? ($(el))"; res "$O/stress.log"
fi
ll_suite ll_np$NP "$NP"
[ "$NP" -gt 2 ] && ll_suite ll_np2 2
n=0
for X in ${SUITE_SET:-} EP_LL_LINES=0; do n=$((n + 1)); ll_suite ll_knobs$n "$NP" "$X"; done
ll_sanitizers
ll_virtual_nodes ll_internode "$NP"
timeout 90 "${MPI[@]}" -np "$NP" build/bin/ep_ll_perf --tokens 1,8,32,64,128 --iters 50 --warmup 20 > "$O/perf.log" 2>&1
echo "== sweep rc=$? ($(el))"
n=0
for X in ${AB_SET:-}; do
  n=$((n + 1))
  timeout 60 "${MPI[@]}" -np "$NP" -x ${X//+/ -x } build/bin/ep_ll_perf --tokens 1,8,32,64,128 --iters 40 --warmup 10 --no-nccl \
    --no-hook --reduce 1 --dedup 1 > "$O/ab$n.log" 2>&1
  echo "== A/B $X rc=$? ($(el))"; grep -E "^\| [0-9]+ \| dispatch \| fp8 dedup" "$O/ab$n.log" | cut -c1-70
done
timeout 40 "${MPI[@]}" -np "$NP" build/bin/ep_ll_perf --tokens 128 --routing hot --no-hook --iters 30 --warmup 10 > "$O/hot.log" 2>&1
echo "== hot rc=$? ($(el))"; grep -E "^\| 128 \| (dispatch|combine|nccl)" "$O/hot.log" | grep -v queued | cut -c1-110
echo "#### sweep"; grep -E "^\| [0-9]+ \|" "$O/perf.log" | grep -v "queued" | cut -c1-120
