#!/usr/bin/env bash
# session8_ncu.sh: Nsight Compute on rank 0's hooked LL dispatch receive kernel (T=128, EP4; every line is in
# the buffer when it starts, so its replays see the same input): warp stall reasons and per-SASS-line stall
# samples, to tell what the receive units wait on. Clocks left alone (--clock-control none).
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
export EP_TIMEOUT_MS=600000
ARGS=(--tokens 128 --iters 20 --warmup 5 --no-nccl --dedup 1 --reduce 1)
# Launch order per T: 25 queued dispatches, 25 dispatches, then (send, recv) pairs: skip 50 + 2 * 10 + 1.
timeout 300 "${MPI[@]}" -x EP_TIMEOUT_MS -np 1 "$NCU" --clock-control none --kernel-name regex:dispatchKernel \
  --launch-skip ${SKIP:-71} --launch-count 1 --set full --import-source no -o "$O/recv" -f build/bin/ep_ll_perf "${ARGS[@]}" : \
  -np 3 build/bin/ep_ll_perf "${ARGS[@]}" > "$O/ncu_run.log" 2>&1
echo "== ncu rc=$? $(el)"; tail -5 "$O/ncu_run.log"
"$NCU" --import "$O/recv.ncu-rep" --print-details all > "$O/details.txt" 2>&1
"$NCU" --import "$O/recv.ncu-rep" --page source --print-source sass --csv > "$O/sass.csv" 2>&1
grep -E "Grid Size|Duration|Registers|Stall|stall|Warp Cycles|Issued Warp|L1/TEX Hit|L2 Hit|Memory Throughput|DRAM Through|Achieved Occ" "$O/details.txt" | head -60
wc -c "$O/details.txt" "$O/sass.csv"
