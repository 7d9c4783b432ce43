#!/usr/bin/env bash
# session4_verify_x4.sh: first nvidia-h200-x4 call of session 4 (build-gpu carried as build/):
# 1. the internode path since the device call epochs (c52d667) and the one-launch notify: the internode
#    section of gpu_suite.sh at 4 ranks (bring-up set: internode cases, LL over emulated RDMA, node
#    limit, transport gate, ep_ht_perf -c and ep_ll_perf over 2 virtual nodes);
# 2. f1e5691 (direct launch knobs read in place): the HT direct cases at 4 ranks and ep_ht_perf -c at 16 SMs;
# 3. the LL suite at 4 ranks and the LL token sweep (baseline for this session).
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/gpu_filters.sh
. scripts/dev/lib_x4.sh  # $O, the environment
T0=$(date +%s)
EP_SUITE_INTERNODE_FULL=0 EP_SUITE_STEP_TIMEOUT=150 OUT=$O/suite timeout 330 scripts/gpu_suite.sh --only internode --ranks 4 \
  > "$O/suite_internode.log" 2>&1
echo "== internode section rc=$? ($(( $(date +%s) - T0 )) s)"; tail -15 "$O/suite_internode.log"
MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_COMM_ID -x EP_TIMEOUT_MS)
EP_COMM_ID=127.0.0.1:25411 timeout 90 "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter="$HT_DIRECT_ONLY" \
  --gtest_color=no > "$O/ht_direct_np4.log" 2>&1
echo "== HT direct cases rc=$? ($(( $(date +%s) - T0 )) s)"; grep -E "^\[  PASSED  \]|^\[  FAILED  \]|tests ran" "$O/ht_direct_np4.log" | sort | uniq | head -20
EP_COMM_ID=127.0.0.1:25311 timeout 60 "${MPI[@]}" -np 4 build/bin/ep_ht_perf -t 4096 --fp8 --path direct -n 30 -w 5 \
  --sms 16 -c 1 > "$O/ht_perf.log" 2>&1
echo "== HT perf rc=$? ($(( $(date +%s) - T0 )) s)"; grep -E "^4096|check \(-c\)|CHECK FAILED" "$O/ht_perf.log" | cut -c1-140
EP_COMM_ID=127.0.0.1:25511 timeout 80 "${MPI[@]}" -np 4 build/test/ep_gpu_tests --gtest_filter="$LL_FILTER" \
  --gtest_color=no > "$O/ll_np4.log" 2>&1
echo "== LL suite rc=$? ($(( $(date +%s) - T0 )) s)"; grep -E "^\[  PASSED  \]|^\[  FAILED  \]|tests ran" "$O/ll_np4.log" | sort | uniq | head
EP_COMM_ID=127.0.0.1:25611 timeout 60 "${MPI[@]}" -np 4 build/bin/ep_ll_perf --tokens 1,128 --iters 50 > "$O/ll_perf.log" 2>&1
echo "== LL perf rc=$? ($(( $(date +%s) - T0 )) s)"; grep -vE "^\s*$" "$O/ll_perf.log" | tail -30 | cut -c1-160
