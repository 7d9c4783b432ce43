#!/usr/bin/env bash
# session8_probe.sh: EP4 T=128 timelines (EP_LL_PROFILE=2, build-var/prof) of the fused lines dispatch with
# EP_LL_SEND_GATE=0 and 1 and of the hooked receive, then the hooked receive with the timing-only
# EP_LL_DEV_SKIP bits (unprofiled build/), to see where the receive path's time goes.
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NP=${NP:-4}
for g in 0 1; do
  EP_LL_PROFILE=2 EP_LL_SEND_GATE=$g timeout 90 "${MPI[@]}" -np "$NP" -x EP_LL_PROFILE -x EP_LL_SEND_GATE build-var/prof/ep_ll_perf --tokens 128 --iters 50 --warmup 20 --no-nccl --dedup 1 --reduce 1 > "$O/prof_g$g.log" 2>&1
  echo "== prof gate $g rc=$? $(el)"
done
for X in - EP_LL_DEV_SKIP=1 EP_LL_DEV_SKIP=4 EP_LL_DEV_SKIP=5 EP_LL_DEV_SKIP=2 EP_LL_DEV_SKIP=7 -; do
  envs=(); [ "$X" != "-" ] && envs=(-x ${X//+/ -x })
  timeout 40 "${MPI[@]}" -np "$NP" "${envs[@]}" build/bin/ep_ll_perf --tokens 1,128 --iters 40 --warmup 10 --no-nccl --dedup 1 --reduce 1 > $O/k.log 2>&1
  echo "== $X: $(grep -E '^\| [0-9]+ \| (dispatch|hook)' $O/k.log | grep -v -e combine -e queued | awk -F'|' '{printf "T=%s%s%s%s; ", $2, $3, $4, $5}' | sed 's/  */ /g;s/| fp8 dedup//')"
done
