# epcomm top-level Makefile.
#
#   make deps                 install the Debian packages the build and tests need (root)
#   make -j                   build/lib/libepcomm.so (+ .a), build/bin/* tools and perf binaries, tests
#   make test                 CPU test suite (GPU suites build and report themselves skipped without a GPU)
#   make install PREFIX=/usr  headers, libraries, pkg-config, CMake package, tools
#   make pkg.debian.build     libepcomm<major> and libepcomm-dev .deb files under build/pkg/deb
#
# Sources are found by folder, so a new file needs no Makefile edit:
#   src/**, transports/**       -> the library (.cc with g++, .cu with nvcc)
#   tools/<name>/*.cc           -> build/bin/<name>
#   tests/unit/*.cc             -> build/test/ep_unit_tests (GoogleTest, CPU only)
#   tests/unit/*.c              -> build/test/ep_c_abi_test (C99 TU against the shared library)
#   tests/gpu/*.{cc,cu}         -> build/test/ep_gpu_tests (GoogleTest, multi-rank GPU suites)
#   tests/perf/<name>/*.{cc,cu} -> build/bin/<name> (ep-tests perf binaries), with tests/common/*
#   tests/common/*.{cc,cu}      -> shared by GPU tests and perf binaries (launcher, references)

SHELL := /bin/bash
PREFIX ?= /usr/local
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
CXX ?= g++
CC ?= gcc
BUILDDIR ?= build
NVCC_GENCODE ?= -gencode=arch=compute_90,code=sm_90
DEBUG ?= 0

EP_MAJOR := $(shell sed -n 's/^\#define EP_MAJOR \([0-9]*\)/\1/p' include/epcomm.h)
EP_MINOR := $(shell sed -n 's/^\#define EP_MINOR \([0-9]*\)/\1/p' include/epcomm.h)
EP_PATCH := $(shell sed -n 's/^\#define EP_PATCH \([0-9]*\)/\1/p' include/epcomm.h)
EP_VERSION := $(EP_MAJOR).$(EP_MINOR).$(EP_PATCH)
# Stamps the pkg/ templates (@PREFIX@ @VERSION@ @MAJOR@ @MINOR@ @CUDA_HOME@).
PKG_SED = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(EP_VERSION)|g' -e 's|@MAJOR@|$(EP_MAJOR)|g' \
  -e 's|@MINOR@|$(EP_MINOR)|g' -e 's|@CUDA_HOME@|$(CUDA_HOME)|g'

OPT := $(if $(filter 1,$(DEBUG)),-O0 -g,-O2 -g)
INCLUDES := -Iinclude -Isrc -I. -I$(CUDA_HOME)/include
CXXFLAGS += -std=c++17 $(OPT) -fPIC -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter $(INCLUDES) -pthread
NVCCFLAGS += -std=c++17 $(if $(filter 1,$(DEBUG)),-O0 -g -G,-O3 -lineinfo) $(NVCC_GENCODE) \
  -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wno-unused-parameter \
  --expt-relaxed-constexpr -Xptxas -warn-spills $(INCLUDES)
# LL_PROFILE=1 builds the LL kernels' %globaltimer stamps (EP_LL_PROFILE). Off by
# default: the stamping code, even when skipped, cost the LL dispatch 0.7-1 us
# (bench/results/ll_notes.md round 8).
LL_PROFILE ?= 0
ifneq ($(LL_PROFILE),1)
  NVCCFLAGS += -DEP_LL_NO_PROFILE
  CXXFLAGS += -DEP_LL_NO_PROFILE
endif
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart
SYS_LIBS := -lhwloc -ldl -lpthread -lrt

LIB_CC := $(shell find src transports -name '*.cc' 2>/dev/null | sort)
LIB_CU := $(shell find src transports -name '*.cu' 2>/dev/null | sort)
LIB_OBJ := $(LIB_CC:%.cc=$(BUILDDIR)/obj/%.o) $(LIB_CU:%.cu=$(BUILDDIR)/obj/%.cu.o)

SONAME := libepcomm.so.$(EP_MAJOR)
LIBSO := $(BUILDDIR)/lib/libepcomm.so.$(EP_VERSION)
LIBA := $(BUILDDIR)/lib/libepcomm.a

TOOLS := $(notdir $(shell find tools -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort))
TOOL_BINS := $(TOOLS:%=$(BUILDDIR)/bin/%)

COMMON_SRC := $(shell find tests/common -name '*.cc' -o -name '*.cu' 2>/dev/null | sort)
COMMON_OBJ := $(patsubst %,$(BUILDDIR)/obj/%.o,$(COMMON_SRC))

UNIT_SRC := $(shell find tests/unit -name '*.cc' 2>/dev/null | sort)
UNIT_OBJ := $(UNIT_SRC:%.cc=$(BUILDDIR)/obj/%.o)
CABI_SRC := $(shell find tests/unit -name '*.c' 2>/dev/null | sort)
GPU_SRC := $(shell find tests/gpu -name '*.cc' -o -name '*.cu' 2>/dev/null | sort)
GPU_OBJ := $(patsubst %,$(BUILDDIR)/obj/%.o,$(GPU_SRC))

