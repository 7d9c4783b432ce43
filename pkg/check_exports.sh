#!/usr/bin/env bash
# Checks the shared library's ABI surface: soname libepcomm.so.<major> and only
# ep* symbols exported (the version script and -fvisibility=hidden at work).
set -euo pipefail
lib=${1:-build/lib/libepcomm.so}
major=$(sed -n 's/^#define EP_MAJOR \([0-9]*\)/\1/p' include/epcomm.h)
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
if [ "$soname" != "libepcomm.so.$major" ]; then
  echo "check_exports: soname is '$soname', expected libepcomm.so.$major" >&2
  exit 1
fi
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^ep' || true)
if [ -n "$bad" ]; then
  echo "check_exports: symbols outside ep* are exported:" >&2
  echo "$bad" | head -20 >&2
  exit 1
fi
n=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c '^ep')
for sym in epGetVersion epGetErrorString epGetLastError epGetUniqueId epCommInitRank epCommInitAll epCommDestroy \
           epCommAbort epCommGetAsyncError epCommNvlinkPeers; do
  nm -D --defined-only "$lib" | awk '{print $3}' | grep -qx "$sym" || { echo "check_exports: $sym missing" >&2; exit 1; }
done
echo "check_exports: $soname exports $n symbols, all ep*"
