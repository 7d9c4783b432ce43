#!/usr/bin/env bash
# session_x2.sh: the lead's short nvidia-h200-x2 call (from the repository root, build/ carried),
# steps in priority order so that a call cut short still returns what ran:
#   2 virtual nodes x 1 GPU (emulated RDMA): internode cases, the LL suite, the HT suite on the
#   internode path; then the intranode LL and HT suites at 2 ranks.
# Every step appends to $OUT/summary.txt and re-packs $OUT/logs.tgz.
set -u
cd "$(dirname "$0")/../.." || exit 1
export LD_LIBRARY_PATH=$PWD/build/lib NCCL_NVLS_ENABLE=0 EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
export OMPI_MCA_btl_vader_single_copy_mechanism=none
L=/tmp/x2logs
mkdir -p "$L"
. scripts/gpu_filters.sh
M=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID
   -x EP_TIMEOUT_MS)
NODES2=(-x EP_EMULATE_NODES=2 -x EP_NET=emulated -x EP_INTERNODE_MAX_HIDDEN=8192 -x CUDA_MODULE_LOADING=EAGER)
port=24000
step() {  # step NAME SECONDS CMD...
  local name=$1 secs=$2 t0=$SECONDS
  shift 2
  port=$((port + 50))
  export EP_COMM_ID=127.0.0.1:$port
  echo "+ $*" >"$L/$name.log"
  timeout --kill-after=10 "$secs" "$@" >>"$L/$name.log" 2>&1
  local rc=$?
  { echo "== $name rc=$rc $((SECONDS - t0))s"; grep -E "tests ran|PASSED  \]|FAILED  \]" "$L/$name.log" | sort -u | head -12; } |
    tee -a "$OUT/summary.txt"
  tar czf "$OUT/logs.tgz" -C "$L" .
}
step inter_cases 60 "${M[@]}" "${NODES2[@]}" -np 2 build/test/ep_gpu_tests \
  --gtest_filter="$INTERNODE_FILTER" --gtest_color=no
step inter_ll 40 "${M[@]}" "${NODES2[@]}" -np 2 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no
step inter_ht 90 "${M[@]}" "${NODES2[@]}" -np 2 build/test/ep_gpu_tests \
  --gtest_filter="$HT_FILTER:-$HT_DIRECT_ONLY" --gtest_color=no
step ll_np2 40 "${M[@]}" -np 2 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no
step ht_np2 120 "${M[@]}" -np 2 build/test/ep_gpu_tests --gtest_filter="$HT_FILTER" --gtest_color=no
