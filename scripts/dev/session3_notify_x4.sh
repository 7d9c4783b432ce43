#!/usr/bin/env bash
# session3_notify_x4.sh: one nvidia-h200-x4 call: the HT suite at 4 ranks on the one-launch notify,
# then FP8/BF16 direct dispatch in mode b (notify + dispatch) at 16 and 24 SMs with programmatic
# dependent launch on and off (EP_HT_PDL A/B, one binary), in-run NCCL on the first. Summary last.
set -u
cd "$(dirname "$0")/../.." || exit 1
export EP_SUITE_STEP_TIMEOUT=${EP_SUITE_STEP_TIMEOUT:-200}
. scripts/dev/lib_x4.sh  # $O, the environment, perf()
OUT=$O/ht scripts/gpu_suite.sh --only ht --ranks 4 > "$O/ht_suite.txt" 2>&1
echo "== HT suite rc=$?"; grep -E "FAILED|PASSED|tests ran" "$O"/ht/*.log | tail -12
perf pdl1 EP_HT_PDL=1 -- --sms 16,24 -c 1
perf pdl0 EP_HT_PDL=0 -- --sms 16,24 --no-nccl
perf modec EP_HT_PDL=1 -- --sms 24 --mode c --no-nccl
tar czf "$O/logs.tgz" -C "$O" perf ht ht_suite.txt
