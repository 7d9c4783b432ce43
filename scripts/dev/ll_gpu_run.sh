#!/bin/bash
# LL GPU run: suite (4 ranks; again with EP_LL_RECV_SPLIT=1 to localise a failure; 2 ranks), perf
# sweep with the in-run NCCL baseline, an EP_LL_PROFILE pass, A/B knobs, hot-expert routing.
# Prepare on the build host (repo root):  build/ll/link.sh  (static ll_gpu_tests + ep_ll_perf in build/ll),
#   mkdir -p build/ll/lib && cp -L $(gcc -print-file-name=libhwloc.so.15) build/ll/lib/
#   cp scripts/dev/ll_gpu_run.sh build/ll/run3.sh
# Device (nvidia-h200-x4, carry build/ll, ~90 s):  build/ll/run3.sh
export NCCL_NVLS_ENABLE=0 EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
NL=$(find /opt /usr /root -name 'libnccl.so.2' 2>/dev/null | head -1)
HERE=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH=${NL:+$(dirname $NL):}$LD_LIBRARY_PATH:$HERE/lib
[ -n "$NL" ] && export EP_NCCL_LIB=$NL
MPI="mpirun --allow-run-as-root --oversubscribe -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_TIMEOUT_MS -x EP_NCCL_LIB"
cd "$HERE"
t() { local S=$(date +%s); "$@"; echo "rc=$? $(( $(date +%s)-S ))s"; }
echo "== tests np4"; t timeout 80 $MPI -np 4 ./ll_gpu_tests --gtest_filter='Ll*' > $OUT/tests4.log 2>&1
grep -E "OK \]|FAILED|PASSED|SKIPPED" $OUT/tests4.log | sort | uniq -c | head -12
grep -B1 -A3 "Failure" $OUT/tests4.log | grep -v "Google Test trace\|^--$\|^Failed$" | head -12
echo "== tests np4, EP_LL_RECV_SPLIT=1"; t timeout 60 $MPI -np 4 -x EP_LL_RECV_SPLIT=1 ./ll_gpu_tests --gtest_filter='Ll*' > $OUT/tests4s1.log 2>&1
grep -E "FAILED|PASSED" $OUT/tests4s1.log | sort | uniq -c | head -6
echo "== perf"; t timeout 90 $MPI -np 4 ./ep_ll_perf --tokens 1,8,32,64,128 --iters 30 --warmup 10 > $OUT/perf.log 2>&1
grep -E "^\| (1|128) \|" $OUT/perf.log | grep -v "nccl" | cut -d'|' -f2-6 | head -26
P="--tokens 1,128 --iters 20 --warmup 5 --no-nccl"
echo "== prof"; t timeout 30 $MPI -np 4 -x EP_LL_PROFILE=1 ./ep_ll_perf $P > $OUT/prof.log 2>&1
grep "rank 0\] EP_LL_PROFILE" $OUT/prof.log | sed 's/.*EP_LL_PROFILE //' | head -24
for X in EP_LL_RECV_SPLIT=1 EP_LL_COOP=0 EP_LL_NUM_SMS=32 EP_LL_NUM_SMS=64; do
  echo "== $X"; t timeout 25 $MPI -np 4 -x $X ./ep_ll_perf $P --no-hook > $OUT/ab1.log 2>&1
  grep -E "^\| [0-9]" $OUT/ab1.log | cut -d'|' -f2-6; (echo "== $X"; cat $OUT/ab1.log) >> $OUT/ab.log
done
rm -f $OUT/ab1.log
echo "== hot"; t timeout 25 $MPI -np 4 ./ep_ll_perf --tokens 128 --routing hot --no-hook --iters 20 --warmup 5 --no-nccl > $OUT/hot.log 2>&1
grep -E "^\| [0-9]" $OUT/hot.log | cut -d'|' -f2-6
echo "== tests np2"; t timeout 60 $MPI -np 2 ./ll_gpu_tests --gtest_filter='Ll*' > $OUT/tests2.log 2>&1
grep -E "FAILED|PASSED" $OUT/tests2.log | sort | uniq -c | head -6
