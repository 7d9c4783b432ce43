#!/usr/bin/env bash
# session6_x4.sh: one nvidia-h200-x4 iteration call of session 6 (build-gpu carried as build/, compile-time
# variants as build-var/NAME/ep_ll_perf from ll_variant.sh): the LL suite at 4 ranks (SKIP_SUITE=1: none),
# (NP ranks, default 4) then unprofiled dispatch at T=1,32,128 for each entry of AB_SET, in order. An entry is knobs joined
# with '+' (EP_X=1+EP_Y=2), '-' for none, optionally prefixed by @NAME: to run variant NAME's binary.
# VAR_SUITES: variants whose own build-var/NAME/ep_gpu_tests runs the LL suite too.
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh
if [ "${SKIP_SUITE:-0}" != 1 ]; then
  timeout 90 "${MPI[@]}" -np ${NP:-4} build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np4.log" 2>&1
  echo "== LL suite np4 rc=$? ($(el))"; res "$O/ll_np4.log"
  for X in ${SUITE_SET:-}; do
    timeout 90 "${MPI[@]}" -np ${NP:-4} -x ${X//+/ -x } build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_np4_b.log" 2>&1
    echo "== LL suite np4 $X rc=$? ($(el))"; res "$O/ll_np4_b.log"
  done
fi
for V in ${VAR_SUITES:-}; do  # a variant's own suite binary (build-var/V/ep_gpu_tests)
  timeout 90 "${MPI[@]}" -np ${NP:-4} build-var/$V/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/ll_$V.log" 2>&1
  echo "== LL suite of variant $V rc=$? ($(el))"; res "$O/ll_$V.log"
done
n=0
for E in ${AB_SET:--}; do
  n=$((n + 1)); bin=build/bin/ep_ll_perf; X=$E
  case $E in @*:*) bin=build-var/${E%%:*}; bin=${bin/@/}/ep_ll_perf; X=${E#*:};; esac
  envs=(); [ "$X" != - ] && envs=(-x ${X//+/ -x })
  timeout 60 "${MPI[@]}" -np ${NP:-4} "${envs[@]}" $bin --tokens ${TOKENS:-1,32,128} --iters 40 --warmup 10 --no-nccl --no-hook \
    --reduce 1 --dedup 1 > "$O/ab$n.log" 2>&1
  echo "== $E rc=$? ($(el))"; grep -E "^\| [0-9]+ \| (dispatch|combine) \|" "$O/ab$n.log" | cut -c1-60
done
