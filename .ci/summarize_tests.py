#!/usr/bin/env python3
"""Adds up the GoogleTest JSON reports under build/test-results and prints one
closing line 'N passed, N failed, N skipped' (CI reads it). Exit 1 if any failed
or if no test ran at all."""
import glob
import json
import sys

results_dir = sys.argv[1] if len(sys.argv) > 1 else "build/test-results"
passed = failed = skipped = 0
files = sorted(glob.glob(results_dir + "/*.json"))
for path in files:
    with open(path) as f:
        report = json.load(f)
    for suite in report.get("testsuites", []):
        for case in suite.get("testsuite", []):
            if case.get("status") != "RUN":
                continue
            if case.get("failures"):
                failed += 1
            elif case.get("result") == "SKIPPED":
                skipped += 1
            else:
                passed += 1
    print("  %s" % path, file=sys.stderr)
print("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(1 if failed or passed == 0 else 0)
