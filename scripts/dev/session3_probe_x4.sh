#!/usr/bin/env bash
# session3_probe_x4.sh: the lead's first nvidia-h200-x4 call of session 3 (repository root, build/
# carried): (1) the HT GPU suite at 4 ranks on the device-side call epochs (graph replay tests
# included), (2) where the FP8 direct dispatch's time goes: mode b (notify + dispatch) vs mode c
# (cached: dispatch kernel only), rows-only (no top-k ids / weights / source index), and without
# the scale stores (EP_HT_DEV_DIRECT_NO_SCALES, diagnostic), at 16 and 24 SMs, notify alone.
# Summary last; logs in $OUT/logs.tgz.
set -u
cd "$(dirname "$0")/../.." || exit 1
export EP_SUITE_STEP_TIMEOUT=${EP_SUITE_STEP_TIMEOUT:-200}
. scripts/dev/lib_x4.sh  # $O, the environment, perf()
perf modeb EP_HT_DEV_DIRECT_NO_SCALES=0 -- --sms 16,24
perf modec EP_HT_DEV_DIRECT_NO_SCALES=0 -- --sms 16,24 --mode c --no-nccl
perf rowsonly EP_HT_DEV_DIRECT_NO_SCALES=0 -- --sms 24 --rows-only --no-nccl
perf noscales EP_HT_DEV_DIRECT_NO_SCALES=1 -- --sms 24 --rows-only --no-nccl --no-bf16
OUT=$O/ht scripts/gpu_suite.sh --only ht --ranks 4 > "$O/ht_suite.txt" 2>&1
echo "== HT suite rc=$?"; tail -15 "$O/ht_suite.txt"
grep -hE "^\[  (FAILED|PASSED) |tests? ran" "$O"/ht/*.log 2>/dev/null | sort | uniq -c | head -20
tar czf "$O/logs.tgz" -C "$O" perf ht ht_suite.txt
