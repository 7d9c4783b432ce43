#!/usr/bin/env bash
# session3_cluster_x4.sh: one nvidia-h200-x4 call: block placement of the HT direct kernels through
# thread-block clusters (EP_HT_DEV_CLUSTER 1/2/4/8; a cluster runs on one GPC): cached dispatch
# (kernel only) and combine at 16 and 24 SMs, rank 0's SMs printed; then notify + dispatch (mode b,
# PDL on) with clusters of 4 and 8.
set -u
cd "$(dirname "$0")/../.." || exit 1
. scripts/dev/lib_x4.sh  # $O, the environment, perf()
for cl in 1 2 4 8; do perf c_cl$cl EP_HT_DEV_CLUSTER=$cl EP_HT_DEV_SMID_LOG=1 -- --sms 16,24 --no-nccl --mode c; done
for cl in 4 8; do perf b_cl$cl EP_HT_DEV_CLUSTER=$cl -- --sms 16,24 --no-nccl; done
tar czf "$O/logs.tgz" -C "$O" perf
