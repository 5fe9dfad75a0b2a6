# qemu-qpl: build, install and test.
#   make demo              the main job: a real live migration with qpl, results table
#   make check             every test (what CI runs)
#   make install PREFIX=D  header, shared and static library, pkg-config file

SHELL := /bin/bash
PREFIX ?= /usr/local
CACHE ?= $(or $(QEMU_QPL_CACHE),/var/tmp/qemu-qpl)
export QEMU_QPL_CACHE := $(CACHE)
CARGO ?= cargo
# Where cargo builds (CARGO_TARGET_DIR, as cargo reads it): `make install` takes
# the library from there.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# The C ABI's major version: the SONAME (build.rs) is libqemu_qpl.so.$(ABI_MAJOR).
ABI_MAJOR := $(firstword $(subst ., ,$(VERSION)))
# What Rust's standard library needs when the static library is linked into C
# (from `rustc --print native-static-libs` for x86_64-unknown-linux-gnu).
LIBS_PRIVATE := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

.PHONY: all build install header deps corpus lint test asan miri fuzz fuzz-seeds iaa-model-env \
	iaa-model-check iaa-check hostile-test check-rust check-qemu lane-rust lane-qemu c-test qemu-build qemu-test \
	interop-test demo demo-small bench bench-smoke check fetch-test clean

PYTHON ?= python3
DEMO := $(PYTHON) tests/migration/qpl-demo.py
# `make demo DEMO_ARGS="--size 4G --repeat 3"` passes options to the demo.
DEMO_ARGS ?=
QPL_CASE := /x86_64/migration/multifd/tcp/plain/qpl
QPL_LIVE := /x86_64/migration/multifd/tcp/plain/qpl/live
QPL_STRONG_LIVE := /x86_64/migration/multifd/tcp/plain/qpl-strong/live
OURS_BIN := $(CACHE)/qemu-build/ours/qemu-system-x86_64
INTEL_BIN := $(CACHE)/qemu-build/intel-qpl/qemu-system-x86_64

all: build

build:
	$(CARGO) build --release --lib

install: build
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 include/qemu_qpl.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(TARGET_DIR)/release/libqemu_qpl.so $(DESTDIR)$(PREFIX)/lib/libqemu_qpl.so.$(VERSION)
	ln -sfn libqemu_qpl.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libqemu_qpl.so.$(ABI_MAJOR)
	ln -sfn libqemu_qpl.so.$(ABI_MAJOR) $(DESTDIR)$(PREFIX)/lib/libqemu_qpl.so
	install -m 644 $(TARGET_DIR)/release/libqemu_qpl.a $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|' meson/qemu-qpl.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/qemu-qpl.pc

# Regenerates include/qemu_qpl.h from src/abi.rs.
header:
	QEMU_QPL_BLESS_HEADER=1 $(CARGO) test --test header

# Debian packages and toolchains (scripts/setup-deps.sh), then every pinned input
# of scripts/inputs.lock fetched from Debian's registry and verified (docs/inputs.md).
deps:
	bash scripts/setup-deps.sh
	$(PYTHON) scripts/fetch-inputs.py --quiet all

corpus:
	$(PYTHON) scripts/corpus.py >/dev/null

# The pinned inputs against the registry, from a scratch cache with no offline
# mirror: every pin in the index, real downloads, the failure messages.
fetch-test:
	bash tests/inputs/fetch-test.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features bench -- -D warnings

test:
	$(PYTHON) scripts/corpus.py
	QEMU_QPL_CORPUS=$(CACHE)/corpus/corpusA.bin $(CARGO) test --release --workspace

# Issue #12: the running-guest stress test (pages rewritten by other threads
# while packets are prepared) and the ABI tests, under AddressSanitizer.
ASAN_TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
asan:
	QEMU_QPL_CORPUS=$(CACHE)/corpus/corpusA.bin QEMU_QPL_STRESS_SECONDS=1 \
	    RUSTFLAGS=-Zsanitizer=address $(CARGO) +nightly test --release \
	    --target $(ASAN_TARGET) --target-dir target/asan --test running_guest --test abi --test malformed --test properties

