#!/usr/bin/env bash
# ll_variant.sh NAME "NVCC FLAGS": builds an ep_ll_perf whose LL dispatch kernel is compiled with extra
# flags (e.g. -DEP_LL_NO_PROFILE) into build-var/NAME/ep_ll_perf (stripped), from a copy of build/ (only
# ll_dispatch.cu is recompiled), so that one device call can A/B compile-time variants of the same tree.
# Run from the repository root after `make all`; carry build-var (about 8 MB per variant).
set -eu
name=$1; flags=$2
rm -rf "build-v-$name" && cp -a build "build-v-$name"
cmd=$(make -n -B build/obj/src/lowlatency/ll_dispatch.cu.o | grep nvcc)
eval "${cmd//build\/obj/build-v-$name/obj} $flags"
touch "build-v-$name/obj/src/lowlatency/ll_dispatch.cu.o"
make -s BUILDDIR="build-v-$name" "build-v-$name/bin/ep_ll_perf" >/dev/null
mkdir -p "build-var/$name" && strip -o "build-var/$name/ep_ll_perf" "build-v-$name/bin/ep_ll_perf"
rm -rf "build-v-$name"
echo "build-var/$name/ep_ll_perf"
