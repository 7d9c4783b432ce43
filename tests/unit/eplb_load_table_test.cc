/*************************************************************************
 * epcomm unit tests: the load table parser behind ep-eplb, the shipped
 * sample table, and (when built) the ep-eplb binary end to end.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "eplb/load_table.h"

namespace {

using ep::eplb::LoadTable;
using ep::eplb::TableFormat;

void expectParseError(const std::string& text, TableFormat f, const std::string& needle) {
  LoadTable t;
  std::string err;
  EXPECT_FALSE(ep::eplb::parseLoadTable(text, f, &t, &err)) << "accepted: " << text;
  EXPECT_NE(err.find(needle), std::string::npos) << "error '" << err << "' should mention '" << needle << "'";
}

TEST(EplbLoadTable, CsvParses) {
  LoadTable t;
  std::string err;
  ASSERT_TRUE(ep::eplb::parseLoadTable("# comment\ne0,e1,e2\n1, 2.5 ,3\n\n4,5,6e2,\n", TableFormat::Auto, &t, &err))
      << err;
  EXPECT_EQ(t.layers, 2);
  EXPECT_EQ(t.experts, 3);
  EXPECT_EQ(t.values, (std::vector<double>{1, 2.5, 3, 4, 5, 600}));
}

TEST(EplbLoadTable, CsvErrors) {
  expectParseError("1,2,3\n4,5\n", TableFormat::Csv, "line 2: ragged row with 2 values, but the first row has 3");
  expectParseError("1,2,3\n4,abc,6\n", TableFormat::Csv, "line 2, column 2: 'abc' is not a finite number");
  expectParseError("1,2,3\n4,,6\n", TableFormat::Csv, "line 2, column 2: empty field");
  expectParseError("1,2,3\n4,nan,6\n", TableFormat::Csv, "'nan' is not a finite number");
  expectParseError("1,2,3\n4,1e999,6\n", TableFormat::Csv, "'1e999' is not a finite number");
  expectParseError("# nothing\n\n", TableFormat::Csv, "no data rows");
  expectParseError("a,b\nc,d\n", TableFormat::Csv, "line 2, column 1: 'c' is not a finite number");
}

TEST(EplbLoadTable, JsonParses) {
  LoadTable t;
  std::string err;
  ASSERT_TRUE(ep::eplb::parseLoadTable("[[1,2],[3, 4.5]]", TableFormat::Auto, &t, &err)) << err;
  EXPECT_EQ(t.layers, 2);
  EXPECT_EQ(t.values, (std::vector<double>{1, 2, 3, 4.5}));
  ASSERT_TRUE(ep::eplb::parseLoadTable("{\"model\": \"x\", \"meta\": {\"a\": [1, {\"b\": null}]},\n \"loads\": [[7, 8, 9]]}",
                                       TableFormat::Auto, &t, &err))
      << err;
  EXPECT_EQ(t.layers, 1);
  EXPECT_EQ(t.experts, 3);
}

TEST(EplbLoadTable, JsonErrors) {
  expectParseError("[[1,2],[3]]", TableFormat::Json, "layer 1: ragged row with 1 values, but the first row has 2");
  expectParseError("[[1,2],[3,\"x\"]]", TableFormat::Json, "layer 1, expert 1: '\"x\"' is not a finite number");
  expectParseError("[[1,2],\n[3,true]]", TableFormat::Json, "line 2: layer 1, expert 1: 'true' is not a finite number");
  expectParseError("[[1,2],[3,4]", TableFormat::Json, "expected ']'");
  expectParseError("[[1,2]] x", TableFormat::Json, "unexpected text after the table");
  expectParseError("[]", TableFormat::Json, "empty table");
  expectParseError("[[]]", TableFormat::Json, "empty row");
  expectParseError("[1,2]", TableFormat::Json, "layer 0: expected an array of loads");
  expectParseError("{\"other\": 1}", TableFormat::Json, "no \"loads\" member");
}

std::string repoRoot() {
  // build/test/ep_unit_tests -> repository root; fall back to the working directory.
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) {
    buf[n] = 0;
    std::string p(buf);
    for (int i = 0; i < 3; i++) p = p.substr(0, p.rfind('/'));
    if (access((p + "/tools/ep-eplb/samples/dsv3_layer_loads.csv").c_str(), R_OK) == 0) return p;
  }
  return ".";
}

TEST(EplbLoadTable, ShippedSampleParses) {
  const std::string path = repoRoot() + "/tools/ep-eplb/samples/dsv3_layer_loads.csv";
  LoadTable t;
  std::string err;
  ASSERT_TRUE(ep::eplb::readLoadTable(path, TableFormat::Auto, &t, &err)) << err;
  EXPECT_EQ(t.experts, 256);
  EXPECT_GE(t.layers, 2);
  for (int l = 0; l < t.layers; l++) {
    double s = 0;
    for (int e = 0; e < t.experts; e++) s += t.values[(size_t)l * t.experts + e];
    EXPECT_EQ(s, 65536.0 * 8) << "layer " << l << " should hold 65536 tokens x top-8";
  }
}

/* ---------------------------------------------------------------- the binary */

