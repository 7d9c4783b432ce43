#!/usr/bin/env bash
# gpu_suite.sh: every GPU check of epcomm in one run, on a GPU host, from the
# repository root, with build/ already built (here: `make -j2 tests perf tools`
# then carry build/ to the GPU host).
#
#   scripts/gpu_suite.sh                       all sections, ranks 2 and 4 (capped at the GPU count)
#   scripts/gpu_suite.sh --only ht,perf-ht --ranks 4
#   scripts/gpu_suite.sh --skip sanitizer --quick
#
# Sections (run in this order; each writes $OUT/<section>*.log):
#   info       nvidia-smi -L, nvidia-smi topo -m, driver/CUDA/NCCL found
#   topo       build/bin/ep-topo
#   comm       communicator on the GPUs: ep-topo --comm and the MpiWorld tests under mpirun, CommGpu.*
#   ht         HT GPU suite (build/test/ep_gpu_tests, HT filter) under mpirun at each --ranks
#   sanitizer  compute-sanitizer memcheck + racecheck on the small HT cases (*Small*) at 2 ranks
#   eplb       EPLB GPU tests (single process, filter Eplb*)
#   net        emulated RDMA transport (proxy + peer copies across virtual nodes) at each --ranks
#   perf-ht    build/bin/ep_ht_perf: check run, then BF16 + FP8 dispatch and combine at 4096 tokens, SM sweep
#   ll         LL GPU tests and build/bin/ep_ll_perf, when they exist (LL section: extend section_ll)
#   internode  HT internode (v1) over 2 virtual nodes + emulated RDMA at each --ranks (CUDA_MODULE_LOADING=EAGER:
#              docs/internode.md, "Lazy loading"): Internode* cases, the HT suite itself on the 2-node comm,
#              the LL suite on the 2-node comm (remote peers through the proxy), node limit, verbs refused
#              on virtual nodes, ep_ht_perf -c (RDMA GB/s), ep_ll_perf, memcheck (2 ranks)
# Add a section: write section_<name>() using run_step, and add <name> to SECTIONS.
#
# Options:
#   --only a,b     run only these sections          --skip a,b    run all but these
#   --ranks "2 4"  rank counts for multi-rank suites (default "2 4"; capped at the GPUs present)
#   --quick        shorter perf (fewer iterations, smaller sweep)
#   --perf-args S  extra arguments for every perf binary (e.g. "--mode c")
# Environment: OUT (log dir, default ./gpu_suite_out), EP_TIMEOUT_MS (default 20000 for tests),
#   EP_SUITE_STEP_TIMEOUT (seconds per step, default 300), EP_GIT_REV (printed in the summary),
#   EP_SUITE_INTERNODE_FULL=0 (internode: only the internode cases, limit, gate and perf; no HT suite, no memcheck).
# Exit status: 0 if every step passed or was skipped, 1 otherwise.
set -u
cd "$(dirname "$0")/.." || exit 1
. scripts/gpu_filters.sh  # HT_FILTER, HT_DIRECT_ONLY, LL_FILTER, LL_STRESS_FILTER, INTERNODE_FILTER

SECTIONS="info topo comm ht sanitizer eplb net perf-ht ll internode"
only="" skip="" ranks_arg="2 4" quick=0 perf_args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=$2; shift 2 ;;
    --skip) skip=$2; shift 2 ;;
    --ranks) ranks_arg=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --perf-args) perf_args=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu_suite.sh: unknown option $1 (--help)" >&2; exit 2 ;;
  esac
done

OUT=${OUT:-$PWD/gpu_suite_out}
mkdir -p "$OUT"
SUMMARY=()   # "section|step|status|seconds|log"
FAILED=0
STEP_TIMEOUT=${EP_SUITE_STEP_TIMEOUT:-300}
PORT_BASE=$((21000 + RANDOM % 20000))
STEP_NO=0

