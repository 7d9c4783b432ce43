#!/usr/bin/env bash
# Runs the launcher-driven unit tests (MpiWorld.*) under mpirun with 4 ranks on
# this host, then under scripts/eprun. Called by `make test`.
set -euo pipefail
bin=${1:-build/test/ep_unit_tests}
np=${EP_TEST_NP:-4}
port=$((20000 + RANDOM % 20000))
if ! command -v mpirun >/dev/null; then
  echo "run_mpi_tests: mpirun not found (run 'make deps')" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" = 0 ]; then as_root=(--allow-run-as-root); fi
echo "run_mpi_tests: mpirun -np $np $bin (EP_COMM_ID=127.0.0.1:$port)"
# OpenMPI only launches here: the ranks talk through epcomm's bootstrap, so keep
# OpenMPI off the network (no btl probing) and quiet.
OMPI_MCA_btl=self OMPI_MCA_pml=ob1 OMPI_MCA_btl_base_warn_component_unused=0 \
  mpirun "${as_root[@]}" --oversubscribe -np "$np" -x EP_COMM_ID=127.0.0.1:$port \
  "$bin" --gtest_filter='MpiWorld.*' --gtest_brief=1
echo "run_mpi_tests: scripts/eprun -np $np $bin"
EP_COMM_ID=127.0.0.1:$((port + 1)) scripts/eprun -np "$np" "$bin" --gtest_filter='MpiWorld.*' --gtest_brief=1
