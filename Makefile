# qemu-qpl: build, install and test.
#   make demo              the main job: a real live migration with qpl, results table
#   make check             every test (what CI runs)
#   make install PREFIX=D  header, shared and static library, pkg-config file

PREFIX ?= /usr/local
CACHE ?= $(or $(QEMU_QPL_CACHE),/var/tmp/qemu-qpl)
export QEMU_QPL_CACHE := $(CACHE)
CARGO ?= cargo
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# What Rust's standard library needs when the static library is linked into C
# (from `rustc --print native-static-libs` for x86_64-unknown-linux-gnu).
LIBS_PRIVATE := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

.PHONY: all build install header deps lint test c-test qemu-test demo-small bench bench-smoke check demo clean

all: build

build:
	$(CARGO) build --release --lib

install: build
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 include/qemu_qpl.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 target/release/libqemu_qpl.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 target/release/libqemu_qpl.a $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|' meson/qemu-qpl.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/qemu-qpl.pc

# Regenerates include/qemu_qpl.h from src/abi.rs.
header:
	QEMU_QPL_BLESS_HEADER=1 $(CARGO) test --test header

deps:
	bash tests/setup-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features bench -- -D warnings

test:
	bash tests/corpus.sh
	QEMU_QPL_CORPUS=$(CACHE)/corpus/corpusA.bin $(CARGO) test --release --workspace

# The benchmark of issue #5: every codec over corpus A, medians of 5 runs.
bench:
	bash tests/corpus.sh >/dev/null
	$(CARGO) run --release --features bench --bin qpl-bench -- $(CACHE)/corpus/corpusA.bin

# The benchmark on a small real file, so that it cannot rot.
bench-smoke:
	head -c 8388608 $(CACHE)/corpus/corpusA.bin > $(CACHE)/bench-smoke.bin
	$(CARGO) run --release --features bench --bin qpl-bench -- --reps 1 $(CACHE)/bench-smoke.bin

c-test:
	bash tests/c/run.sh

qemu-test:
	bash tests/qemu/build-qemu.sh ours
	bash tests/qemu/run-migration-test.sh

check: deps lint test c-test bench-smoke qemu-test
	@echo "make check: all stages passed"

clean:
	$(CARGO) clean
