#!/usr/bin/env bash
# session8_htrace.sh: the HT ring-path dispatch's shared-memory handoffs (every producer lane arrives on a stage's
# full barrier, every issuer lane on its empty barrier): compute-sanitizer racecheck + memcheck on *Small* (2
# ranks), the HT suite at 4 and 2 ranks, and ep_ht_perf on the ring path (4 ranks, 24 SMs, BF16 + FP8).
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
. scripts/gpu_filters.sh
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in racecheck memcheck; do
  EP_TIMEOUT_MS=120000 timeout 300 "${MPI[@]}" -x EP_TIMEOUT_MS -np 2 "$san" --tool $tool --error-exitcode 9 \
    build/test/ep_gpu_tests --gtest_filter='*Small*' --gtest_color=no > "$O/san_$tool.log" 2>&1
  echo "== $tool rc=$? ($(el))"; res "$O/san_$tool.log"; grep -a "Race reported" "$O/san_$tool.log" | sort | uniq -c | head -5
done
for n in 4 2; do
  timeout 200 "${MPI[@]}" -np $n build/test/ep_gpu_tests --gtest_filter="$HT_FILTER" --gtest_color=no > "$O/ht_np$n.log" 2>&1
  echo "== HT suite np$n rc=$? ($(el))"; res "$O/ht_np$n.log"
done
perf ring --  --path ring --sms 24
