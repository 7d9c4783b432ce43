#!/usr/bin/env bash
# session_x4.sh: the lead's one nvidia-h200-x4 call of a session (from the repository root, build/
# carried): HT direct path A/B of the next-token metadata prefetch (EP_HT_DEV_DIRECT_PREFETCH),
# the HT perf section on the direct path (check, SM sweep 4..32 with in-run NCCL, hot expert),
# the LL section (suite at 4 ranks, token sweep, 32 SMs, hot expert) and the internode section at
# 2 virtual nodes x 2 GPUs without the long HT-suite pass (EP_SUITE_INTERNODE_FULL=0).
# Logs: $OUT/logs.tgz (one file: the device tool returns at most 8).
set -u
cd "$(dirname "$0")/../.." || exit 1
export EP_SUITE_STEP_TIMEOUT=${EP_SUITE_STEP_TIMEOUT:-150} EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
O=${OUT:-$PWD/session_out}
mkdir -p "$O/ab"
NCCL_LIB=$(find / -name libnccl.so.2 -not -path '*/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$PWD/build/lib${NCCL_LIB:+:$(dirname "$NCCL_LIB")}" NCCL_NVLS_ENABLE=0
for pre in 0 1; do
  echo "==== A/B: EP_HT_DEV_DIRECT_PREFETCH=$pre"
  EP_COMM_ID=127.0.0.1:$((23000 + pre * 50)) timeout 90 mpirun --allow-run-as-root --oversubscribe --bind-to none \
    -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS -x EP_HT_DEV_DIRECT_PREFETCH=$pre \
    -np 4 build/bin/ep_ht_perf -t 4096 --fp8 --sms 16,24 -n 30 -w 5 --path direct >"$O/ab/prefetch$pre.log" 2>&1
  echo "rc=$?"; grep -E "dispatch|combine|notify" "$O/ab/prefetch$pre.log" | tail -8
done
OUT=$O/ht scripts/gpu_suite.sh --only perf-ht --ranks 4 --perf-args "--path direct"
OUT=$O/ll scripts/gpu_suite.sh --only ll --ranks 4
EP_SUITE_INTERNODE_FULL=0 OUT=$O/inter scripts/gpu_suite.sh --only internode --ranks 4
tar czf "$O/logs.tgz" -C "$O" ab ht ll inter