PERF_DIRS := $(notdir $(shell find tests/perf -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort))
PERF_BINS := $(PERF_DIRS:%=$(BUILDDIR)/bin/%)

GTEST_LIBS := -lgtest -lpthread
# Executables find libepcomm (and anything installed next to it) relative to themselves.
EXE_LDFLAGS := -Wl,-rpath,'$$ORIGIN/../lib'
# Internal users (tools, tests) link the static archive: they may use internal
# symbols, which the shared library keeps hidden.
STATIC_LINK := -Wl,--whole-archive $(LIBA) -Wl,--no-whole-archive $(CUDA_LIBS) $(SYS_LIBS)

.PHONY: all lib tools tests perf test test-gpu clean install deps pkg.debian.build pkg.debian.test pkg.debian.clean \
  check-env-doc bundle-runtime-libs gpu-bundle
all: lib tools tests perf $(BUILDDIR)/lib/pkgconfig/epcomm.pc

lib: $(BUILDDIR)/lib/libepcomm.so $(LIBA)
tools: $(TOOL_BINS)
tests: $(BUILDDIR)/test/ep_unit_tests $(BUILDDIR)/test/ep_c_abi_test $(BUILDDIR)/test/ep_gpu_tests
perf: $(PERF_BINS)

# ---------------------------------------------------------------- library
$(BUILDDIR)/obj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@

$(BUILDDIR)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIBSO): $(LIB_OBJ) src/libepcomm.map
	@mkdir -p $(dir $@)
	$(CXX) -shared -o $@ $(LIB_OBJ) -Wl,-soname,$(SONAME) -Wl,--version-script=src/libepcomm.map -Wl,-rpath,'$$ORIGIN' \
	  -Wl,--no-undefined $(CUDA_LIBS) $(SYS_LIBS)

$(BUILDDIR)/lib/libepcomm.so: $(LIBSO)
	cd $(BUILDDIR)/lib && ln -sf libepcomm.so.$(EP_VERSION) $(SONAME) && ln -sf $(SONAME) libepcomm.so

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(LIB_OBJ)

$(BUILDDIR)/lib/pkgconfig/epcomm.pc: pkg/epcomm.pc.in include/epcomm.h
	@mkdir -p $(dir $@)
	$(PKG_SED) $< > $@