# Issue #15: Miri on the codec's and the ABI's unsafe code, with tests sized
# for it (src/miri_checks.rs), under Stacked and then Tree Borrows.
MIRI_TESTS := miri_checks wire:: channel:: over_subscribed
miri:
	$(CARGO) +nightly miri test --lib -- $(MIRI_TESTS)
	MIRIFLAGS=-Zmiri-tree-borrows $(CARGO) +nightly miri test --lib -- $(MIRI_TESTS)

# Issue #15: every fuzz target for FUZZ_SECONDS under libFuzzer and ASan
# (fails on any crash, leak, out-of-bounds access or timeout), after a replay
# of the committed seeds and of every input that ever crashed
# (fuzz/regressions/TARGET/; libFuzzer leaves a new one in fuzz/artifacts/).
FUZZ_SECONDS ?= 45
FUZZ_TARGETS := decode_page receive_abi send_roundtrip
fuzz:
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --release --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
	$(CARGO) test --release --manifest-path fuzz/Cargo.toml
	bash fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Rewrites the fuzz targets' seeds from corpus A and every reference encoder.
fuzz-seeds: corpus
	rm -rf fuzz/seeds
	$(CARGO) run --release --features bench --bin fuzz-seeds -- $(CACHE)/corpus/corpusA.bin fuzz/seeds

# The benchmark of issue #5: every codec over corpus A, medians of 5 runs.
bench:
	$(PYTHON) scripts/corpus.py >/dev/null
	$(CARGO) run --release --features bench --bin qpl-bench -- $(CACHE)/corpus/corpusA.bin

# The benchmarks on a small real file, so that they cannot rot.
bench-smoke:
	head -c 8388608 $(CACHE)/corpus/corpusA.bin > $(CACHE)/bench-smoke.bin
	$(CARGO) run --release --features bench --bin qpl-bench -- --reps 1 $(CACHE)/bench-smoke.bin
	bash tools/pair-bench/pair-bench.sh HEAD HEAD $(CACHE)/bench-smoke.bin 6

c-test:
	bash tests/c/run.sh

# Both QEMU 10.2.2 builds: patched on this library, and upstream on Intel QPL.
qemu-build:
	bash scripts/build-qemu.sh ours
	bash scripts/build-qemu.sh intel-qpl

# Issue #3: QEMU's own migration-test, qpl, zstd and none cases, on our build;
# issue #12: the series' live qpl cases (the guest keeps dirtying memory), the
# series itself through QEMU's checkpatch, and what configure does with
# --disable-qpl / --enable-qpl / default, with and without the library.
qemu-test: qemu-build
	bash tests/qemu/checkpatch.sh
	bash tests/qemu/run-migration-test.sh
	bash tests/qemu/run-migration-test.sh ours $(QPL_LIVE) $(QPL_STRONG_LIVE)
	bash tests/qemu/configure-test.sh

# Issue #6: wire compatibility with upstream QEMU on Intel QPL, both ways.
# QEMU's migration-test qpl case (the source guest stopped) and its live
# copy from the series (the guest keeps dirtying memory) across the pair, with
# our build's migration-test in both directions (upstream's has no live
# case), then migrations of a running guest that keeps rewriting its RAM of
# real data, at 2 and 4 channels, both sides' RAM hashed after the source
# stopped.
interop-test: qemu-build corpus
	bash tests/qemu/run-migration-test.sh ours --src $(OURS_BIN) --dst $(INTEL_BIN) $(QPL_CASE) $(QPL_LIVE)
	bash tests/qemu/run-migration-test.sh ours --src $(INTEL_BIN) --dst $(OURS_BIN) $(QPL_CASE) $(QPL_LIVE)
	$(DEMO) --size 256M --methods interop --channels 2,4

