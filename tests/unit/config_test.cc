/*************************************************************************
 * epcomm unit tests: epConfig_t validation/resolution and EP_* params.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/param.h"
#include "tests/unit/fork_ranks.h"

namespace {
std::string lastError() { return epThreadLastError(); }

}  // namespace

TEST(Config, InitializerFillsHeader) {
  epConfig_t c = EP_CONFIG_INITIALIZER;
  EXPECT_EQ(c.size, sizeof(epConfig_t));
  EXPECT_EQ(c.magic, EP_CONFIG_MAGIC);
  EXPECT_EQ(c.version, (unsigned)EP_CONFIG_VERSION);
  EXPECT_EQ(c.timeoutMs, EP_CONFIG_UNDEF_INT);
  EXPECT_EQ(c.net, nullptr);
  EXPECT_EQ(epConfigValidate(&c), epSuccess);
  EXPECT_EQ(epConfigValidate(nullptr), epSuccess);
}

TEST(Config, NotFromInitializerIsInvalidArgument) {
  epConfig_t c;
  memset(&c, 0, sizeof(c));
  EXPECT_EQ(epConfigValidate(&c), epInvalidArgument);
  EXPECT_NE(lastError().find("EP_CONFIG_INITIALIZER"), std::string::npos) << lastError();
  epConfig_t d = EP_CONFIG_INITIALIZER;
  d.size = sizeof(epConfig_t) - 8;
  EXPECT_EQ(epConfigValidate(&d), epInvalidArgument);
  EXPECT_NE(lastError().find("size"), std::string::npos) << lastError();
}

TEST(Config, NewerVersionIsInvalidUsage) {
  epConfig_t c = EP_CONFIG_INITIALIZER;
  c.version = EP_CONFIG_VERSION + 1;
  EXPECT_EQ(epConfigValidate(&c), epInvalidUsage);
  EXPECT_NE(lastError().find("newer"), std::string::npos) << lastError();
}

TEST(Config, UserValuesWin) {
  epConfig_t c = EP_CONFIG_INITIALIZER;
  c.timeoutMs = 1234;
  c.numSms = 24;
  c.net = "emulated";
  c.emulateNodes = 2;
  c.commName = "moe-layer";
  epResolvedConfig r;
  ASSERT_EQ(epConfigResolve(&c, &r), epSuccess) << lastError();
  EXPECT_EQ(r.timeoutMs, 1234);
  EXPECT_EQ(r.numSms, 24);
  EXPECT_EQ(r.net, "emulated");
  EXPECT_EQ(r.emulateNodes, 2);
  EXPECT_EQ(r.commName, "moe-layer");
}

TEST(Config, OutOfRangeFieldsNamed) {
  struct Case {
    const char* field;
    void (*set)(epConfig_t*);
  } cases[] = {
      {"timeoutMs", [](epConfig_t* c) { c->timeoutMs = 0; }},
      {"bootstrapTimeoutMs", [](epConfig_t* c) { c->bootstrapTimeoutMs = -5; }},
      {"numSms", [](epConfig_t* c) { c->numSms = 0; }},
      {"htMaxTokensPerRank", [](epConfig_t* c) { c->htMaxTokensPerRank = -1; }},
      {"nvlBufferBytes", [](epConfig_t* c) { c->nvlBufferBytes = -1; }},
      {"llMaxTokensPerRank", [](epConfig_t* c) { c->llMaxTokensPerRank = -3; }},
      {"llMaxTopk", [](epConfig_t* c) { c->llMaxTopk = 5000; }},
      {"emulateNodes", [](epConfig_t* c) { c->emulateNodes = 0; }},
      {"net", [](epConfig_t* c) { c->net = "carrier-pigeon"; }},
  };
  for (const Case& k : cases) {
    epConfig_t c = EP_CONFIG_INITIALIZER;
    k.set(&c);
    epResolvedConfig r;
    EXPECT_EQ(epConfigResolve(&c, &r), epInvalidArgument) << k.field;
    EXPECT_NE(lastError().find(k.field), std::string::npos) << lastError();
  }
}

TEST(Config, NullMeansDefaults) {
  epResolvedConfig r;
  ASSERT_EQ(epConfigResolve(nullptr, &r), epSuccess);
  EXPECT_GT(r.timeoutMs, 0);
  EXPECT_GT(r.bootstrapTimeoutMs, 0);
  EXPECT_GE(r.emulateNodes, 1);
}

TEST(Params, ParseAndFallback) {
  setenv("EP_UNITTEST_PARAM", "42", 1);
  EXPECT_EQ(epParamLoad("EP_UNITTEST_PARAM", 7), 42);
  setenv("EP_UNITTEST_PARAM", "0x10", 1);
  EXPECT_EQ(epParamLoad("EP_UNITTEST_PARAM", 7), 16);
  setenv("EP_UNITTEST_PARAM", "12abc", 1);
  EXPECT_EQ(epParamLoad("EP_UNITTEST_PARAM", 7), 7);
  EXPECT_NE(lastError().find("EP_UNITTEST_PARAM"), std::string::npos);
  setenv("EP_UNITTEST_PARAM", "", 1);
  EXPECT_EQ(epParamLoad("EP_UNITTEST_PARAM", 7), 7);
  unsetenv("EP_UNITTEST_PARAM");
  EXPECT_EQ(epParamLoad("EP_UNITTEST_PARAM", -1), -1);
  EXPECT_EQ(epGetEnv("EP_UNITTEST_PARAM"), nullptr);
}

EP_PARAM(UnitCached, "UNITTEST_CACHED", 5)

TEST(Params, ReadOnceAndCached) {
  setenv("EP_UNITTEST_CACHED", "11", 1);
  EXPECT_EQ(epParamUnitCached(), 11);
  setenv("EP_UNITTEST_CACHED", "12", 1);
  EXPECT_EQ(epParamUnitCached(), 11);  // the first read sticks
  unsetenv("EP_UNITTEST_CACHED");
}

// Env knobs resolve when the config leaves a field unset. Params are cached per
// process, so this runs in a fresh exec of this binary with the env set.
TEST(Config, EnvKnobsApply) {
  if (getenv("EP_UNITTEST_CHILD")) {
    epResolvedConfig r;
    epConfig_t c = EP_CONFIG_INITIALIZER;
    c.numSms = 8;  // explicit beats EP_NUM_SMS
    ASSERT_EQ(epConfigResolve(&c, &r), epSuccess) << lastError();
    EXPECT_EQ(r.numSms, 8);
    EXPECT_EQ(r.timeoutMs, 4321);
    EXPECT_EQ(r.net, "ib");
    EXPECT_EQ(r.llMaxTokensPerRank, 128);
    return;
  }
  // Params are cached per process: resolve them in a fresh exec with the env set.
  EXPECT_TRUE(epRunTestInFreshProcess(
      "Config.EnvKnobsApply",
      {{"EP_TIMEOUT_MS", "4321"}, {"EP_NUM_SMS", "32"}, {"EP_NET", "ib"}, {"EP_LL_MAX_TOKENS", "128"}}));
}

TEST(Config, BadEnvValueIsInvalidArgument) {
  if (getenv("EP_UNITTEST_CHILD")) {
    epResolvedConfig r;
    EXPECT_EQ(epConfigResolve(nullptr, &r), epInvalidArgument);
    EXPECT_NE(lastError().find("EP_EMULATE_NODES"), std::string::npos) << lastError();
    return;
  }
  EXPECT_TRUE(epRunTestInFreshProcess("Config.BadEnvValueIsInvalidArgument", {{"EP_EMULATE_NODES", "0"}}));
}
