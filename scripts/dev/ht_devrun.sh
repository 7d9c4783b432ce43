#!/usr/bin/env bash
# HT dev run on the GPU host: subset of the HT GPU suite + a short perf run.
# Binaries prebuilt here and carried in build/htrun (stripped).
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0
export LD_LIBRARY_PATH=$PWD/build/htrun:$(dirname "$(find / -name 'libnccl.so.2' 2>/dev/null | head -1)"):${LD_LIBRARY_PATH:-}
export EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
XS=""; for v in $(env | grep -o "^EP_HT_DEV_[A-Z0-9_]*"); do XS="$XS -x $v"; done
MPI="mpirun --allow-run-as-root --oversubscribe -np ${NP:-4} -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_TIMEOUT_MS $XS"
nvidia-smi -L | head -4
echo "== gtest: ${FILTER}"
timeout ${T1:-150} $MPI build/htrun/ep_gpu_tests --gtest_filter="${FILTER}" 2>&1 | tee $OUT/gtest.log | grep -E "^\[ *(OK|FAILED|PASSED|RUN) |FAILED|Failure|error|rror:|Expected|timeout|Timeout" | head -${GL:-80}
echo "== perf: ${PERF}"
timeout ${T2:-150} $MPI build/htrun/ep_ht_perf ${PERF} 2>&1 | tee $OUT/perf.log | tail -${PL:-40}
