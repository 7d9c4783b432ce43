/*************************************************************************
 * epcomm: building an epTopoMachine from hwloc, CUDA, verbs and NVML
 * (see topo.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <hwloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

#include <cuda_runtime_api.h>

#include "core/checks.h"
#include "core/cuda_util.h"
#include "core/name_filter.h"
#include "core/param.h"
#include "topo/nic_assign.h"
#include "topo/nvlink.h"
#include "topo/topo.h"
#include "topo/verbs_nics.h"

EP_STRING_PARAM(TopoFile, "TOPO_FILE")
EP_STRING_PARAM(IbHca, "IB_HCA")

const char* epTopoPathName(int path) {
  static const char* kNames[] = {"LOC", "PIX", "PXB", "PHB", "NODE", "SYS", "-"};
  return (path >= 0 && path <= EP_PATH_NONE) ? kNames[path] : "?";
}

namespace {

constexpr unsigned kNvidiaVendor = 0x10de;
constexpr int kUnreachableHops = 1 << 20;

std::string busIdOf(hwloc_obj_t pci) {
  char s[32];
  snprintf(s, sizeof(s), "%04x:%02x:%02x.%x", pci->attr->pcidev.domain, pci->attr->pcidev.bus, pci->attr->pcidev.dev,
           pci->attr->pcidev.func);
  return s;
}

bool isNvidiaGpu(hwloc_obj_t pci) {
  // Display controllers: 0x0300 VGA, 0x0302 3D. NVSwitches are bridges (0x0680): not GPUs.
  return pci->attr->pcidev.vendor_id == kNvidiaVendor && (pci->attr->pcidev.class_id >> 8) == 0x03;
}

hwloc_obj_t pciByBusId(hwloc_topology_t t, const std::string& busId) {
  if (busId.empty()) return nullptr;
  return hwloc_get_pcidev_by_busidstring(t, busId.c_str());
}

// NUMA node (OS index) and CPU list of the CPUs nearest an I/O object.
void locality(hwloc_topology_t t, hwloc_obj_t obj, int* numa, std::string* cpuset) {
  *numa = -1;
  cpuset->clear();
  if (obj == nullptr) return;
  hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, obj);
  if (anc == nullptr) return;
  if (anc->nodeset && hwloc_bitmap_weight(anc->nodeset) == 1) *numa = hwloc_bitmap_first(anc->nodeset);
  if (anc->cpuset) {
    char* s = nullptr;
    if (hwloc_bitmap_list_asprintf(&s, anc->cpuset) >= 0 && s) {
      *cpuset = s;
      free(s);
    }
  }
}

// hwloc_get_common_ancestor_obj() does not accept I/O objects: walk parents instead.
hwloc_obj_t commonAncestor(hwloc_obj_t a, hwloc_obj_t b) {
  std::set<hwloc_obj_t> up;
  for (hwloc_obj_t o = a; o; o = o->parent) up.insert(o);
  for (hwloc_obj_t o = b; o; o = o->parent)
    if (up.count(o)) return o;
  return nullptr;
}

int levelsUp(hwloc_obj_t o, hwloc_obj_t anc) {
  int n = 0;
  for (; o && o != anc; o = o->parent) n++;
  return n;
}

void classify(hwloc_topology_t t, hwloc_obj_t a, hwloc_obj_t b, int* path, int* hops) {
  if (a == nullptr || b == nullptr) {
    *path = EP_PATH_SYS;  // not placed in the tree: assume the worst
    *hops = kUnreachableHops;
    return;
  }
  if (a == b) {
    *path = EP_PATH_LOC;
    *hops = 0;
    return;
  }
  hwloc_obj_t anc = commonAncestor(a, b);
  int ua = levelsUp(a, anc), ub = levelsUp(b, anc);
  *hops = ua + ub;
  if (anc->type == HWLOC_OBJ_BRIDGE) {
    if (anc->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_HOST) *path = EP_PATH_PHB;
    // device -> downstream port -> switch upstream port on both sides: one switch.
    else *path = (ua <= 2 && ub <= 2) ? EP_PATH_PIX : EP_PATH_PXB;
    return;
  }
  if (anc->type == HWLOC_OBJ_PCI_DEVICE) {
    *path = EP_PATH_PIX;
    return;
  }
  int na, nb;
  std::string ca, cb;
  locality(t, a, &na, &ca);
  locality(t, b, &nb, &cb);
  *path = (na >= 0 && nb >= 0 && na != nb) ? EP_PATH_SYS : EP_PATH_NODE;
}

int countType(hwloc_topology_t t, hwloc_obj_type_t type) {
  int n = hwloc_get_nbobjs_by_type(t, type);
  return n < 0 ? 0 : n;
}

struct NicCandidate {
  epTopoNic nic;
  hwloc_obj_t pci;
};

std::vector<NicCandidate> xmlNics(hwloc_topology_t t) {
  std::vector<NicCandidate> out;
  for (hwloc_obj_t o = hwloc_get_next_osdev(t, nullptr); o; o = hwloc_get_next_osdev(t, o)) {
    if (o->attr->osdev.type != HWLOC_OBJ_OSDEV_OPENFABRICS || o->name == nullptr) continue;
    NicCandidate c;
    c.nic.name = o->name;
    c.pci = o->parent;
    while (c.pci && c.pci->type != HWLOC_OBJ_PCI_DEVICE) c.pci = c.pci->parent;
    if (c.pci) c.nic.busId = busIdOf(c.pci);
    bool anyPortInfo = false;
    for (int p = 1; p <= 8; p++) {
      char key[32];
      snprintf(key, sizeof(key), "Port%dState", p);
      const char* v = hwloc_obj_get_info_by_name(o, key);
      if (!v) continue;
      anyPortInfo = true;
      if (atoi(v) == 4) c.nic.activePorts.push_back(p);  // IBV_PORT_ACTIVE
    }
    if (!anyPortInfo) c.nic.activePorts.push_back(1);  // the XML does not say: assume port 1 is up
    out.push_back(c);
  }
  return out;
}

std::vector<NicCandidate> liveNics(hwloc_topology_t t) {
  std::vector<NicCandidate> out;
  for (const epVerbsNic& v : epTopoListVerbsNics()) {
    NicCandidate c;
    c.nic.name = v.name;
    c.nic.busId = v.busId;
    c.nic.activePorts = v.activePorts;
    c.nic.linkLayer = v.linkLayer;
    c.pci = pciByBusId(t, v.busId);
    out.push_back(c);
  }
  return out;
}

bool keepNic(const epTopoNic& nic, const epNameFilter& f) {
  for (int p : nic.activePorts)
    if (f.matches(nic.name.c_str(), p)) return true;
  return false;
}

}  // namespace

epResult_t epTopoMachineLoad(const epTopoOptions& opt, std::shared_ptr<epTopoMachine>* out) {
  const char* xml = opt.xmlFile ? opt.xmlFile : epParamTopoFile();
  const char* hca = opt.hcaFilter ? opt.hcaFilter : epParamIbHca();
  auto m = std::make_shared<epTopoMachine>();
  m->source = xml ? xml : "live";
  hwloc_topology_t t;
  if (hwloc_topology_init(&t) != 0) {
    EP_WARN("TOPO: hwloc_topology_init failed");
    return epSystemError;
  }
  // hwloc 2 drops I/O objects by default; KEEP_IMPORTANT keeps PCI devices,
  // the bridges above them and OS devices, which is all we need.
  hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  // GPU-vendor plugins (if libhwloc-plugins is installed) would initialise
  // OpenCL/GL/CUDA/NVML stacks inside our process, slowly and for nothing: GPUs
  // are matched by PCI bus id and NVLink comes from nvlink.cc.
  for (const char* plugin : {"opencl", "gl", "cuda", "nvml", "rsmi", "levelzero"})
    (void)hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, plugin);
  if (xml && hwloc_topology_set_xml(t, xml) != 0) {
    EP_WARN("TOPO: cannot use EP_TOPO_FILE=%s: %s", xml, strerror(errno));
    hwloc_topology_destroy(t);
    return epInvalidArgument;
  }
  if (hwloc_topology_load(t) != 0) {
    EP_WARN("TOPO: hwloc could not load %s: %s", xml ? xml : "the live topology", strerror(errno));
    hwloc_topology_destroy(t);
    return xml ? epInvalidArgument : epSystemError;
  }
  m->packages = countType(t, HWLOC_OBJ_PACKAGE);
  m->numaNodes = countType(t, HWLOC_OBJ_NUMANODE);
  m->cores = countType(t, HWLOC_OBJ_CORE);
  m->pus = countType(t, HWLOC_OBJ_PU);
  for (hwloc_obj_t o = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, nullptr); o;
       o = hwloc_get_next_obj_by_type(t, HWLOC_OBJ_NUMANODE, o)) {
    epTopoNuma n;
    n.os = (int)o->os_index;
    n.bytes = o->attr ? o->attr->numanode.local_memory : 0;
    char* cpus = nullptr;
    if (o->cpuset && hwloc_bitmap_list_asprintf(&cpus, o->cpuset) >= 0 && cpus) {
      n.cpuset = cpus;
      free(cpus);
    }
    m->numa.push_back(n);
  }
  const char* host = hwloc_obj_get_info_by_name(hwloc_get_root_obj(t), "HostName");
  char hn[256] = {0};
  if (!xml || !host) {
    gethostname(hn, sizeof(hn) - 1);
    host = hn;
  }
  m->hostName = host;

  // GPUs: every NVIDIA display function in the tree, in bus order, so that the
  // NIC assignment is the same in every process whatever CUDA_VISIBLE_DEVICES
  // shows it; CUDA ordinals are attached where visible.
  std::vector<hwloc_obj_t> gpuPci;
  for (hwloc_obj_t o = hwloc_get_next_pcidev(t, nullptr); o; o = hwloc_get_next_pcidev(t, o))
    if (isNvidiaGpu(o)) gpuPci.push_back(o);
  std::sort(gpuPci.begin(), gpuPci.end(), [](hwloc_obj_t a, hwloc_obj_t b) { return busIdOf(a) < busIdOf(b); });
  for (hwloc_obj_t o : gpuPci) {
    epTopoGpu g;
    g.busId = busIdOf(o);
    char model[32];
    snprintf(model, sizeof(model), "[%04x:%04x]", o->attr->pcidev.vendor_id, o->attr->pcidev.device_id);
    g.model = model;
    m->gpus.push_back(g);
  }
  int nCuda = opt.useCuda ? epCudaDeviceCount() : 0;
  for (int d = 0; d < nCuda; d++) {
    char bus[32];
    if (epCudaBusId(d, bus, sizeof(bus)) != epSuccess) continue;
    auto it = std::find_if(m->gpus.begin(), m->gpus.end(), [&](const epTopoGpu& g) { return g.busId == bus; });
    if (it == m->gpus.end()) {
      if (xml) continue;  // the XML describes the machine: a GPU it lacks is not placed
      epTopoGpu g;
      g.busId = bus;
      m->gpus.push_back(g);  // hwloc missed it (filtered?): keep it, unplaced
      it = m->gpus.end() - 1;
    }
    it->cudaDev = d;
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, d) == cudaSuccess) it->model = prop.name;
    else (void)cudaGetLastError();
  }
  bool anyVisible = std::any_of(m->gpus.begin(), m->gpus.end(), [](const epTopoGpu& g) { return g.cudaDev >= 0; });
  if (!opt.allGpus && !xml && anyVisible) {
    size_t before = m->gpus.size();
    m->gpus.erase(std::remove_if(m->gpus.begin(), m->gpus.end(), [](const epTopoGpu& g) { return g.cudaDev < 0; }),
                  m->gpus.end());
    m->hiddenGpus = (int)(before - m->gpus.size());
  }
  std::vector<hwloc_obj_t> gpuObj;
  for (epTopoGpu& g : m->gpus) {
    gpuObj.push_back(pciByBusId(t, g.busId));
    locality(t, gpuObj.back(), &g.numa, &g.cpuset);
  }

  // NICs, then the EP_IB_HCA filter.
  epNameFilter filter = epNameFilter::parse(hca);
  std::vector<hwloc_obj_t> nicObj;
  for (NicCandidate& c : xml ? xmlNics(t) : liveNics(t)) {
    if (!keepNic(c.nic, filter)) {
      EP_INFO(EP_LOG_TOPO, "TOPO: NIC %s skipped (%s)", c.nic.name.c_str(),
              c.nic.activePorts.empty() ? "no active port" : "EP_IB_HCA");
      continue;
    }
    locality(t, c.pci, &c.nic.numa, &c.nic.cpuset);
    m->nics.push_back(c.nic);
    nicObj.push_back(c.pci);
  }
  if (hca && m->nics.empty()) EP_WARN("TOPO: EP_IB_HCA=%s selects none of the NICs on %s", hca, m->hostName.c_str());

  int nG = (int)m->gpus.size(), nN = (int)m->nics.size();
  m->path.assign(nG, std::vector<int>(nN, EP_PATH_NONE));
  m->hops.assign(nG, std::vector<int>(nN, kUnreachableHops));
  for (int g = 0; g < nG; g++)
    for (int n = 0; n < nN; n++) classify(t, gpuObj[g], nicObj[n], &m->path[g][n], &m->hops[g][n]);
  epTopoAssignNics(m->path, m->hops, &m->nearest, &m->gpuNics);

  std::vector<std::string> busIds;
  std::vector<int> cudaDevs;
  for (const epTopoGpu& g : m->gpus) {
    busIds.push_back(g.busId);
    cudaDevs.push_back(g.cudaDev);
  }
  if (opt.useCuda) epTopoDetectNvlink(busIds, cudaDevs, &m->nvlink, &m->nvlinkSource);
  else {
    m->nvlink.assign(nG, std::vector<int>(nG, 0));
    m->nvlinkSource = "none";
  }
  hwloc_topology_destroy(t);
  EP_INFO(EP_LOG_TOPO, "TOPO: %s: %d GPU(s), %d NIC(s), %d NUMA node(s), NVLink from %s", m->source.c_str(), nG, nN,
          m->numaNodes, m->nvlinkSource.c_str());
  *out = m;
  return epSuccess;
}

std::vector<std::vector<int>> epTopoAssignAmong(const epTopoMachine& m, const std::vector<std::string>& busIds) {
  std::vector<int> idx;  // machine GPU index of each known bus id, in the caller's order
  std::vector<int> where(busIds.size(), -1);
  for (size_t i = 0; i < busIds.size(); i++)
    for (size_t g = 0; g < m.gpus.size(); g++)
      if (m.gpus[g].busId == busIds[i]) {
        where[i] = (int)idx.size();
        idx.push_back((int)g);
      }
  // Assign in bus order, like the machine-wide map, so the result does not
  // depend on the order the caller lists the GPUs in.
  std::vector<int> order(idx.size());
  for (size_t k = 0; k < order.size(); k++) order[k] = (int)k;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return m.gpus[idx[a]].busId < m.gpus[idx[b]].busId; });
  std::vector<std::vector<int>> path, hops, nearest, assigned;
  for (int k : order) {
    path.push_back(m.path[idx[k]]);
    hops.push_back(m.hops[idx[k]]);
  }
  epTopoAssignNics(path, hops, &nearest, &assigned);
  std::vector<std::vector<int>> out(busIds.size());
  for (size_t i = 0; i < busIds.size(); i++) {
    if (where[i] < 0) continue;
    for (size_t k = 0; k < order.size(); k++)
      if (order[k] == where[i]) out[i] = assigned[k];
  }
  return out;
}

epResult_t epTopoMachineShared(std::shared_ptr<const epTopoMachine>* out) {
  static std::mutex mu;
  static std::shared_ptr<const epTopoMachine> cached;
  std::lock_guard<std::mutex> lock(mu);
  if (!cached) {
    std::shared_ptr<epTopoMachine> m;
    EPCHECK(epTopoMachineLoad(epTopoOptions(), &m));
    cached = m;
  }
  *out = cached;
  return epSuccess;
}
