#!/usr/bin/env bash
# session3_probe_x4.sh: the lead's first nvidia-h200-x4 call of session 3 (repository root, build/
# carried): (1) the HT GPU suite at 4 ranks on the device-side call epochs (graph replay tests
# included), (2) where the FP8 direct dispatch's time goes: mode b (notify + dispatch) vs mode c
# (cached: dispatch kernel only), rows-only (no top-k ids / weights / source index), and without
# the scale stores (EP_HT_DEV_DIRECT_NO_SCALES, diagnostic), at 16 and 24 SMs, notify alone.
# Summary last; logs in $OUT/logs.tgz.
set -u
cd "$(dirname "$0")/../.." || exit 1
export EP_SUITE_STEP_TIMEOUT=${EP_SUITE_STEP_TIMEOUT:-200} EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
O=${OUT:-$PWD/session_out}
mkdir -p "$O/perf"
NCCL_LIB=$(find / -name libnccl.so.2 -not -path '*/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$PWD/build/lib${NCCL_LIB:+:$(dirname "$NCCL_LIB")}" NCCL_NVLS_ENABLE=0
perf() {  # name, env assignments..., -- perf args
  local name=$1; shift; local envs=()
  while [ "$1" != "--" ]; do envs+=(-x "$1"); shift; done; shift
  EP_COMM_ID=127.0.0.1:$((24000 + RANDOM % 5000)) timeout 100 mpirun --allow-run-as-root --oversubscribe --bind-to none \
    -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS "${envs[@]}" \
    -np 4 build/bin/ep_ht_perf -t 4096 --fp8 --path direct -n 30 -w 5 "$@" >"$O/perf/$name.log" 2>&1
  echo "== $name rc=$?"; grep -E "^\| *4096" "$O/perf/$name.log" | grep -E "notify|dispatch|combine" | cut -c1-150
}
perf modeb EP_HT_DEV_DIRECT_NO_SCALES=0 -- --sms 16,24
perf modec EP_HT_DEV_DIRECT_NO_SCALES=0 -- --sms 16,24 --mode c --no-nccl
perf rowsonly EP_HT_DEV_DIRECT_NO_SCALES=0 -- --sms 24 --rows-only --no-nccl
perf noscales EP_HT_DEV_DIRECT_NO_SCALES=1 -- --sms 24 --rows-only --no-nccl --no-bf16
OUT=$O/ht scripts/gpu_suite.sh --only ht --ranks 4 > "$O/ht_suite.txt" 2>&1
echo "== HT suite rc=$?"; tail -15 "$O/ht_suite.txt"
grep -hE "^\[  (FAILED|PASSED) |tests? ran" "$O"/ht/*.log 2>/dev/null | sort | uniq -c | head -20
tar czf "$O/logs.tgz" -C "$O" perf ht ht_suite.txt
