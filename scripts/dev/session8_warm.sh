#!/usr/bin/env bash
# session8_warm.sh: EP_LL_RECV_WARM on nvidia-h200-x4: the LL suite (default, and =2 which also warms the
# receive-only launches), ep_ll_perf A/B of the knob (two interleaved rounds, hook phases included), then the
# T=128 timeline of the default (build-var/prof, EP_LL_PROFILE=2). SAN=1: sanitizers on LlSmall.* too.
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NP=${NP:-4}
ll_suite suite "$NP"
ll_suite suite2 "$NP" EP_LL_RECV_WARM=2
[ "${SAN:-0}" = 1 ] && ll_sanitizers
SET=${SET:-"- EP_LL_RECV_WARM=0 EP_LL_RECV_WARM=2"}
for r in 1 2; do
  for X in $SET; do
    envs=(); [ "$X" != "-" ] && envs=(-x ${X//+/ -x })
    timeout 60 "${MPI[@]}" -np "$NP" "${envs[@]}" build/bin/ep_ll_perf --tokens ${TOKENS:-1,32,128} --iters 40 --warmup 10 --no-nccl --dedup 1 --reduce 1 > $O/k.log 2>&1
    echo "== $X: $(grep -E '^\| [0-9]+ \| dispatch' $O/k.log | grep -v queued | awk -F'|' '{printf "T=%s%s%s; ", $2, $3, $5}' | sed 's/  */ /g;s/dispatch //')"
  done
done
for w in 1 0; do
  EP_LL_PROFILE=2 EP_LL_RECV_WARM=$w timeout 90 "${MPI[@]}" -np "$NP" -x EP_LL_PROFILE -x EP_LL_RECV_WARM build-var/prof/ep_ll_perf --tokens 128 --iters 50 --warmup 20 --no-nccl --no-hook --dedup 1 --reduce 1 > "$O/prof_w$w.log" 2>&1
  echo "== prof warm $w rc=$? $(el)"; grep -E "receivers \(mean" "$O/prof_w$w.log" | cut -c1-400
done
