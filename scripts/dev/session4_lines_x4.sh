#!/usr/bin/env bash
# session4_lines_x4.sh: the flagged-line LL dispatch with receiver-derived routing (nvidia-h200-x4,
# build-gpu carried as build/): LlLinesStress, LL suite at 4 ranks (lines default) and with EP_LL_LINES=0,
# token sweep with NCCL and hook phases, EP_LL_PROFILE, A/B of EP_LL_SEND_SMS and the release protocol,
# compute-sanitizer memcheck + racecheck on LlSmall.* at 2 ranks. Logs under $OUT.
set -u
cd "$(dirname "$0")/../.." || exit 1
O=${OUT:-$PWD/ll_out}; mkdir -p "$O"
NL=$(find / -name 'libnccl.so.2' -not -path '*/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=$PWD/build/lib${NL:+:$(dirname $NL)} NCCL_NVLS_ENABLE=0
timeout 60 build/test/ep_gpu_tests --gtest_filter='LlLinesStress.*' --gtest_color=no > "$O/stress.log" 2>&1
echo "== stress rc=$?"; grep -aE "LlLinesStress \]|PASSED|FAILED" "$O/stress.log" | cut -c1-220
LL_SUITE_RANKS="4" LL_SUITE_EXTRA="EP_LL_LINES=0" LL_SWEEP=${LL_SWEEP:-1,8,32,64,128} LL_PROF=1 \
  LL_AB=${LL_AB:-"EP_LL_LINES=0 EP_LL_SEND_SMS=0 EP_LL_SEND_SMS=24 EP_LL_SEND_SMS=32"} LL_AB_TOKENS=1,32,128 \
  timeout 400 bash scripts/dev/ll_gpu_diag.sh > "$O/diag.out" 2>&1
export EP_TIMEOUT_MS=60000
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in ${SAN_TOOLS-memcheck racecheck}; do
  timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE \
    -x EP_TIMEOUT_MS -np 2 "$SAN" --tool $tool --error-exitcode 9 build/test/ep_gpu_tests --gtest_filter='LlSmall.*' \
    --gtest_color=no > "$O/san_$tool.log" 2>&1
  echo "== $tool rc=$?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|PASSED|FAILED" "$O/san_$tool.log" | sort | uniq -c | head
done
echo "== profile (rank 0, dispatch)"; grep "rank 0\] EP_LL_PROFILE dispatch" "$O/prof.log" | sed 's/EP_LL_PROFILE //; s/calls=[0-9]* //' | cut -c1-330
echo "== A/B"; grep -E "^== |^\| (1|32|128) \| dispatch \|" "$O/ab.log" | grep -v per-expert | cut -c1-90
cat "$O/summary.txt"; grep -B2 -A8 "Failure" "$O"/suite_*.log 2>/dev/null | head -30
echo "#### main sweep"; grep -E "^\| [0-9]+ \|" "$O/perf.log" | grep -v "launch floor\|icache" | cut -c1-120
