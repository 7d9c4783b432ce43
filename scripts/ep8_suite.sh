#!/usr/bin/env bash
# ep8_suite.sh: issue 7 -- EP8 on an 8-GPU host (nvidia-h200-x8), in one command.
#
#   scripts/ep8_suite.sh            # from the repo root on the GPU host, build/ carried
#
# 1. Every GPU suite (HT, LL, EPLB, comm/topology, emulated net) at 8 ranks, then the
#    emulated-internode suites at EP_EMULATE_NODES=2 (2 virtual nodes x 4 GPUs).
# 2. The perf binaries with the DeepSeek-V3 workloads of BENCHMARKS.md at 8 ranks:
#    HT BF16/FP8 dispatch and combine with the SM sweep, LL token sweep; each prints the
#    in-run NCCL baseline and the ratio.
# Logs and the summary table go to $OUT (default ./ep8_out); commit the summary under
# bench/results/ with the git revision and the device kind.
set -u
cd "$(dirname "$0")/.." || exit 1
export OUT=${OUT:-$PWD/ep8_out}
mkdir -p "$OUT"
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$ngpu" -lt 8 ]; then
  echo "ep8_suite.sh: needs 8 GPUs, found $ngpu (run it on nvidia-h200-x8)" >&2
  exit 2
fi
rc=0
# Single-host EP8 (all peers over NVLink).
OUT=$OUT/ep8 scripts/gpu_suite.sh --ranks 8 || rc=1
# Two virtual nodes of 4 GPUs: the internode protocol through the emulated RDMA transport.
OUT=$OUT/ep8_2x4 EP_EMULATE_NODES=2 EP_NET=emulated scripts/gpu_suite.sh --only net,ht,ll --ranks 8 || rc=1
cat "$OUT"/ep8/summary.md "$OUT"/ep8_2x4/summary.md 2>/dev/null
exit $rc
