#!/usr/bin/env bash
# HT direct path (registered buffers): one device call on nvidia-h200-x4.
# Correctness first (perf -c at the DeepSeek shape, both paths), then the SM
# sweep with the in-run NCCL baseline, the HT GPU suite (ring + direct cases,
# registration tests), hot-expert routing, an unroll variant, sanitizers.
# Usage on the GPU host (build/ = the carried bundle): OUT=... scripts/dev/ht_direct_run.sh [steps]
# steps: comma list of check,sweep,suite,hot,unroll,tma,san (default: check,sweep,suite,hot,unroll,san)
# NP=ranks (default 4); PATHS=ring|direct|both (ep_ht_perf --path, default both); SUITE_FILTER overrides the gtest filter.
cd "$(dirname "$0")/../.."
STEPS=",${1:-check,sweep,suite,hot,unroll,san},"
OUT=${OUT:-$PWD/ht_direct_out}
mkdir -p "$OUT"
NCCL_LIB=$(find / -name libnccl.so.2 -not -path '*/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=$PWD/build/lib${NCCL_LIB:+:$(dirname "$NCCL_LIB")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0
export EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
export OMPI_MCA_btl_vader_single_copy_mechanism=none
PORT=$((21000 + RANDOM % 20000))
MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_TIMEOUT_MS -x EP_COMM_ID)
for v in $(env | grep -o '^EP_HT_[A-Z0-9_]*' | sort -u); do MPI+=(-x "$v"); done
SUMMARY=""
step() {  # step NAME TIMEOUT LOG CMD...
  local name=$1 to=$2 log=$OUT/$3; shift 3
  PORT=$((PORT + 40)); export EP_COMM_ID=127.0.0.1:$PORT
  echo "==== $name"; local t0=$SECONDS
  timeout --kill-after=10 "$to" "$@" >"$log" 2>&1; local rc=$?
  SUMMARY="$SUMMARY
$name: rc=$rc $((SECONDS - t0))s ($(basename "$log"))"
  tail -n ${TAILN:-12} "$log"
}
P=build/bin/ep_ht_perf
PATHS=${PATHS:-both}
. scripts/gpu_filters.sh
SUITE_FILTER=${SUITE_FILTER:-$HT_FILTER}
G=build/test/ep_gpu_tests
nvidia-smi -L
[[ $STEPS == *,check,* ]] && step "perf check 24 SMs (ring+direct)" 120 perf_check.log \
  "${MPI[@]}" -np ${NP:-4} $P -t 4096 --fp8 --sms 24 -n 20 -w 3 -c 1 --path $PATHS
[[ $STEPS == *,sweep,* ]] && TAILN=40 step "perf SM sweep" 240 perf_sweep.log \
  "${MPI[@]}" -np ${NP:-4} $P -t 4096 --fp8 --sms 4,8,16,24,32 -n 30 -w 5 --path $PATHS
[[ $STEPS == *,suite,* ]] && step "HT suite 4 ranks" 240 ht_np4.log \
  "${MPI[@]}" -np ${NP:-4} $G --gtest_filter="$SUITE_FILTER" --gtest_color=no
[[ $STEPS == *,hot,* ]] && step "perf hot expert 24 SMs" 90 perf_hot.log \
  "${MPI[@]}" -np ${NP:-4} $P -t 4096 --fp8 --sms 24 --routing hot -n 30 -w 5 --path $PATHS
[[ $STEPS == *,unroll,* ]] && EP_HT_DEV_DIRECT_UNROLL=4 step "perf direct unroll 4" 60 perf_unroll4.log \
  "${MPI[@]}" -x EP_HT_DEV_DIRECT_UNROLL -np ${NP:-4} $P -t 4096 --fp8 --sms 16,24 --path direct --no-nccl -n 30 -w 5
[[ $STEPS == *,tma,* ]] && EP_HT_DEV_DIRECT_TMA=1 step "perf direct, rows by TMA bulk copies" 60 perf_tma.log \
  "${MPI[@]}" -x EP_HT_DEV_DIRECT_TMA -np ${NP:-4} $P -t 4096 --fp8 --sms 8,16,24 --path direct --no-nccl -n 20 -w 5 -c 1
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
if [[ $STEPS == *,san,* ]] && [ -n "$SAN" ]; then
  EP_TIMEOUT_MS=120000 step "memcheck *Small* 2 ranks" 120 san_memcheck.log \
    "${MPI[@]}" -np 2 "$SAN" --tool memcheck --error-exitcode 9 $G --gtest_filter='*Small*' --gtest_color=no
  EP_TIMEOUT_MS=120000 step "racecheck *Small*direct 2 ranks" 120 san_racecheck.log \
    "${MPI[@]}" -np 2 "$SAN" --tool racecheck --error-exitcode 9 $G --gtest_filter='*Small*direct*' --gtest_color=no
fi
echo "==== summary$SUMMARY"
grep -h "^| 4096" "$OUT"/perf_*.log > "$OUT/tables.txt" 2>/dev/null
