#!/usr/bin/env bash
# session7_x4.sh: EP4 knob A/B of the LL dispatch at T=128 (and T=1), two interleaved rounds; one ep_ll_perf run per
# entry of SET (knobs joined with '+'; "-" = defaults), --no-nccl --no-hook --dedup 1 --reduce 1; SUITE=1: the LL
# suite first.
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NP=${NP:-4}
SET=${SET:-"- EP_LL_PUBLISH_SMS=4 EP_LL_PUBLISH_SMS=16 EP_LL_POLL_NS=0 EP_LL_POLL_NS=400 EP_LL_RECV_SPLIT=2 EP_LL_RECV_SPLIT=8"}
[ "${SUITE:-0}" = 1 ] && ll_suite suite "$NP"
for r in 1 2; do
  for X in $SET; do
    envs=(); [ "$X" != "-" ] && envs=(-x ${X//+/ -x })
    timeout 40 "${MPI[@]}" -np "$NP" "${envs[@]}" build/bin/ep_ll_perf --tokens ${TOKENS:-1,128} --iters 40 --warmup 10 --no-nccl --no-hook --dedup 1 --reduce 1 > $O/k.log 2>&1
    echo "== $X: $(grep -E '^\| [0-9]+ \| (dispatch|combine) \|' $O/k.log | awk -F'|' '{printf "T=%s%s%s; ", $2, $3, $5}' | sed 's/  */ /g;s/| fp8 dedup//')"
  done
done
