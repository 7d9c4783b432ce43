#!/usr/bin/env bash
# session7_skip.sh: timing-only EP_LL_DEV_SKIP sweep of the lines dispatch (NP ranks, default 2), then the
# EP_LL_PROFILE=2 per-block timeline (build-var/prof) at T=1 with and without the receivers' stores.
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NP=${NP:-2}
for r in 1 2; do
  for X in 0 1 4 5 2; do
    timeout 60 "${MPI[@]}" -np "$NP" -x EP_LL_DEV_SKIP=$X build/bin/ep_ll_perf --tokens 1,32,128 --iters 40 --warmup 10 --no-nccl --no-hook --dedup 1 --reduce 1 > $O/x.log 2>&1
    echo "== DEV_SKIP=$X $(grep -E '^\| [0-9]+ \| dispatch \|' $O/x.log | awk -F'|' '{printf "T=%s %s; ", $2, $5}')"
  done
done
for X in 0 5; do
  EP_LL_PROFILE=2 timeout 60 "${MPI[@]}" -np "$NP" -x EP_LL_PROFILE -x EP_LL_DEV_SKIP=$X build-var/prof/ep_ll_perf --tokens 1 --iters 40 --warmup 10 --no-nccl --no-hook --dedup 1 --reduce 1 > $O/p$X.log 2>&1
  echo "== profile DEV_SKIP=$X"; grep "rank 0.*per block" $O/p$X.log | head -1 | tr ' ' '\n' | awk -F: '$1>=39 && $1<=49' | tr '\n' ' '; echo
done
