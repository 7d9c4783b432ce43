#!/bin/bash
# Links the LL GPU test binary and ep_ll_perf statically against build/lib/libepcomm.a (run from the repo root).
set -e
COMMON=$(ls tests/common/*.cc tests/common/*.cu | sed 's|^|build/obj/|; s|$|.o|')
LLT="build/obj/tests/gpu/ll_case.cc.o build/obj/tests/gpu/ll_dispatch_combine_test.cc.o build/obj/tests/gpu/ll_hook_graph_test.cc.o build/obj/tests/gpu/main.cc.o"
PERF="build/obj/tests/perf/ep_ll_perf/main.cc.o build/obj/tests/perf/ep_ll_perf/spin.cu.o"
make -j2 $COMMON $LLT $PERF build/lib/libepcomm.a >/dev/null
LIBS="-Wl,--whole-archive build/lib/libepcomm.a -Wl,--no-whole-archive -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcudart -lhwloc -ldl -lpthread -lrt"
g++ -o build/ll/ll_gpu_tests $LLT $COMMON $LIBS -lgtest -lpthread
g++ -o build/ll/ep_ll_perf $PERF $COMMON $LIBS
