#!/usr/bin/env bash
# Unpacks the .deb files from pkg/debian/build.sh into a scratch root (dpkg -x:
# no root, no system change) and checks that they are usable: the files are
# there, a C program compiles and links through pkg-config and through
# find_package(epcomm), and runs against the unpacked library.
set -euo pipefail
BUILDDIR=${BUILDDIR:-build}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
debs=("$BUILDDIR"/pkg/deb/*.deb)
[ -e "${debs[0]}" ] || { echo "test_install: no .deb under $BUILDDIR/pkg/deb (run make pkg.debian.build)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
for d in "${debs[@]}"; do
  dpkg-deb --info "$d" >/dev/null
  dpkg -x "$d" "$root"
done
for f in usr/include/epcomm.h usr/lib/libepcomm.so usr/lib/libepcomm.a usr/lib/pkgconfig/epcomm.pc \
         usr/lib/cmake/epcomm/epcommConfig.cmake usr/bin/ep-topo; do
  [ -e "$root/$f" ] || { echo "test_install: missing $f" >&2; exit 1; }
done
soname=$(objdump -p "$root/usr/lib/libepcomm.so" | awk '/SONAME/ {print $2}')
[[ $soname == libepcomm.so.* ]] || { echo "test_install: bad soname '$soname'" >&2; exit 1; }

cat > "$root/app.c" <<'C'
#include <stdio.h>
#include "epcomm.h"
int main(void) {
  int v = 0;
  if (epGetVersion(&v) != epSuccess || v != EP_VERSION_CODE) return 1;
  printf("linked epcomm %d\n", v);
  return 0;
}
C
flags=$(PKG_CONFIG_PATH="$root/usr/lib/pkgconfig" pkg-config --define-variable=prefix="$root/usr" --cflags --libs epcomm)
cc -std=c99 -o "$root/app" "$root/app.c" $flags -Wl,-rpath,"$root/usr/lib" -Wl,-rpath,"$CUDA_HOME/lib64"
"$root/app"
echo "test_install: pkg-config build OK ($soname)"

if command -v cmake >/dev/null; then
  mkdir -p "$root/cm"
  cat > "$root/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(epcomm_consumer C)
find_package(epcomm 0.1 REQUIRED)
add_executable(app ../app.c)
target_link_libraries(app PRIVATE epcomm::epcomm)
CM
  cmake -S "$root/cm" -B "$root/cm/build" -DCMAKE_PREFIX_PATH="$root/usr" \
    -DCMAKE_BUILD_RPATH="$root/usr/lib;$CUDA_HOME/lib64" >/dev/null
  cmake --build "$root/cm/build" >/dev/null
  "$root/cm/build/app"
  echo "test_install: find_package(epcomm) build OK"
fi
"$root/usr/bin/ep-topo" --no-cuda >/dev/null
echo "test_install: installed ep-topo runs"
