#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages epcomm's build and tests need.
# The CUDA toolkit (nvcc, cudart) is expected under $CUDA_HOME (default /usr/local/cuda).
#   hwloc:        libhwloc-dev (topology), hwloc (lstopo, to write EP_TOPO_FILE XMLs)
#   verbs:        libibverbs-dev for the headers; the library itself is dlopen'd at run time
#   OpenMPI:      only to launch multi-process tests and perf binaries
#   GoogleTest:   unit and GPU suites
#   packaging:    dpkg-dev, fakeroot; cmake checks the installed find_package(epcomm) config
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential pkg-config \
  libhwloc-dev hwloc \
  libibverbs-dev rdma-core ibverbs-providers \
  openmpi-bin libopenmpi-dev \
  libgtest-dev googletest \
  dpkg-dev fakeroot python3 cmake binutils
echo "epcomm: dependencies installed"
