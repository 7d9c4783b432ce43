#!/usr/bin/env bash
# session3_final_x4.sh: the lead's closing nvidia-h200-x4 call of session 3, in priority order with a
# time guard (steps after ~420 s are skipped and say so): HT suite at 4 ranks; the HT perf table
# (direct path, mode b = notify + dispatch as one call, SM sweep, in-run NCCL, -c check); PDL A/B;
# HT suite at 2 ranks; LL suite at 4 ranks; memcheck + racecheck on the small direct cases at 2
# ranks; hot-expert routing. Summary last; logs in $OUT/logs.tgz.
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh  # $O, the environment
mkdir -p "$O/s"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
SUM=()
step() {  # name, timeout, log, command...
  local name=$1 to=$2 log=$O/s/$3; shift 3
  if [ $SECONDS -gt 420 ]; then SUM+=("$name: SKIPPED (time guard)"); return; fi
  local t0=$SECONDS
  EP_COMM_ID=127.0.0.1:$((24000 + RANDOM % 5000)) timeout --kill-after=10 "$to" "$@" >"$log" 2>&1
  local rc=$?
  SUM+=("$name: rc=$rc in $((SECONDS - t0))s $(grep -hE '^\[  PASSED  \]|FAILED TESTS|ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tr '\n' ' ' | cut -c1-120)")
}
MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS)
PERF=(build/bin/ep_ht_perf -t 4096 --fp8 --path direct -n 30 -w 5)
step "HT suite 4 ranks" 150 ht_np4.log "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter="$HT_FILTER" --gtest_color=no
step "HT perf sweep + NCCL" 170 perf_sweep.log "${MPI[@]}" -np 4 "${PERF[@]}" --sms 4,8,16,24,32
step "HT perf -c 24 SMs" 60 perf_check.log "${MPI[@]}" -np 4 "${PERF[@]}" --sms 24 -c 1 --no-nccl -n 20
step "PDL 0 (16,24)" 60 pdl0.log "${MPI[@]}" -x EP_HT_PDL=0 -np 4 "${PERF[@]}" --sms 16,24 --no-nccl
step "HT suite 2 ranks" 120 ht_np2.log "${MPI[@]}" -np 2 build/test/ep_gpu_tests --gtest_filter="$HT_FILTER" --gtest_color=no
step "LL suite 4 ranks" 90 ll_np4.log "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no
if [ -n "$SAN" ]; then
  for tool in memcheck racecheck; do
    step "$tool *Small*direct 2 ranks" 100 san_$tool.log env EP_TIMEOUT_MS=120000 "${MPI[@]}" -np 2 "$SAN" --tool $tool \
      --error-exitcode 9 build/test/ep_gpu_tests --gtest_filter='*Small*direct*' --gtest_color=no
  done
fi
step "HT perf hot expert" 60 perf_hot.log "${MPI[@]}" -np 4 "${PERF[@]}" --sms 16,24 --routing hot
tar czf "$O/logs.tgz" -C "$O" s
echo "######## perf"
for f in perf_sweep perf_check pdl0 perf_hot; do echo "== $f"; grep -E "^\| *4096|check \(-c\)|CHECK FAILED" "$O/s/$f.log" | cut -c1-160; done
echo "######## summary"; printf '%s\n' "${SUM[@]}"
