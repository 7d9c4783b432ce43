#!/usr/bin/env bash
# Runs ep_ht_perf under several EP_HT_DEV_* tunings (VARIANTS="name:ENV=V,ENV=V;...").
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0
export LD_LIBRARY_PATH=$PWD/build/htrun:$(dirname "$(find / -name 'libnccl.so.2' 2>/dev/null | head -1)"):${LD_LIBRARY_PATH:-}
export EP_TIMEOUT_MS=${EP_TIMEOUT_MS:-8000}
IFS=';' read -ra VS <<< "$VARIANTS"
for v in "${VS[@]}"; do
  name=${v%%:*}; envs=${v#*:}
  unset EP_HT_DEV_PUB_RELAXED EP_HT_DEV_PUB_EVERY EP_HT_DEV_LAG8 EP_HT_DEV_READ_LAG2 EP_HT_DEV_NPROD
  xs=""
  IFS=',' read -ra ES <<< "$envs"
  for e in "${ES[@]}"; do [ -n "$e" ] && export "$e" && xs="$xs -x ${e%%=*}"; done
  echo "=== $name ($envs) $PERF"
  timeout ${T2:-60} mpirun --allow-run-as-root --oversubscribe -np ${NP:-4} -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x EP_TIMEOUT_MS $xs \
    build/htrun/${BIN:-ep_ht_perf} $PERF 2>&1 | tee $OUT/perf_$name.log | grep -E "^[0-9]+ +[0-9]+ +(dispatch|combine|notify)|check|rror|FAIL" | head -20
done
