/*************************************************************************
 * ep-topo --comm: builds a real communicator across the processes started by
 * a launcher and prints, from rank 0, where every rank landed: host, GPU,
 * node and local rank, NUMA node / CPUs, assigned NICs and NVLink peers.
 *   mpirun -np 4 build/bin/ep-topo --comm
 *   scripts/eprun -np 4 build/bin/ep-topo --comm
 * Ranks meet through epcomm's bootstrap at EP_COMM_ID (default
 * 127.0.0.1:29517, i.e. one host; set it to rank 0's host:port otherwise).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "bootstrap/bootstrap.h"
#include "core/comm.h"
#include "core/cuda_util.h"
#include "topo/topo.h"
#include "tools/ep-topo/print.h"

namespace {

int envInt(std::initializer_list<const char*> names, int deflt) {
  for (const char* n : names) {
    const char* v = getenv(n);
    if (v && *v) return atoi(v);
  }
  return deflt;
}

// What each rank reports (fixed size: it travels over the bootstrap).
struct RankRecord {
  char host[64];
  int pid, cudaDev, node, nodes, local, localSize, numa;
  char busId[32];
  char cpus[96];
  char nics[96];
  char nvlink[160];
};

}  // namespace

int epTopoCommReport() {
  int rank = envInt({"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "EP_RANK"}, 0);
  int size = envInt({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "EP_NRANKS"}, 1);
  int local = envInt({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "EP_LOCAL_RANK"}, rank);
  int ndev = epCudaDeviceCount();
  if (ndev > 0 && cudaSetDevice(local % ndev) != cudaSuccess) {
    fprintf(stderr, "ep-topo --comm: rank %d: cudaSetDevice(%d) failed\n", rank, local % ndev);
    return 1;
  }
  setenv("EP_COMM_ID", "127.0.0.1:29517", 0);
  epUniqueId id;
  epComm_t comm = nullptr;
  epResult_t r = epGetUniqueId(&id);
  if (r == epSuccess) r = epCommInitRank(&comm, size, id, rank, nullptr);
  if (r != epSuccess) {
    fprintf(stderr, "ep-topo --comm: rank %d/%d: epCommInitRank failed: %s: %s\n", rank, size, epGetErrorString(r),
            epGetLastError(nullptr));
    return 1;
  }
  std::vector<RankRecord> all(size);
  RankRecord& me = all[rank];
  memset(&me, 0, sizeof(me));
  gethostname(me.host, sizeof(me.host) - 1);
  me.pid = getpid();
  me.cudaDev = comm->cudaDev;
  me.node = comm->node;
  me.nodes = comm->nNodes;
  me.local = comm->localRank;
  me.localSize = comm->localRanks;
  snprintf(me.busId, sizeof(me.busId), "%s", comm->rankBusId[rank].empty() ? "-" : comm->rankBusId[rank].c_str());
  const epTopoSystem* t = comm->topo;
  me.numa = t ? t->numa : -1;
  snprintf(me.cpus, sizeof(me.cpus), "%s", t && !t->cpuset.empty() ? t->cpuset.c_str() : "?");
  std::string nics, peers;
  if (t)
    for (int n : t->nics) nics += (nics.empty() ? "" : ",") + t->machine->nics[n].name;
  int nPeers = 0;
  for (int p = 0; p < size; p++)
    if (p != rank && comm->nvlinkPeer[p]) {
      peers += (peers.empty() ? "" : ",") + std::to_string(p);
      nPeers++;
    }
  snprintf(me.nics, sizeof(me.nics), "%s", nics.empty() ? "-" : nics.c_str());
  snprintf(me.nvlink, sizeof(me.nvlink), "%s%s", peers.empty() ? "-" : peers.c_str(),
           nPeers == size - 1 && size > 1 ? " (all)" : "");
  r = epBootstrapAllGather(comm->bootstrap, all.data(), sizeof(RankRecord));
  if (r == epSuccess && rank == 0) {
    printf("Communicator: %d rank(s) on %d node(s), commHash %016llx\n", size, all[0].nodes,
           (unsigned long long)comm->commHash);
    printf("  %-4s %-16s %-8s %-4s %-13s %-4s %-6s %-4s %-14s %-16s %s\n", "rank", "host", "pid", "cuda", "bus-id",
           "node", "local", "NUMA", "CPUs", "NICs", "NVLink peers");
    for (int p = 0; p < size; p++) {
      const RankRecord& x = all[p];
      char localStr[16];
      snprintf(localStr, sizeof(localStr), "%d/%d", x.local, x.localSize);
      printf("  %-4d %-16s %-8d %-4d %-13s %-4d %-6s %-4d %-14s %-16s %s\n", p, x.host, x.pid, x.cudaDev, x.busId,
             x.node, localStr, x.numa, x.cpus, x.nics, x.nvlink);
    }
    fflush(stdout);
  }
  epResult_t d = epCommDestroy(comm);
  if (r != epSuccess || d != epSuccess) {
    fprintf(stderr, "ep-topo --comm: rank %d: %s\n", rank, epGetLastError(nullptr));
    return 1;
  }
  return 0;
}
