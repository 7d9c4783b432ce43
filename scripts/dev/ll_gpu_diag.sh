#!/bin/bash
# LL diagnostic + perf pass on a GPU host, from the repo root with build/ = a gpu-bundle
# (build/bin/ep_ll_perf, build/test/ep_gpu_tests, build/lib). Logs under $OUT (<= 8 files).
#   LL_SUITE_RANKS="4"   suite rank counts (default "4"; "" skips the suite)
#   LL_SWEEP=1,8,32,64,128  token sweep of the main perf pass (with NCCL and hook phases)
#   LL_AB="EP_LL_COOP=0 EP_LL_NUM_SMS=32"  one short perf pass per knob setting (T = LL_AB_TOKENS)
#   LL_PROF=1            an EP_LL_PROFILE pass (T = 1 and 128)
#   LL_SUITE_EXTRA="EP_LL_X=1"  the 4-rank suite again with each knob setting
#   LL_HOT=1             a skewed-routing pass (one hot expert), T = 128
set -u
export NCCL_NVLS_ENABLE=0 EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000} OMPI_MCA_btl_vader_single_copy_mechanism=none
NL=$(find / -name 'libnccl.so.2' -not -path '*/proc/*' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=$PWD/build/lib${NL:+:$(dirname $NL)}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[ -n "$NL" ] && export EP_NCCL_LIB=$NL
OUT=${OUT:-$PWD/ll_out}; mkdir -p $OUT
MPI="mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_TIMEOUT_MS -x EP_NCCL_LIB"
NP=${LL_NP:-$(nvidia-smi -L | grep -c '^GPU')}
t() { local S=$(date +%s); "$@"; local rc=$?; echo "rc=$rc $(( $(date +%s) - S ))s"; }
SUM=$OUT/summary.txt; : > $SUM
for n in ${LL_SUITE_RANKS-4}; do
  echo "== suite np$n" | tee -a $SUM
  t timeout 120 $MPI -np $n build/test/ep_gpu_tests --gtest_filter='Ll*:-LlLinesStress.*' --gtest_color=no > $OUT/suite_np$n.log 2>&1 | tee -a $SUM
  grep -E "^\[  (PASSED|FAILED) |tests? ran|SKIPPED \]" $OUT/suite_np$n.log | sort | uniq -c | tee -a $SUM
  grep -B2 -A4 "Failure" $OUT/suite_np$n.log | head -20 | tee -a $SUM
done
for X in ${LL_SUITE_EXTRA:-}; do  # the suite again with a knob set (4 ranks)
  echo "== suite np4 $X" | tee -a $SUM
  t timeout 120 $MPI -np 4 -x $X build/test/ep_gpu_tests --gtest_filter='Ll*:-LlLinesStress.*' --gtest_color=no > $OUT/suite_x.log 2>&1 | tee -a $SUM
  grep -E "^\[  (PASSED|FAILED) |tests? ran" $OUT/suite_x.log | sort | uniq -c | tee -a $SUM
  grep -B2 -A4 "Failure" $OUT/suite_x.log | head -20 | tee -a $SUM
done
if [ -n "${LL_SWEEP:-1,8,32,64,128}" ]; then
  echo "== perf sweep np$NP" | tee -a $SUM
  t timeout 150 $MPI -np $NP build/bin/ep_ll_perf --tokens ${LL_SWEEP:-1,8,32,64,128} --iters 30 --warmup 10 > $OUT/perf.log 2>&1 | tee -a $SUM
fi
if [ "${LL_HOT:-0}" = 1 ]; then  # skewed routing (one hot expert), T = 128
  echo "== perf hot np$NP" | tee -a $SUM
  t timeout 90 $MPI -np $NP build/bin/ep_ll_perf --tokens 128 --routing hot --no-hook --iters 30 --warmup 10 > $OUT/hot.log 2>&1 | tee -a $SUM
fi
if [ "${LL_PROF:-1}" = 1 ]; then
  echo "== profile" | tee -a $SUM
  t timeout 60 $MPI -np $NP -x EP_LL_PROFILE=1 build/bin/ep_ll_perf --tokens 1,128 --iters 20 --warmup 5 --no-nccl > $OUT/prof.log 2>&1 | tee -a $SUM
fi
for X in ${LL_AB:-}; do
  echo "== $X" >> $OUT/ab.log
  t timeout 60 $MPI -np $NP -x $X build/bin/ep_ll_perf --tokens ${LL_AB_TOKENS:-1,32,128} --iters 20 --warmup 5 --no-nccl --no-hook >> $OUT/ab.log 2>&1
done
# Short table last (the reply carries the tail).
echo; echo "#### main sweep (median us; host us = CPU time of the API call)"
grep -E "^\| [0-9]+ \|" $OUT/perf.log 2>/dev/null | grep -v "nccl alltoallv" | awk -F'|' '{printf "%s|%s|%s|%s|%s|%s\n",$2,$3,$4,$5,$9,$10}'
grep -E "nccl alltoallv" $OUT/perf.log 2>/dev/null | awk -F'|' '{printf "%s|%s|%s\n",$2,$3,$5}'
echo "#### profile (rank 0)"; grep "rank 0\] EP_LL_PROFILE" $OUT/prof.log 2>/dev/null | sed 's/.*EP_LL_PROFILE //'
echo "#### A/B"; grep -E "^== |^\| [0-9]+ \|" $OUT/ab.log 2>/dev/null | awk -F'|' '/^==/{print;next}{printf "%s|%s|%s|%s|%s\n",$2,$3,$4,$5,$10}'
cat $SUM
