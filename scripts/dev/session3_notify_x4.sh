#!/usr/bin/env bash
# session3_notify_x4.sh: one nvidia-h200-x4 call: the HT suite at 4 ranks on the one-launch notify,
# then FP8/BF16 direct dispatch in mode b (notify + dispatch) at 16 and 24 SMs with programmatic
# dependent launch on and off (EP_HT_PDL A/B, one binary), in-run NCCL on the first. Summary last.
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
OUT=$O/ht scripts/gpu_suite.sh --only ht --ranks 4 > "$O/ht_suite.txt" 2>&1
echo "== HT suite rc=$?"; grep -E "FAILED|PASSED|tests ran" "$O"/ht/*.log | tail -12
perf pdl1 EP_HT_PDL=1 -- --sms 16,24 -c 1
perf pdl0 EP_HT_PDL=0 -- --sms 16,24 --no-nccl
perf modec EP_HT_PDL=1 -- --sms 24 --mode c --no-nccl
tar czf "$O/logs.tgz" -C "$O" perf ht ht_suite.txt