# ---------------------------------------------------------------- tools
# One explicit rule per tool and per perf binary (generated with eval): two
# pattern rules for build/bin/% and build/bin/ep_% competed, and the tool rule
# could win for a perf binary, linking it without its objects.
define TOOL_RULE
$(BUILDDIR)/bin/$(1): $(patsubst %.cc,$(BUILDDIR)/obj/%.o,$(wildcard tools/$(1)/*.cc)) $(LIBA)
	@mkdir -p $$(dir $$@)
	$$(CXX) -o $$@ $$(filter %.o,$$^) $$(EXE_LDFLAGS) $$(STATIC_LINK)
endef
$(foreach t,$(TOOLS),$(eval $(call TOOL_RULE,$(t))))

# ---------------------------------------------------------------- tests
$(BUILDDIR)/obj/tests/%.cc.o: tests/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@
$(BUILDDIR)/obj/tests/%.cu.o: tests/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILDDIR)/test/ep_unit_tests: $(UNIT_OBJ) $(COMMON_OBJ) $(LIBA)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $(UNIT_OBJ) $(COMMON_OBJ) $(EXE_LDFLAGS) $(STATIC_LINK) $(GTEST_LIBS)

# The C ABI test links the shared library, as a user would. CUDA's own headers
# are not -pedantic clean, so they come in as system headers.
$(BUILDDIR)/test/ep_c_abi_test: $(CABI_SRC) $(BUILDDIR)/lib/libepcomm.so
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pedantic -Werror -Iinclude -isystem $(CUDA_HOME)/include -o $@ $(CABI_SRC) \
	  -L$(BUILDDIR)/lib -Wl,-rpath,'$$ORIGIN/../lib' -lepcomm $(CUDA_LIBS)

$(BUILDDIR)/test/ep_gpu_tests: $(GPU_OBJ) $(COMMON_OBJ) $(LIBA)
	@mkdir -p $(dir $@)
	$(CXX) -o $@ $(GPU_OBJ) $(COMMON_OBJ) $(EXE_LDFLAGS) $(STATIC_LINK) $(GTEST_LIBS)

define PERF_RULE
$(BUILDDIR)/bin/$(1): $(patsubst %,$(BUILDDIR)/obj/%.o,$(wildcard tests/perf/$(1)/*.cc tests/perf/$(1)/*.cu)) \
    $(COMMON_OBJ) $(LIBA)
	@mkdir -p $$(dir $$@)
	$$(CXX) -o $$@ $$(filter %.o,$$^) $$(EXE_LDFLAGS) $$(STATIC_LINK)
endef
$(foreach p,$(PERF_DIRS),$(eval $(call PERF_RULE,$(p))))

# make test: the CPU suite. GPU suites run too and report each case skipped when no GPU is present.
# The multi-process cases run under mpirun (4 ranks, --oversubscribe) and eprun.
# GoogleTest JSON reports go to $(BUILDDIR)/test-results (.ci/summarize_tests.py adds them up).
test: tests
	@rm -rf $(BUILDDIR)/test-results && mkdir -p $(BUILDDIR)/test-results
	pkg/check_exports.sh $(BUILDDIR)/lib/libepcomm.so
	$(BUILDDIR)/test/ep_c_abi_test
	$(BUILDDIR)/test/ep_unit_tests --gtest_output=json:$(BUILDDIR)/test-results/ep_unit_tests.json
	tests/run_mpi_tests.sh $(BUILDDIR)/test/ep_unit_tests
	$(BUILDDIR)/test/ep_gpu_tests --gtest_output=json:$(BUILDDIR)/test-results/ep_gpu_tests.json

# ---------------------------------------------------------------- install / packaging
install: all
	install -d $(DESTDIR)$(PREFIX)/include/epcomm $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin \
	  $(DESTDIR)$(PREFIX)/lib/cmake/epcomm
	install -m 644 include/epcomm.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/epcomm/*.h $(DESTDIR)$(PREFIX)/include/epcomm/
	install -m 755 $(LIBSO) $(DESTDIR)$(PREFIX)/lib/
	cd $(DESTDIR)$(PREFIX)/lib && ln -sf libepcomm.so.$(EP_VERSION) $(SONAME) && ln -sf $(SONAME) libepcomm.so
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib/
	$(PKG_SED) pkg/epcomm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/epcomm.pc
	$(PKG_SED) pkg/cmake/epcommConfig.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/epcomm/epcommConfig.cmake
	$(PKG_SED) pkg/cmake/epcommConfigVersion.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/epcomm/epcommConfigVersion.cmake
	install -d $(DESTDIR)$(PREFIX)/share/doc/epcomm
	install -m 644 README.md LICENSE.txt docs/env.md $(DESTDIR)$(PREFIX)/share/doc/epcomm/
	install -m 755 $(TOOL_BINS) $(PERF_BINS) $(DESTDIR)$(PREFIX)/bin/

pkg.debian.build: all
	EP_VERSION=$(EP_VERSION) EP_MAJOR=$(EP_MAJOR) BUILDDIR=$(BUILDDIR) pkg/debian/build.sh

# Installs the .deb files into a scratch root and builds a program against them.
pkg.debian.test: pkg.debian.build
	BUILDDIR=$(BUILDDIR) CUDA_HOME=$(CUDA_HOME) pkg/debian/test_install.sh

# Every EP_* knob read by the code must be documented in docs/env.md.
check-env-doc:
	pkg/check_env_doc.sh

pkg.debian.clean:
	rm -rf $(BUILDDIR)/pkg

deps:
	scripts/install_deps.sh

# Copies hwloc's runtime library into build/lib, for GPU hosts that lack it:
# executables (rpath $$ORIGIN/../lib) and libepcomm.so (rpath $$ORIGIN) find it there.
bundle-runtime-libs: lib
	cp -L $$($(CC) -print-file-name=libhwloc.so.15) $(BUILDDIR)/lib/libhwloc.so.15

# A small copy of the build for the GPU hosts (the device tool carries at most 64 MiB):
# stripped executables in the same bin/ test/ lib/ layout, plus the runtime libraries
# those hosts may lack. On the GPU host: `ln -sfn build-gpu build && scripts/gpu_suite.sh`.
GPU_BUNDLE ?= build-gpu
gpu-bundle: all
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/bin $(GPU_BUNDLE)/test $(GPU_BUNDLE)/lib
	for f in $(TOOL_BINS) $(PERF_BINS); do strip -o $(GPU_BUNDLE)/bin/$$(basename $$f) $$f; done
	for f in $(BUILDDIR)/test/ep_gpu_tests $(BUILDDIR)/test/ep_unit_tests; do strip -o $(GPU_BUNDLE)/test/$$(basename $$f) $$f; done
	strip -o $(GPU_BUNDLE)/lib/libepcomm.so.$(EP_VERSION) $(LIBSO)
	cd $(GPU_BUNDLE)/lib && ln -sf libepcomm.so.$(EP_VERSION) $(SONAME) && ln -sf $(SONAME) libepcomm.so
	cp -L $$($(CC) -print-file-name=libhwloc.so.15) $(GPU_BUNDLE)/lib/
	du -sh $(GPU_BUNDLE)

clean:
	rm -rf $(BUILDDIR)

-include $(shell find $(BUILDDIR)/obj -name '*.d' 2>/dev/null)
