#!/usr/bin/env bash
# Builds libepcomm<major> (runtime) and libepcomm-dev (headers, .so link, static
# archive, pkg-config, CMake package, tools) .deb files with dpkg-deb, from a
# `make install` into a staging root. Called by `make pkg.debian.build`.
# Output: $BUILDDIR/pkg/deb/libepcomm<major>_<version>-<rev>_<arch>.deb and
#         $BUILDDIR/pkg/deb/libepcomm-dev_<version>-<rev>_<arch>.deb
set -euo pipefail
: "${EP_VERSION:?set by the Makefile}" "${EP_MAJOR:?set by the Makefile}"
BUILDDIR=${BUILDDIR:-build}
REV=${EP_PKG_REVISION:-1}
ARCH=$(dpkg --print-architecture)
MAINT=${EP_PKG_MAINTAINER:-"epcomm developers <epcomm@example.invalid>"}
top=$(pwd)
out=$top/$BUILDDIR/pkg/deb
stage=$top/$BUILDDIR/pkg/stage
rm -rf "$stage" "$out"
mkdir -p "$out" "$stage/all"

${MAKE:-make} --no-print-directory install DESTDIR="$stage/all" PREFIX=/usr BUILDDIR="$BUILDDIR" >/dev/null

rt=libepcomm$EP_MAJOR
rtdir=$stage/$rt
devdir=$stage/libepcomm-dev
mkdir -p "$rtdir/usr/lib" "$devdir/usr/lib" "$rtdir/DEBIAN" "$devdir/DEBIAN"

# Runtime: the versioned library and its soname link.
mv "$stage"/all/usr/lib/libepcomm.so."$EP_MAJOR" "$stage"/all/usr/lib/libepcomm.so."$EP_VERSION" "$rtdir/usr/lib/"
# Development: everything else.
cp -a "$stage"/all/usr/. "$devdir/usr/"
for pkgdir in "$rtdir" "$devdir"; do
  name=$(basename "$pkgdir")
  mkdir -p "$pkgdir/usr/share/doc/$name"
  cp LICENSE.txt "$pkgdir/usr/share/doc/$name/copyright"
done
rm -rf "$devdir/usr/share/doc/epcomm"
mkdir -p "$devdir/usr/share/doc/libepcomm-dev"
cp README.md docs/env.md "$devdir/usr/share/doc/libepcomm-dev/"

size() { du -sk --exclude=DEBIAN "$1" | cut -f1; }
cat > "$rtdir/DEBIAN/control" <<CTRL
Package: $rt
Version: $EP_VERSION-$REV
Architecture: $ARCH
Maintainer: $MAINT
Installed-Size: $(size "$rtdir")
Section: libs
Priority: optional
Depends: libc6, libstdc++6, libgcc-s1, libhwloc15
Suggests: libibverbs1
Description: expert-parallel (MoE) communication library
 epcomm dispatches tokens to the GPUs hosting their experts and combines the
 expert outputs back, over NVLink and RDMA (verbs, loaded at run time).
 Needs the CUDA runtime (libcudart) of the toolkit it was built with.
CTRL
# ldconfig runs when the package is installed or removed.
echo "activate-noawait ldconfig" > "$rtdir/DEBIAN/triggers"

cat > "$devdir/DEBIAN/control" <<CTRL
Package: libepcomm-dev
Version: $EP_VERSION-$REV
Architecture: $ARCH
Maintainer: $MAINT
Installed-Size: $(size "$devdir")
Section: libdevel
Priority: optional
Depends: $rt (= $EP_VERSION-$REV), libhwloc-dev
Description: expert-parallel (MoE) communication library - development files
 Headers (epcomm.h), the static archive, pkg-config and CMake package files
 (find_package(epcomm)), and the ep-topo / ep-eplb tools.
CTRL

dpkg-deb --root-owner-group --build "$rtdir" "$out/${rt}_${EP_VERSION}-${REV}_${ARCH}.deb" >/dev/null
dpkg-deb --root-owner-group --build "$devdir" "$out/libepcomm-dev_${EP_VERSION}-${REV}_${ARCH}.deb" >/dev/null
rm -rf "$stage"
ls -1 "$out"/*.deb