# ---------------------------------------------------------------- environment
NCCL_LIB=$(find / -name libnccl.so.2 -not -path '*/proc/*' 2>/dev/null | head -1)
NCCL_DIR=${NCCL_LIB:+$(dirname "$NCCL_LIB")}
export LD_LIBRARY_PATH="$PWD/build/lib${NCCL_DIR:+:$NCCL_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export NCCL_NVLS_ENABLE=0           # never NVLink multicast on these hosts
export EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-20000}  # a wedged kernel ends in epTimeout, not a hang
export OMPI_MCA_btl_vader_single_copy_mechanism=none
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
RANKS=()
for r in $ranks_arg; do [ "$r" -le "${NGPU:-0}" ] && RANKS+=("$r"); done
MAXR=1
for r in "${RANKS[@]}"; do [ "$r" -gt "$MAXR" ] && MAXR=$r; done

want() {
  local s=$1
  if [ -n "$only" ] && [[ ",$only," != *",$s,"* ]]; then return 1; fi
  if [ -n "$skip" ] && [[ ",$skip," == *",$s,"* ]]; then return 1; fi
  return 0
}

# run_step SECTION NAME LOG CMD...: runs CMD with a timeout, a fresh EP_COMM_ID
# port range, output to $OUT/LOG (and its tail on stdout); records the result.
run_step() {
  local section=$1 name=$2 log=$OUT/$3
  shift 3
  STEP_NO=$((STEP_NO + 1))
  export EP_COMM_ID=127.0.0.1:$((PORT_BASE + 40 * STEP_NO))
  echo "==== [$section] $name"
  echo "+ $*" >"$log"
  local t0=$SECONDS rc
  timeout --kill-after=15 "$STEP_TIMEOUT" "$@" >>"$log" 2>&1
  rc=$?
  local dt=$((SECONDS - t0)) status=PASS
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="FAIL(timeout ${STEP_TIMEOUT}s)"
  elif [ $rc -ne 0 ]; then status="FAIL(rc=$rc)"; fi
  [ "$status" = PASS ] || FAILED=1
  tail -n 25 "$log"
  echo "---- [$section] $name: $status in ${dt}s (log: $log)"
  SUMMARY+=("$section|$name|$status|$dt|$(basename "$log")")
}

skip_step() { SUMMARY+=("$1|$2|SKIP($3)|0|-"); echo "==== [$1] $2: skipped: $3"; }

MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none
        -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS)
# Forward every other EP_* knob set by the caller (e.g. EP_EMULATE_NODES, EP_NET, EP_DEBUG).
for v in $(env | grep -o '^EP_[A-Z0-9_]*' | sort -u); do
  case $v in EP_COMM_ID|EP_TIMEOUT_MS) ;; *) MPIRUN+=(-x "$v") ;; esac
done

