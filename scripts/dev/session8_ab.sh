#!/usr/bin/env bash
# session8_ab.sh: A/B of a variant build against build/ (both static ep_ll_perf + ep_gpu_tests): the variant's
# LL suite at NP ranks (default, and each of SUITE_SET), then ep_ll_perf dispatch (no hook, no NCCL) at TOKENS,
# "cur" and the variant alternating ROUNDS times. VAR=NAME: build-var/NAME/{ep_ll_perf,ep_gpu_tests}.
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NP=${NP:-4}; VAR=${VAR:-tl}
for X in - ${SUITE_SET:-}; do
  envs=(); [ "$X" != "-" ] && envs=(-x ${X//+/ -x })
  timeout 90 "${MPI[@]}" -np "$NP" "${envs[@]}" build-var/$VAR/ep_gpu_tests --gtest_filter="$LL_FILTER" --gtest_color=no > "$O/suite.log" 2>&1
  echo "== $VAR LL suite np$NP $X rc=$? ($(el))"; res "$O/suite.log"
done
for r in $(seq 1 ${ROUNDS:-2}); do
  for B in cur $VAR; do
    bin=build/bin/ep_ll_perf; [ "$B" != cur ] && bin=build-var/$B/ep_ll_perf
    timeout 60 "${MPI[@]}" -np "$NP" $bin --tokens ${TOKENS:-1,8,32,64,128} --iters 40 --warmup 10 --no-nccl ${HOOK:---no-hook} --dedup 1 --reduce 1 > "$O/k.log" 2>&1
    echo "== $B: $(grep -E '^\| [0-9]+ \| dispatch' $O/k.log | grep -v queued | awk -F'|' '{printf "T=%s%s%s; ", $2, $3, $5}' | sed 's/  */ /g;s/dispatch //;s/fp8 dedup//')"
  done
done
