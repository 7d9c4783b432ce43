/*************************************************************************
 * epcomm: topology discovery.
 * SPDX-License-Identifier: Apache-2.0
 *
 * epTopoMachine describes one host: GPUs (by PCI bus id), verbs NICs, the
 * PCI path class and hop count between every GPU and NIC, NVLink links
 * between GPUs, NUMA node and CPU set of each device, and the GPU -> NIC
 * assignment (nearest NICs, ties spread round-robin over the GPUs that share
 * them). Sources:
 *   - hwloc (PCI tree, NUMA, CPU sets) with the I/O filter KEEP_IMPORTANT;
 *     EP_TOPO_FILE=<hwloc XML> replaces the live machine (tests, or to correct
 *     a machine whose firmware reports a wrong tree);
 *   - GPUs: CUDA devices matched by PCI bus id (live), else NVIDIA display/3D
 *     PCI functions in the tree (XML, or no driver);
 *   - NICs: libibverbs via dlopen (live; missing library = no NICs), or the
 *     OpenFabrics OS devices of the XML; filtered by EP_IB_HCA;
 *   - NVLink: NVML via dlopen (link state + remote PCI id, NVSwitch-aware),
 *     else CUDA P2P attributes.
 * The live machine is discovered once per process and shared (it does not
 * change while the process runs).
 *************************************************************************/
#ifndef EP_TOPO_H_
#define EP_TOPO_H_

#include <memory>
#include <string>
#include <vector>

#include "epcomm.h"

struct epComm;

/* PCI path classes, best first (nvidia-smi topo -m vocabulary). */
enum epTopoPath {
  EP_PATH_LOC = 0,  /* same PCI function */
  EP_PATH_PIX = 1,  /* through one PCIe switch */
  EP_PATH_PXB = 2,  /* through several PCIe bridges, no host bridge */
  EP_PATH_PHB = 3,  /* through a PCIe host bridge (same root complex) */
  EP_PATH_NODE = 4, /* between host bridges of one NUMA node / socket */
  EP_PATH_SYS = 5,  /* across the inter-socket link */
  EP_PATH_NONE = 6
};
const char* epTopoPathName(int path);

struct epTopoGpu {
  std::string busId;   /* "0000:19:00.0", lower case */
  int cudaDev = -1;    /* CUDA ordinal in this process, -1 when not visible */
  int numa = -1;       /* OS index of the nearest NUMA node, -1 unknown */
  std::string cpuset;  /* CPUs near the GPU, list form "0-55,112-167" */
  std::string model;   /* "[10de:2330]" or the CUDA device name */
};

struct epTopoNic {
  std::string name;    /* verbs device, "mlx5_0" */
  std::string busId;
  int numa = -1;
  std::string cpuset;
  std::vector<int> activePorts; /* verbs port numbers in state ACTIVE (XML: from Port<N>State) */
  std::string linkLayer;        /* "IB", "Ethernet" or "" */
};

struct epTopoNuma {
  int os = -1;              /* OS index (what numactl calls the node) */
  std::string cpuset;       /* its CPUs, list form */
  unsigned long long bytes = 0;
};

struct epTopoMachine {
  std::string source;    /* "live" or the XML path */
  std::string hostName;
  int packages = 0, numaNodes = 0, cores = 0, pus = 0;
  std::vector<epTopoNuma> numa;
  std::vector<epTopoGpu> gpus;
  int hiddenGpus = 0;                    /* NVIDIA GPUs in the tree left out (allGpus = false) */
  std::vector<epTopoNic> nics;           /* after the EP_IB_HCA filter */
  std::vector<std::vector<int>> path;    /* [gpu][nic] epTopoPath */
  std::vector<std::vector<int>> hops;    /* [gpu][nic] PCI tree edges between them */
  std::vector<std::vector<int>> nvlink;  /* [gpu][gpu] NVLink count (1 when only "yes" is known), 0 none */
  std::string nvlinkSource;              /* "nvml", "cuda-p2p" or "none" */
  std::vector<std::vector<int>> nearest; /* [gpu] NICs at the best distance */
  std::vector<std::vector<int>> gpuNics; /* [gpu] assigned NICs, first = primary */
};

struct epTopoOptions {
  const char* xmlFile = nullptr;   /* nullptr: EP_TOPO_FILE, else the live machine */
  const char* hcaFilter = nullptr; /* nullptr: EP_IB_HCA */
  bool useCuda = true;             /* match CUDA devices and probe NVLink */
  /* false: on a live machine where CUDA sees GPUs, keep only those (a container
   * may show the host's other GPUs in sysfs); true: every NVIDIA GPU in the tree. */
  bool allGpus = true;
};

/* Discovers a machine. Not cached: see epTopoMachineShared. */
epResult_t epTopoMachineLoad(const epTopoOptions& opt, std::shared_ptr<epTopoMachine>* out);
/* The process-wide machine for default options (EP_TOPO_FILE or live), discovered on first use. */
epResult_t epTopoMachineShared(std::shared_ptr<const epTopoMachine>* out);

/* NIC assignment among a chosen set of GPUs (e.g. those a communicator uses
 * on this node), by PCI bus id; GPUs unknown to the machine get no NICs.
 * Every process that passes the same set gets the same answer, whatever its
 * CUDA_VISIBLE_DEVICES. Returns [i] = NIC indices for busIds[i]. */
std::vector<std::vector<int>> epTopoAssignAmong(const epTopoMachine& m, const std::vector<std::string>& busIds);

/* One rank's view, hung off epComm::topo (never null after init; when live
 * discovery failed, machine->source is "unavailable" and the lists are empty). */
struct epTopoSystem {
  std::shared_ptr<const epTopoMachine> machine;
  int gpu = -1;           /* index into machine->gpus, -1 when the rank has no GPU or it is not in the tree */
  std::vector<int> nics;  /* NICs assigned among the GPUs of this rank's node (all NICs when gpu < 0) */
  int numa = -1;
  std::string cpuset;
};

/* At init: attaches this rank's view to comm->topo. */
epResult_t epTopoCommInit(epComm* comm);
void epTopoFree(epTopoSystem* topo);

#endif  // EP_TOPO_H_