# ---------------------------------------------------------------- sections
section_info() {
  run_step info "devices and topology" info.log bash -c '
    nvidia-smi -L; echo; nvidia-smi topo -m; echo
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    echo; nvcc --version 2>/dev/null | tail -1
    echo "libnccl.so.2: '"${NCCL_LIB:-not found}"'"
    echo "compute-sanitizer: '"${SANITIZER:-not found}"'"
    echo "git revision: '"${EP_GIT_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"'"
    du -sh build 2>/dev/null'
}

section_topo() {
  if [ -x build/bin/ep-topo ]; then run_step topo "ep-topo" topo.log build/bin/ep-topo
  else skip_step topo ep-topo "build/bin/ep-topo not built"; fi
}

section_comm() {
  [ -x build/bin/ep-topo ] && [ "$MAXR" -ge 2 ] &&
    run_step comm "ep-topo --comm, $MAXR ranks" comm_topo.log "${MPIRUN[@]}" -np "$MAXR" build/bin/ep-topo --comm
  if [ -x build/test/ep_unit_tests ]; then
    [ "$MAXR" -ge 2 ] && run_step comm "MpiWorld tests, $MAXR ranks" comm_mpi.log \
      "${MPIRUN[@]}" -np "$MAXR" build/test/ep_unit_tests --gtest_filter='MpiWorld.*' --gtest_color=no
    run_step comm "CommGpu tests (1 process, every GPU)" comm_gpu.log \
      build/test/ep_unit_tests --gtest_filter='CommGpu.*' --gtest_color=no
  else
    skip_step comm "unit tests" "build/test/ep_unit_tests not built"
  fi
}

section_net() {
  [ -x build/test/ep_gpu_tests ] || { skip_step net "emulated net" "build/test/ep_gpu_tests not built"; return; }
  for n in "${RANKS[@]}"; do
    run_step net "emulated RDMA transport, $n ranks" "net_np$n.log" \
      "${MPIRUN[@]}" -np "$n" build/test/ep_gpu_tests --gtest_filter='NetEmulated*' --gtest_color=no
  done
}

section_ht() {
  [ -x build/test/ep_gpu_tests ] || { skip_step ht "GPU suite" "build/test/ep_gpu_tests not built"; return; }
  [ ${#RANKS[@]} -gt 0 ] || { skip_step ht "GPU suite" "no rank count <= $NGPU GPUs"; return; }
  for n in "${RANKS[@]}"; do
    run_step ht "HT GPU suite, $n ranks" "ht_np$n.log" \
      "${MPIRUN[@]}" -np "$n" build/test/ep_gpu_tests --gtest_filter="$HT_FILTER" --gtest_color=no
  done
}

section_sanitizer() {
  [ -n "$SANITIZER" ] || { skip_step sanitizer "compute-sanitizer" "not installed"; return; }
  [ "${NGPU:-0}" -ge 2 ] || { skip_step sanitizer "compute-sanitizer" "needs 2 GPUs"; return; }
  for tool in memcheck racecheck; do
    # Sanitized kernels run far slower: give device waits more time.
    EP_TIMEOUT_MS=120000 run_step sanitizer "$tool, *Small*, 2 ranks" "sanitizer_$tool.log" \
      "${MPIRUN[@]}" -np 2 "$SANITIZER" --tool "$tool" --error-exitcode 9 \
      build/test/ep_gpu_tests --gtest_filter='*Small*' --gtest_color=no
  done
}

section_eplb() {
  [ -x build/test/ep_gpu_tests ] || { skip_step eplb "EPLB GPU tests" "build/test/ep_gpu_tests not built"; return; }
  run_step eplb "EPLB GPU tests (1 process)" eplb.log build/test/ep_gpu_tests --gtest_filter='Eplb*:*/Eplb*' \
    --gtest_color=no
}

section_perf_ht() {
  [ -x build/bin/ep_ht_perf ] || { skip_step perf-ht ep_ht_perf "build/bin/ep_ht_perf not built"; return; }
  local iters=50 sms="4,8,16,24,32"
  [ $quick -eq 1 ] && { iters=20; sms="8,24"; }
  # Correctness of what is being timed, at the DeepSeek-V3 shape.
  run_step perf-ht "ep_ht_perf -c (check), $MAXR ranks" perf_ht_check.log \
    "${MPIRUN[@]}" -np "$MAXR" build/bin/ep_ht_perf -t 4096 --fp8 --sms 24 -n 20 -w 3 -c 1 $perf_args
  run_step perf-ht "ep_ht_perf BF16+FP8+combine, SM sweep, $MAXR ranks" perf_ht.log \
    "${MPIRUN[@]}" -np "$MAXR" build/bin/ep_ht_perf -t 4096 --fp8 --sms "$sms" -n "$iters" -w 10 $perf_args
  [ $quick -eq 1 ] && return
  run_step perf-ht "ep_ht_perf skewed (hot expert), $MAXR ranks" perf_ht_hot.log \
    "${MPIRUN[@]}" -np "$MAXR" build/bin/ep_ht_perf -t 4096 --fp8 --sms 24 --routing hot -n "$iters" $perf_args
}

section_ll() {
  if [ -x build/test/ep_gpu_tests ] && [ ${#RANKS[@]} -gt 0 ]; then
    for n in "${RANKS[@]}"; do
      run_step ll "LL GPU suite, $n ranks" "ll_np$n.log" \
        "${MPIRUN[@]}" -np "$n" build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no
    done
    # FP8 dedup dispatches use flagged lines by default; the release protocol for them too.
    run_step ll "LL GPU suite with EP_LL_LINES=0 (release protocol only), $MAXR ranks" "ll_release_np$MAXR.log" \
      "${MPIRUN[@]}" -x EP_LL_LINES=0 -np "$MAXR" build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no
    # The 128-byte NVLink line property the lines protocol relies on (one process, every GPU).
    run_step ll "LlLinesStress (flagged 128-byte lines, every GPU pair)" ll_lines_stress.log \
      build/test/ep_gpu_tests --gtest_filter="$LL_STRESS_FILTER" --gtest_color=no
  else
    skip_step ll "LL GPU suite" "build/test/ep_gpu_tests not built or no rank count <= $NGPU GPUs"
  fi
  [ -x build/bin/ep_ll_perf ] || { skip_step ll ep_ll_perf "build/bin/ep_ll_perf not built"; return; }
  local iters=50
  [ $quick -eq 1 ] && iters=20
  # Token sweep (dedup/per-expert, reduce/per-expert, hook phases, NCCL baseline in the same run).
  run_step ll "ep_ll_perf token sweep, $MAXR ranks" perf_ll.log \
    "${MPIRUN[@]}" -np "$MAXR" build/bin/ep_ll_perf --tokens 1,8,32,64,128 --iters "$iters"
  [ $quick -eq 1 ] && return
  run_step ll "ep_ll_perf 32 SMs, $MAXR ranks" perf_ll_sms32.log \
    "${MPIRUN[@]}" -np "$MAXR" -x EP_LL_NUM_SMS=32 build/bin/ep_ll_perf --tokens 128 --no-hook --iters "$iters"
  run_step ll "ep_ll_perf skewed (hot expert), $MAXR ranks" perf_ll_hot.log \
    "${MPIRUN[@]}" -np "$MAXR" build/bin/ep_ll_perf --tokens 128 --routing hot --no-hook --iters "$iters"
}

# ---- internode (owner: internode). Sets its own knobs whatever the caller exported.
section_internode() {
  [ -x build/test/ep_gpu_tests ] || { skip_step internode "internode suite" "build/test/ep_gpu_tests not built"; return; }
  [ ${#RANKS[@]} -gt 0 ] || { skip_step internode "internode suite" "no rank count <= $NGPU GPUs"; return; }
  local base=() a
  for a in "${MPIRUN[@]}"; do
    case $a in EP_EMULATE_NODES|EP_NET|EP_INTERNODE_MAX_HIDDEN|EP_HT_MAX_NODES_PER_TOKEN)
      unset 'base[${#base[@]}-1]' ;;  # drop the caller's value and its -x
    *) base+=("$a") ;;
    esac
  done
  local knobs=(-x EP_EMULATE_NODES=2 -x EP_NET=emulated -x EP_INTERNODE_MAX_HIDDEN=8192 -x CUDA_MODULE_LOADING=EAGER)
  for n in "${RANKS[@]}"; do
    run_step internode "internode cases, 2 virtual nodes, $n ranks" "internode_np$n.log" \
      "${base[@]}" "${knobs[@]}" -np "$n" \
      build/test/ep_gpu_tests --gtest_filter="$INTERNODE_FILTER" --gtest_color=no
    if [ "${EP_SUITE_INTERNODE_FULL:-1}" = 1 ]; then
      run_step internode "HT suite on 2 virtual nodes (internode path), $n ranks" "internode_ht_np$n.log" \
        "${base[@]}" "${knobs[@]}" -np "$n" \
        build/test/ep_gpu_tests --gtest_filter="$HT_FILTER:-$HT_DIRECT_ONLY" --gtest_color=no
    fi
    run_step internode "LL suite on 2 virtual nodes (remote peers over emulated RDMA), $n ranks" \
      "internode_ll_np$n.log" "${base[@]}" "${knobs[@]}" -np "$n" \
      build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no
    run_step internode "node limit 1, $n ranks" "internode_limit_np$n.log" \
      "${base[@]}" "${knobs[@]}" -x EP_HT_MAX_NODES_PER_TOKEN=1 -np "$n" \
      build/test/ep_gpu_tests --gtest_filter='InternodeHtNodeLimit.*' --gtest_color=no
    run_step internode "verbs on virtual nodes refused (names EP_NET), $n ranks" "internode_transport_np$n.log" \
      "${base[@]}" "${knobs[@]}" -np "$n" \
      build/test/ep_gpu_tests --gtest_filter='InternodeHtTransport.*' --gtest_color=no
  done
  if [ -x build/bin/ep_ht_perf ]; then
    # Checked timing at the DeepSeek-V3 shape: logical, NVLink and RDMA GB/s (emulated: protocol overhead only).
    run_step internode "ep_ht_perf -c over 2 virtual nodes, $MAXR ranks" internode_perf.log \
      "${base[@]}" "${knobs[@]}" -np "$MAXR" \
      build/bin/ep_ht_perf -t 4096 --fp8 --sms 24 -n 20 -w 3 -c 1 $perf_args
  else
    skip_step internode ep_ht_perf "build/bin/ep_ht_perf not built"
  fi
  if [ -x build/bin/ep_ll_perf ]; then
    # LL over 2 virtual nodes: remote peers through the emulated proxy (protocol overhead, not IB speed).
    run_step internode "ep_ll_perf over 2 virtual nodes, $MAXR ranks" internode_perf_ll.log \
      "${base[@]}" "${knobs[@]}" -np "$MAXR" build/bin/ep_ll_perf --tokens 1,128 --iters 20
  fi
  if [ "${EP_SUITE_INTERNODE_FULL:-1}" != 1 ]; then
    skip_step internode "HT suite on the internode path + memcheck" "EP_SUITE_INTERNODE_FULL=0 (bring-up run)"
  elif [[ " ${RANKS[*]} " != *" 2 "* ]]; then
    skip_step internode "memcheck" "runs with --ranks including 2"
  elif [ -n "$SANITIZER" ] && [ "${NGPU:-0}" -ge 2 ]; then
    EP_TIMEOUT_MS=120000 run_step internode "memcheck, internode *Small*, 2 ranks" "internode_memcheck.log" \
      "${base[@]}" "${knobs[@]}" -np 2 "$SANITIZER" --tool memcheck --error-exitcode 9 \
      build/test/ep_gpu_tests --gtest_filter='Internode/*Small*' --gtest_color=no
  else
    skip_step internode "memcheck" "compute-sanitizer missing or fewer than 2 GPUs"
  fi
}

# ---------------------------------------------------------------- run
echo "gpu_suite: GPUs=$NGPU ranks=(${RANKS[*]}) sections=${only:-all}${skip:+ minus $skip} OUT=$OUT"
for s in $SECTIONS; do
  want "$s" || continue
  "section_${s//-/_}"
done

# ---------------------------------------------------------------- summary
{
  echo
  echo "## gpu_suite summary ($(date -u +%Y-%m-%dT%H:%MZ), $(nvidia-smi -L 2>/dev/null | head -1 | sed 's/ (UUID.*//'), $NGPU GPUs, git ${EP_GIT_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)})"
  echo
  echo "| section | step | result | seconds | log |"
  echo "|---|---|---|---|---|"
  for row in "${SUMMARY[@]}"; do
    IFS='|' read -r a b c d e <<<"$row"
    echo "| $a | $b | $c | $d | $e |"
  done
  # gtest totals and perf tables from the logs
  for f in "$OUT"/comm_*.log "$OUT"/ht_np*.log "$OUT"/ll_np*.log "$OUT"/net_np*.log "$OUT"/eplb.log "$OUT"/sanitizer_*.log \
           "$OUT"/internode_*.log; do
    [ -f "$f" ] || continue
    echo
    echo "$(basename "$f"): $(grep -E '^\[==========\] .* ran|^\[  (PASSED|SKIPPED|FAILED) +\] [0-9]|ERROR SUMMARY' "$f" | tr '\n' ' ')"
    grep -E '^\[  FAILED  \] [A-Za-z]' "$f" | head -20
  done
  for f in "$OUT"/perf_*.log "$OUT"/internode_perf*.log; do
    [ -f "$f" ] || continue
    echo
    # the binary's last header line and the table after it
    awk '/^## ep_/{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$f" | grep -E '^## ep_|^\||^epcomm|^check' | head -80
  done
} | tee "$OUT/summary.md"
exit $FAILED