# Issue #15: a relay corrupts one qpl packet in flight per case between real
# QEMUs; the destination must fail cleanly naming channel, RAMBlock and
# offset, the source keep running, a clean retry complete with RAM equal
# (docs/hostile-input.md). Once with destinations that stay up, once with
# QEMU's default exit on error.
hostile-test: qemu-build corpus
	$(PYTHON) tests/migration/hostile-test.py
	$(PYTHON) tests/migration/hostile-test.py --exit-on-error --cases faults

# Issue #12: migrations of a running 256 MiB guest that keeps rewriting its
# RAM of real data (tests/guest/dirtier.S), none, zstd and qpl (at the
# default level, auto, and at fast and turbo: multifd-qpl-level), 2 and 4
# channels; fails on any RAM mismatch or when the guest did not write during
# the migration (docs/demo.md).
demo-small: qemu-build corpus
	$(DEMO) --size 256M --methods none,zstd,qpl,qpl-fast,qpl-turbo --channels 2,4

# Issue #13: the software IAA device model (tests/iaa-model, docs/iaa-model.md).
# `env $$(make -s iaa-model-env) PROGRAM` runs an unmodified PROGRAM on it.
iaa-model-env:
	@bash tests/iaa-model/env.sh

# Intel QPL 1.9's hardware path on the model over corpus A, then upstream
# QEMU (intel-qpl build) on it: migration-test's qpl case and live migrations.
iaa-model-check: qemu-build corpus
	bash tests/iaa-model/check.sh all

# Issue #14: our IAA path on the model: the running-guest and allocation
# tests on the IAA path (fixed and dynamic Huffman), migration-test's qpl
# case, live migrations ours(IAA)<->ours(IAA), <->upstream (Intel QPL on the
# model) and <->ours(CPU) at 2 and 4 channels with RAM hashed, and fault
# injection (full queue, error completions, page faults, a stalled device).
iaa-check: qemu-build corpus
	bash tests/iaa/check.sh all

# The main job: 2 GiB running guest; none, zlib, zstd, our qpl (the default
# level, auto; fast; turbo) and upstream's qpl on Intel QPL; uncapped, then
# at 125 MB/s.
# Progress on stderr, the table on stdout; the results as JSON in the cache and
# in docs/demo-results.json, drawn as docs/demo.svg (README embeds it);
# `tests/migration/qpl-demo.py --render docs/demo-results.json --chart docs/demo.svg`
# redraws the chart from the saved results.
DEMO_RESULTS ?= $(CACHE)/demo/results.json
DEMO_CHART ?= docs/demo.svg
demo: deps build corpus
	bash scripts/build-qemu.sh ours
	bash scripts/build-qemu.sh intel-qpl || echo "make demo: the Intel QPL build failed; qpl-intel will be skipped" >&2
	$(DEMO) --max-bandwidth unlimited,125000000 --save $(DEMO_RESULTS) --save docs/demo-results.json \
	    --chart $(DEMO_CHART) $(DEMO_ARGS)

# Every test. Two lanes run side by side on the machine's two cores: the
# Rust lane (compiling, fuzzing, Miri) and the QEMU lane (two QEMU builds,
# then migrations, which mostly wait on their guests and sockets). Each lane
# runs its stages in order; `make check-rust` or `make check-qemu` runs one.
# Lines are prefixed by lane and the minutes:seconds since it started,
# [rust 12:34] or [qemu 12:34] (the budget: 45 minutes cold on 2 cores).
check: deps corpus
	$(MAKE) --no-print-directory -j2 lane-rust lane-qemu
	@echo "make check: all stages passed"

check-rust: fetch-test lint test asan miri fuzz c-test bench-smoke
	@echo "make check: the Rust lane passed"

check-qemu: qemu-test interop-test hostile-test iaa-model-check iaa-check demo-small
	@echo "make check: the QEMU lane passed"

lane-rust lane-qemu:
	set -o pipefail; $(MAKE) --no-print-directory -j1 check-$(@:lane-%=%) 2>&1 \
	    | while IFS= read -r line || [ -n "$$line" ]; do \
	        printf '[%s %d:%02d] %s\n' $(@:lane-%=%) $$((SECONDS / 60)) $$((SECONDS % 60)) "$$line"; done


clean:
	$(CARGO) clean
