#!/usr/bin/env bash
# session3_place_x4.sh: one nvidia-h200-x4 call: the HT direct cases at 4 ranks with the coalesced
# metadata (EP_HT_DEV_DIRECT_META=1, default), then mode-b FP8/BF16 direct dispatch at 16 and 24 SMs:
# metadata A/B, PDL A/B, and the block-placement experiment (EP_HT_DEV_SM_STRIDE 2, 4; SMs printed).
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
export EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
O=${OUT:-$PWD/session_out}
mkdir -p "$O/perf"
NCCL_LIB=$(find / -name libnccl.so.2 -not -path '*/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$PWD/build/lib${NCCL_LIB:+:$(dirname "$NCCL_LIB")}" NCCL_NVLS_ENABLE=0
EP_COMM_ID=127.0.0.1:$((24000 + RANDOM % 5000)) timeout 150 mpirun --allow-run-as-root --oversubscribe --bind-to none \
  -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS -np 4 build/test/ep_gpu_tests \
  --gtest_filter="$HT_DIRECT_ONLY:HtStress.*" > "$O/ht_direct.log" 2>&1
echo "== HT direct cases rc=$?"; grep -E "^\[  (PASSED|FAILED) " "$O/ht_direct.log" | sort | uniq -c | head
perf() {  # name, env assignments..., -- perf args
  local name=$1; shift; local envs=()
  while [ "$1" != "--" ]; do envs+=(-x "$1"); shift; done; shift
  EP_COMM_ID=127.0.0.1:$((24000 + RANDOM % 5000)) timeout 100 mpirun --allow-run-as-root --oversubscribe --bind-to none \
    -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS "${envs[@]}" \
    -np 4 build/bin/ep_ht_perf -t 4096 --fp8 --path direct -n 30 -w 5 "$@" >"$O/perf/$name.log" 2>&1
  echo "== $name rc=$?"; grep -E "^\| *4096" "$O/perf/$name.log" | grep -E "dispatch" | cut -c1-100
}
perf meta1_pdl1 EP_HT_DEV_DIRECT_META=1 EP_HT_PDL=1 EP_HT_DEV_SMID_LOG=1 -- --sms 16,24 -c 1 --no-nccl
grep "ht-smid" "$O/perf/meta1_pdl1.log" | sort -k3,3n -k6,6n | awk '{print $3, $6, $8}' | tr '\n' ' ' | cut -c1-1500; echo
perf meta0_pdl1 EP_HT_DEV_DIRECT_META=0 EP_HT_PDL=1 -- --sms 16,24 --no-nccl
perf meta1_pdl0 EP_HT_DEV_DIRECT_META=1 EP_HT_PDL=0 EP_HT_DEV_SMID_LOG=1 -- --sms 16,24 --no-nccl
grep "ht-smid" "$O/perf/meta1_pdl0.log" | sort -k3,3n -k6,6n | awk '{print $3, $6, $8}' | tr '\n' ' ' | cut -c1-1500; echo
for k in 2 4; do
  perf stride$k EP_HT_PDL=0 EP_HT_DEV_SM_STRIDE=$k EP_HT_DEV_SMID_LOG=1 -- --sms 16,24 --no-nccl --mode c
  grep "ht-smid" "$O/perf/stride$k.log" | sort -k3,3n -k6,6n | awk '$3==0{print $6, $8}' | tr '\n' ' ' | cut -c1-600; echo
done
perf stride1c EP_HT_PDL=0 EP_HT_DEV_SM_STRIDE=1 -- --sms 16,24 --no-nccl --mode c
tar czf "$O/logs.tgz" -C "$O" perf ht_direct.log