struct RunResult {
  int status = -1;
  std::string out;
};

RunResult run(const std::string& cmd) {
  RunResult r;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) r.out.append(buf, n);
  int st = pclose(f);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class EplbTool : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = repoRoot();
    tool_ = root_ + "/build/bin/ep-eplb";
    if (access(tool_.c_str(), X_OK) != 0) GTEST_SKIP() << "ep-eplb not built at " << tool_ << " (make build/bin/ep-eplb)";
    tmp_ = testing::TempDir() + "/eplb_tool_" + std::to_string(getpid());
  }
  std::string write(const std::string& name, const std::string& text) {
    std::string p = tmp_ + "_" + name;
    std::ofstream(p) << text;
    return p;
  }
  std::string root_, tool_, tmp_;
};

TEST_F(EplbTool, ReadmeExampleText) {
  std::string t = write("readme.csv", "90,132,40,61,104,165,39,4,73,56,183,86\n20,107,104,64,19,197,187,157,172,86,16,27\n");
  RunResult r = run(tool_ + " -r 16 -g 4 -n 2 -p 8 " + t);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("policy hierarchical"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("max GPU load n/a -> 156 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("max GPU load n/a -> 179.5 "), std::string::npos) << r.out;
}

TEST_F(EplbTool, SampleJson) {
  RunResult r = run(tool_ + " -r 288 -g 8 -n 4 -p 32 --json " + root_ + "/tools/ep-eplb/samples/dsv3_layer_loads.csv");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.rfind("{\"layers\":", 0), 0u) << r.out.substr(0, 200);
  EXPECT_NE(r.out.find("\"policy\":\"hierarchical\""), std::string::npos);
  EXPECT_NE(r.out.find("\"imbalance_before\":"), std::string::npos);
  EXPECT_NE(r.out.find("\"mean_imbalance_after\":"), std::string::npos);
}

TEST_F(EplbTool, ClearErrors) {
  std::string ragged = write("ragged.csv", "1,2,3,4\n1,2,3\n");
  RunResult r = run(tool_ + " -r 4 -p 2 " + ragged);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("line 2: ragged row with 3 values"), std::string::npos) << r.out;

  std::string nonnum = write("nonnum.json", "[[1,2,3,4],[1,2,x,4]]");
  r = run(tool_ + " -r 4 -p 2 " + nonnum);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("layer 1, expert 2: 'x' is not a finite number"), std::string::npos) << r.out;

  std::string ok = write("ok.csv", "1,2,3,4\n5,6,7,8\n");
  r = run(tool_ + " -r 4 -p 2 -e 8 " + ok);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("has 4 experts per layer, but --experts says 8"), std::string::npos) << r.out;
  r = run(tool_ + " -r 4 -p 2 -l 3 " + ok);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("has 2 layers, but --layers says 3"), std::string::npos) << r.out;
  r = run(tool_ + " -r 6 -p 4 " + ok);  // R % P
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("not a multiple of numGpus"), std::string::npos) << r.out;
  r = run(tool_ + " -r 4 -p 2 -g 3 " + ok);  // E % G
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("not a multiple of numGroups"), std::string::npos) << r.out;
  std::string neg = write("neg.csv", "1,2,3,4\n5,-6,7,8\n");
  r = run(tool_ + " -r 4 -p 2 " + neg);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("negative"), std::string::npos) << r.out;
  r = run(tool_ + " -p 2 " + ok);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("-r/--slots is required"), std::string::npos) << r.out;
  r = run(tool_ + " -r 4 -p 2 " + tmp_ + "_missing.csv");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("cannot open"), std::string::npos) << r.out;
}

}  // namespace
