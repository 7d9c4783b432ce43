/*************************************************************************
 * ep-topo: prints what epcomm discovers about this machine: GPUs, verbs
 * NICs, the NVLink matrix, the GPU -> NIC map and NUMA affinity.
 * SPDX-License-Identifier: Apache-2.0
 *
 *   ep-topo                 table
 *   ep-topo --json          JSON (stable keys, for scripts)
 *   ep-topo --xml FILE      an hwloc XML instead of the live machine (= EP_TOPO_FILE)
 *   ep-topo --hca SPEC      NIC filter (= EP_IB_HCA), e.g. "^mlx5_1" or "=mlx5_0:1"
 *   ep-topo --no-cuda       do not query CUDA/NVML (describe the tree only)
 *   ep-topo --all-gpus      also list NVIDIA GPUs in the PCI tree that CUDA does not see
 *   mpirun -np N ep-topo --comm   build a communicator over the N processes and print,
 *                           from rank 0, each rank's host, GPU, node, NUMA, NICs, NVLink peers
 * Runs without a GPU, a driver or libibverbs (they are reported as absent).
 *************************************************************************/
#include <cstdio>
#include <cstring>

#include "tools/ep-topo/print.h"

static void usage(FILE* f) {
  fprintf(f, "usage: ep-topo [--json] [--xml FILE] [--hca SPEC] [--no-cuda] [--all-gpus]\n"
             "       mpirun -np N ep-topo --comm\n");
}

int main(int argc, char** argv) {
  epTopoOptions opt;
  bool json = false, allGpus = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) json = true;
    else if (!strcmp(argv[i], "--xml") && i + 1 < argc) opt.xmlFile = argv[++i];
    else if (!strcmp(argv[i], "--hca") && i + 1 < argc) opt.hcaFilter = argv[++i];
    else if (!strcmp(argv[i], "--no-cuda")) opt.useCuda = false;
    else if (!strcmp(argv[i], "--all-gpus")) allGpus = true;
    else if (!strcmp(argv[i], "--comm")) return epTopoCommReport();
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  opt.allGpus = allGpus;
  std::shared_ptr<epTopoMachine> m;
  epResult_t res = epTopoMachineLoad(opt, &m);
  if (res != epSuccess) {
    fprintf(stderr, "ep-topo: topology discovery failed: %s: %s\n", epGetErrorString(res), epGetLastError(nullptr));
    return 1;
  }
  if (json) epTopoPrintJson(*m, stdout);
  else epTopoPrintTable(*m, stdout);
  return 0;
}
