#!/usr/bin/env bash
# session3_last_x4.sh: the last (short) nvidia-h200-x4 call of session 3: the early-handshake direct
# dispatch (sendBase from the notify): ep_ht_perf mode b at 16 and 24 SMs with in-run NCCL and the -c
# check, then the HT suite at 4 ranks without the two ring-path DeepSeek-shape cases and the ring-path
# peer timeout (covered on this commit's parent; the direct twins run).
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh  # $O, the environment
MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS)
EP_COMM_ID=127.0.0.1:25311 timeout 60 "${MPI[@]}" -np 4 build/bin/ep_ht_perf -t 4096 --fp8 --path direct -n 30 -w 5 \
  --sms 16,24 -c 1 > "$O/perf.log" 2>&1
echo "== perf rc=$?"; grep -E "^4096|check \(-c\)|CHECK FAILED" "$O/perf.log" | cut -c1-140
NEG='*DeepSeekShape_T4096_H7168_fp8_modeA:*DeepSeekShape_T4096_H7168_bf16_modeB:HtBadInputFault.ZZ_TimeoutWhenPeersNeverJoin'
EP_COMM_ID=127.0.0.1:25411 timeout 100 "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter="$HT_FILTER-$NEG" \
  --gtest_color=no > "$O/ht_np4.log" 2>&1
echo "== HT suite rc=$?"; grep -E "^\[  PASSED  \]|^\[  FAILED  \]|tests ran" "$O/ht_np4.log" | sort | uniq | head -20
