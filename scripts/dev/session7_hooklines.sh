#!/usr/bin/env bash
# session7_hooklines.sh: EP_LL_LINES=2 (hooked calls on flagged lines too) against the default, NP ranks
# (default 2): the LL suite with EP_LL_LINES=2, then dispatch/combine hook phases at T=1,32,128, alternating.
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NP=${NP:-2}
ll_suite suite_l2 "$NP" EP_LL_LINES=2
for r in 1 2; do
  for X in 1 2; do
    timeout 60 "${MPI[@]}" -np "$NP" -x EP_LL_LINES=$X build/bin/ep_ll_perf --tokens 1,32,128 --iters 40 --warmup 10 --no-nccl --dedup 1 --reduce 1 > $O/h$X.log 2>&1
    echo "== LINES=$X $(grep -E '^\| [0-9]+ \| (dispatch|combine) hook' $O/h$X.log | awk -F'|' '{printf "T=%s%s %s; ", $2, $3, $5}' | sed 's/  */ /g')"
  done
done
