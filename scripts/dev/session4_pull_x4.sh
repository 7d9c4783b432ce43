#!/usr/bin/env bash
# session4_pull_x4.sh: first run of the pull LL dispatch (nvidia-h200-x4, build-gpu carried as build/):
# LL suite at 4 ranks (pull default) and with EP_LL_PULL=0, token sweep with NCCL and hook phases,
# EP_LL_PROFILE pass, A/B (push, split 2 / 8), then compute-sanitizer memcheck + racecheck on LlSmall.*
# at 2 ranks. Logs under $OUT.
set -u
cd "$(dirname "$0")/../.." || exit 1
LL_SUITE_RANKS="4" LL_SUITE_EXTRA="EP_LL_PULL=0" LL_SWEEP=${LL_SWEEP:-1,8,32,64,128} LL_PROF=1 \
  LL_AB=${LL_AB:-"EP_LL_PULL=0 EP_LL_PULL=1 EP_LL_RECV_SPLIT=2 EP_LL_RECV_SPLIT=8"} LL_AB_TOKENS=1,32,128 \
  timeout 420 bash scripts/dev/ll_gpu_diag.sh
O=${OUT:-$PWD/ll_out}
NL=$(find / -name 'libnccl.so.2' -not -path '*/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=$PWD/build/lib${NL:+:$(dirname $NL)} NCCL_NVLS_ENABLE=0 EP_TIMEOUT_MS=60000
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck; do
  timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE \
    -x EP_TIMEOUT_MS -np 2 "$SAN" --tool $tool --error-exitcode 9 build/test/ep_gpu_tests --gtest_filter='LlSmall.*' \
    --gtest_color=no > "$O/san_$tool.log" 2>&1
  echo "== $tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$O/san_$tool.log" | sort | uniq -c | head
done
echo "== profile (rank 0)"; grep "rank 0\] EP_LL_PROFILE" "$O/prof.log" | cut -c1-260
echo "== A/B"; grep -E "^== |^\| (1|32|128) \| dispatch \|" "$O/ab.log" | cut -c1-90
cat "$O/summary.txt"
echo "#### main sweep"; grep -E "^\| [0-9]+ \|" "$O/perf.log" | cut -c1-120
