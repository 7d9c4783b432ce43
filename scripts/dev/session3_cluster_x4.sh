#!/usr/bin/env bash
# session3_cluster_x4.sh: one nvidia-h200-x4 call: block placement of the HT direct kernels through
# thread-block clusters (EP_HT_DEV_CLUSTER 1/2/4/8; a cluster runs on one GPC): cached dispatch
# (kernel only) and combine at 16 and 24 SMs, rank 0's SMs printed; then notify + dispatch (mode b,
# PDL on) with clusters of 4 and 8.
set -u
cd "$(dirname "$0")/../.." || exit 1
export EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
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
  echo "== $name rc=$?"; grep -E "^\| *4096" "$O/perf/$name.log" | grep -E "dispatch|combine" | cut -c1-100
  grep "ht-smid" "$O/perf/$name.log" | awk '$3==0{print $6":"$8}' | sort -n | tr '\n' ' '; echo
}
for cl in 1 2 4 8; do perf c_cl$cl EP_HT_DEV_CLUSTER=$cl EP_HT_DEV_SMID_LOG=1 -- --sms 16,24 --no-nccl --mode c; done
for cl in 4 8; do perf b_cl$cl EP_HT_DEV_CLUSTER=$cl -- --sms 16,24 --no-nccl; done
tar czf "$O/logs.tgz" -C "$O" perf
