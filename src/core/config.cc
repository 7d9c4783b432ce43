/*************************************************************************
 * epcomm: config validation and resolution (see config.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/config.h"

#include <cstring>
#include <string>
#include <vector>

#include "bootstrap/bootstrap.h"
#include "core/checks.h"
#include "core/param.h"

EP_PARAM(TimeoutMs, "TIMEOUT_MS", 100000)
EP_PARAM(BootstrapTimeoutMs, "BOOTSTRAP_TIMEOUT", 120000)
EP_PARAM(NumSms, "NUM_SMS", 20)
EP_PARAM(HtMaxTokens, "HT_MAX_TOKENS", 8192)
EP_PARAM(NvlBufferBytes, "NVL_BUFFER_BYTES", 0)
EP_PARAM(LlMaxTokens, "LL_MAX_TOKENS", 0)
EP_PARAM(LlHidden, "LL_HIDDEN", 0)
EP_PARAM(LlNumExperts, "LL_NUM_EXPERTS", 0)
EP_PARAM(LlMaxTopk, "LL_MAX_TOPK", 0)
EP_PARAM(EmulateNodes, "EMULATE_NODES", 1)
EP_STRING_PARAM(Net, "NET")
EP_STRING_PARAM(CommName, "COMM_NAME")

namespace {

// One integer field: user value, else env knob, else default; then a range check
// whose message names where the bad value came from.
template <typename T>
epResult_t resolveInt(const char* field, const char* env, T user, T undef, int64_t fromEnv, int64_t lo, int64_t hi,
                      T* out) {
  bool set = user != undef;
  int64_t v = set ? (int64_t)user : fromEnv;
  if (v < lo || v > hi) {
    EP_WARN("Config: %s = %lld (from %s) is out of range [%lld, %lld]", field, (long long)v,
            set ? "epConfig_t" : env, (long long)lo, (long long)hi);
    return epInvalidArgument;
  }
  *out = (T)v;
  return epSuccess;
}

constexpr int64_t kIntMax = 0x7fffffff;

}  // namespace

epResult_t epConfigValidate(const epConfig_t* config) {
  if (config == nullptr) return epSuccess;
  if (config->magic != EP_CONFIG_MAGIC) {
    EP_WARN("Config: magic 0x%x is not EP_CONFIG_MAGIC: initialise the config with EP_CONFIG_INITIALIZER", config->magic);
    return epInvalidArgument;
  }
  if (config->version > EP_CONFIG_VERSION) {
    EP_WARN("Config: version %u is newer than this library understands (%u): rebuild against this epcomm.h or upgrade "
            "libepcomm",
            config->version, (unsigned)EP_CONFIG_VERSION);
    return epInvalidUsage;
  }
  if (config->version == 0 || config->size != sizeof(epConfig_t)) {
    // Only version 1 exists: its size is exact. Later versions will accept the
    // sizes of every earlier version here.
    EP_WARN("Config: size %zu / version %u do not match epConfig_t (size %zu, version %u): initialise it with "
            "EP_CONFIG_INITIALIZER",
            config->size, config->version, sizeof(epConfig_t), (unsigned)EP_CONFIG_VERSION);
    return epInvalidArgument;
  }
  return epSuccess;
}

epResult_t epConfigResolve(const epConfig_t* config, epResolvedConfig* out) {
  EPCHECK(epConfigValidate(config));
  epConfig_t c = EP_CONFIG_INITIALIZER;
  if (config) c = *config;
  const int U = EP_CONFIG_UNDEF_INT;
  EPCHECK(resolveInt("timeoutMs", "EP_TIMEOUT_MS", c.timeoutMs, U, epParamTimeoutMs(), 1, kIntMax, &out->timeoutMs));
  EPCHECK(resolveInt("bootstrapTimeoutMs", "EP_BOOTSTRAP_TIMEOUT", c.bootstrapTimeoutMs, U,
                     epParamBootstrapTimeoutMs(), 1, kIntMax / 4, &out->bootstrapTimeoutMs));
  EPCHECK(resolveInt("numSms", "EP_NUM_SMS", c.numSms, U, epParamNumSms(), 1, 1024, &out->numSms));
  EPCHECK(resolveInt("htMaxTokensPerRank", "EP_HT_MAX_TOKENS", c.htMaxTokensPerRank, U, epParamHtMaxTokens(), 1,
                     kIntMax, &out->htMaxTokensPerRank));
  EPCHECK(resolveInt("nvlBufferBytes", "EP_NVL_BUFFER_BYTES", c.nvlBufferBytes, (long long)U, epParamNvlBufferBytes(),
                     0, (int64_t)1 << 40, &out->nvlBufferBytes));
  EPCHECK(resolveInt("llMaxTokensPerRank", "EP_LL_MAX_TOKENS", c.llMaxTokensPerRank, U, epParamLlMaxTokens(), 0,
                     kIntMax, &out->llMaxTokensPerRank));
  EPCHECK(resolveInt("llHidden", "EP_LL_HIDDEN", c.llHidden, U, epParamLlHidden(), 0, kIntMax, &out->llHidden));
  EPCHECK(resolveInt("llNumExperts", "EP_LL_NUM_EXPERTS", c.llNumExperts, U, epParamLlNumExperts(), 0, kIntMax,
                     &out->llNumExperts));
  EPCHECK(resolveInt("llMaxTopk", "EP_LL_MAX_TOPK", c.llMaxTopk, U, epParamLlMaxTopk(), 0, 1024, &out->llMaxTopk));
  EPCHECK(resolveInt("emulateNodes", "EP_EMULATE_NODES", c.emulateNodes, U, epParamEmulateNodes(), 1, 4096,
                     &out->emulateNodes));
  const char* net = c.net ? c.net : epParamNet();
  out->net = net ? net : "";
  if (out->net == "auto") out->net = "";
  if (!out->net.empty() && out->net != "ib" && out->net != "emulated") {
    EP_WARN("Config: net = '%s' (from %s) is not one of auto, ib, emulated", out->net.c_str(),
            c.net ? "epConfig_t" : "EP_NET");
    return epInvalidArgument;
  }
  const char* name = c.commName ? c.commName : epParamCommName();
  out->commName = name ? name : "";
  if (out->commName.size() > 63) {
    EP_WARN("Config: commName '%s' is longer than 63 characters", out->commName.c_str());
    return epInvalidArgument;
  }
  return epSuccess;
}

namespace {

// Fixed-size image of a resolved config, exchanged at init.
struct WireConfig {
  int64_t v[11];
  char net[16];
  char commName[64];
};
const char* const kFieldNames[11] = {"timeoutMs (EP_TIMEOUT_MS)",
                                     "bootstrapTimeoutMs (EP_BOOTSTRAP_TIMEOUT)",
                                     "numSms (EP_NUM_SMS)",
                                     "htMaxTokensPerRank (EP_HT_MAX_TOKENS)",
                                     "nvlBufferBytes (EP_NVL_BUFFER_BYTES)",
                                     "llMaxTokensPerRank (EP_LL_MAX_TOKENS)",
                                     "llHidden (EP_LL_HIDDEN)",
                                     "llNumExperts (EP_LL_NUM_EXPERTS)",
                                     "llMaxTopk (EP_LL_MAX_TOPK)",
                                     "emulateNodes (EP_EMULATE_NODES)",
                                     "(reserved)"};

WireConfig toWire(const epResolvedConfig& c) {
  WireConfig w;
  memset(&w, 0, sizeof(w));
  int64_t v[11] = {c.timeoutMs,         c.bootstrapTimeoutMs, c.numSms,       c.htMaxTokensPerRank,
                   c.nvlBufferBytes,    c.llMaxTokensPerRank, c.llHidden,     c.llNumExperts,
                   c.llMaxTopk,         c.emulateNodes,       0};
  memcpy(w.v, v, sizeof(v));
  snprintf(w.net, sizeof(w.net), "%s", c.net.c_str());
  snprintf(w.commName, sizeof(w.commName), "%s", c.commName.c_str());
  return w;
}

}  // namespace

epResult_t epConfigCheckAcrossRanks(epComm* comm) {
  std::vector<WireConfig> all(comm->nranks);
  all[comm->rank] = toWire(comm->config);
  EPCHECK(epBootstrapAllGather(comm->bootstrap, all.data(), sizeof(WireConfig)));
  // Every rank compares with rank 0, so every rank reports the same field.
  for (int r = 1; r < comm->nranks; r++) {
    for (int f = 0; f < 11; f++) {
      if (all[r].v[f] != all[0].v[f]) {
        EP_WARN("Init: mismatched config across ranks: %s is %lld on rank 0 but %lld on rank %d", kFieldNames[f],
                (long long)all[0].v[f], (long long)all[r].v[f], r);
        return epInvalidUsage;
      }
    }
    if (strcmp(all[r].net, all[0].net) != 0) {
      EP_WARN("Init: mismatched config across ranks: net (EP_NET) is '%s' on rank 0 but '%s' on rank %d", all[0].net,
              all[r].net, r);
      return epInvalidUsage;
    }
    if (strcmp(all[r].commName, all[0].commName) != 0) {
      EP_WARN("Init: mismatched config across ranks: commName (EP_COMM_NAME) is '%s' on rank 0 but '%s' on rank %d",
              all[0].commName, all[r].commName, r);
      return epInvalidUsage;
    }
  }
  return epSuccess;
}
