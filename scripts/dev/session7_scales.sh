. scripts/dev/lib_x4.sh
for r in 1 2; do
for X in "" "--scales token" "EP_LL_DEV_SKIP=1" "EP_LL_LINES=0" "EP_LL_LINES=0 --scales token"; do
  envs=(); args=()
  for w in $X; do case $w in EP_*) envs+=(-x $w);; *) args+=($w);; esac; done
  timeout 60 "${MPI[@]}" -np 2 "${envs[@]}" build/bin/ep_ll_perf --tokens 1,32,128 --iters 40 --warmup 10 --no-nccl --no-hook --dedup 1 --reduce 1 "${args[@]}" > $O/x.log 2>&1
  echo "== [$X] $(grep -E '^\| [0-9]+ \| dispatch \|' $O/x.log | awk -F'|' '{printf "T=%s %s; ", $2, $5}')"
done; done
