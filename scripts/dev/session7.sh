#!/usr/bin/env bash
# session7.sh: one iteration call for the LL release-protocol receive (hooked dispatch receive), NP ranks
# (default 2: nvidia-h200-x2). build-gpu-lite carried as build/, variants in build-var/NAME/ep_ll_perf.
# The LL suite at NP ranks (lines default, then EP_LL_LINES=0: the release protocol fused); then, alternating,
# the perf binaries of AB (variant names; "cur" = build/bin/ep_ll_perf) at T=1,32,128 (dispatch rows: fused,
# hook send, hook recv; AB_ENV: knobs joined with '+' for every A/B run); VN=1: the LL suite over 2 virtual nodes; SAN=1: compute-sanitizer memcheck + racecheck on LlSmall.* first; then EP_LL_PROFILE=2 with build-var/prof (the receive timeline) when PROF=1.
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NP=${NP:-2}
if [ "${SKIP_SUITE:-0}" != 1 ]; then
  for X in "" ${SUITE_SET:-EP_LL_LINES=0}; do ll_suite "suite_${X//=/_}" "$NP" "$X"; done
fi
[ "${VN:-0}" = 1 ] && ll_virtual_nodes suite_vn "$NP"  # emulated RDMA: the release protocol
[ "${SAN:-0}" = 1 ] && ll_sanitizers
for round in 1 2; do
  for V in ${AB:-cur}; do
    bin=build-var/$V/ep_ll_perf; [ "$V" = cur ] && bin=build/bin/ep_ll_perf
    envs=(); [ -n "${AB_ENV:-}" ] && envs=(-x ${AB_ENV//+/ -x })
    timeout 90 "${MPI[@]}" -np "$NP" "${envs[@]}" $bin --tokens ${TOKENS:-1,32,128} --iters 50 --warmup 20 --no-nccl --dedup 1 --reduce 1 > "$O/ab_${V}_$round.log" 2>&1
    echo "== $V round $round rc=$? ($(el))"
    grep -E "^\| [0-9]+ \| (dispatch|combine)" "$O/ab_${V}_$round.log" | grep -v queued | cut -c1-60 | tr '\n' ';' | sed 's/| fp8 dedup |//g;s/| bf16 reduce-on-sender |//g'; echo
  done
done
if [ "${PROF:-0}" = 1 ]; then
  EP_LL_PROFILE=2 timeout 90 "${MPI[@]}" -np "$NP" -x EP_LL_PROFILE build-var/prof/ep_ll_perf --tokens 1,128 --iters 50 --warmup 20 --no-nccl --dedup 1 --reduce 1 > "$O/prof.log" 2>&1
  echo "== prof rc=$? ($(el))"
  grep -A3 "rank 0.*EP_LL_TIMELINE release-recv" "$O/prof.log" | grep -v "per block" | cut -c1-600
  grep "rank 0.*EP_LL_TIMELINE   per block" "$O/prof.log" | cut -c1-700
  grep "rank 0.*EP_LL_PROFILE combine reduce send+recv" "$O/prof.log"
fi
