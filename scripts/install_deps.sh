#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages epcomm's build and tests need.
# The CUDA toolkit (nvcc, cudart) is expected under $CUDA_HOME (default /usr/local/cuda).
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
  dpkg-dev fakeroot python3
echo "epcomm: dependencies installed"
