# lib_x4.sh: what the scripts/dev/ GPU runners share (sourced from the repository root, build/ carried):
# the environment (NCCL library, NCCL_NVLS_ENABLE=0, EP_TIMEOUT_MS), the output folder $O, and perf()
# which runs ep_ht_perf (direct path, 4096 tokens, FP8 too) at 4 ranks and prints its dispatch/combine rows;
# MPI (the mpirun prefix that forwards that environment), el (seconds since sourcing) and res LOG (the
# gtest / sanitizer / stress summary lines of a log and its first failures).
# shellcheck shell=bash
export EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
O=${OUT:-$PWD/session_out}
mkdir -p "$O/perf"
NCCL_LIB=$(find / -name libnccl.so.2 -not -path '*/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$PWD/build/lib${NCCL_LIB:+:$(dirname "$NCCL_LIB")}" NCCL_NVLS_ENABLE=0
# perf NAME [VAR=VALUE ...] -- [ep_ht_perf arguments]: log in $O/perf/NAME.log; rank 0's SMs printed
# when the run set EP_HT_DEV_SMID_LOG=1.
perf() {
  local name=$1; shift; local envs=()
  while [ "$1" != "--" ]; do envs+=(-x "$1"); shift; done; shift
  EP_COMM_ID=127.0.0.1:$((24000 + RANDOM % 5000)) timeout 100 mpirun --allow-run-as-root --oversubscribe --bind-to none \
    -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS "${envs[@]}" \
    -np 4 build/bin/ep_ht_perf -t 4096 --fp8 --path direct -n 30 -w 5 "$@" >"$O/perf/$name.log" 2>&1
  echo "== $name rc=$?"; grep -E "^\| *4096" "$O/perf/$name.log" | grep -E "notify|dispatch|combine" | cut -c1-150
  grep "ht-smid" "$O/perf/$name.log" | awk '$3==0{print $6":"$8}' | sort -n | tr '\n' ' '; echo
}

MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_TIMEOUT_MS)
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
res() {
  grep -aE "^\[  (PASSED|FAILED)|LlLinesStress \]|ERROR SUMMARY|RACECHECK SUMMARY" "$1" | sort | uniq -c | cut -c1-220
  grep -a -A5 "Failure" "$1" | head -12
}

# The LL GPU checks the runners share (LL_FILTER from scripts/gpu_filters.sh), each logged in $O and summarised:
# ll_suite LOGNAME NRANKS [KNOBS joined with '+']: the LL suite;
# ll_sanitizers: compute-sanitizer memcheck and racecheck on LlSmall.* at 2 ranks (san_TOOL.log);
# ll_virtual_nodes LOGNAME NRANKS: the LL suite over 2 virtual nodes (emulated RDMA).
. scripts/gpu_filters.sh
ll_suite() {
  local envs=(); [ -n "${3:-}" ] && envs=(-x ${3//+/ -x })
  timeout 90 "${MPI[@]}" -np "$2" "${envs[@]}" build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/$1.log" 2>&1
  echo "== LL suite np$2 ${3:-} rc=$? ($(el))"; res "$O/$1.log"
}
ll_sanitizers() {
  local san tool
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
  for tool in memcheck racecheck; do
    EP_TIMEOUT_MS=60000 timeout 120 "${MPI[@]}" -np 2 "$san" --tool $tool --error-exitcode 9 build/test/ep_gpu_tests \
      --gtest_filter='LlSmall.*' --gtest_color=no > "$O/san_$tool.log" 2>&1
    echo "== $tool rc=$? ($(el))"; res "$O/san_$tool.log"
  done
}
ll_virtual_nodes() {
  timeout 90 "${MPI[@]}" -x EP_EMULATE_NODES=2 -x EP_NET=emulated -x EP_INTERNODE_MAX_HIDDEN=8192 \
    -x CUDA_MODULE_LOADING=EAGER -np "$2" build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/$1.log" 2>&1
  echo "== LL suite over 2 virtual nodes np$2 rc=$? ($(el))"; res "$O/$1.log"
}
