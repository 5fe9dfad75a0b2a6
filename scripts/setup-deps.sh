#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian 12 machine.
# Idempotent and quick when everything is already there.
set -euo pipefail

APT_PACKAGES=(
  build-essential pkg-config git xz-utils dpkg-dev python3 python3-venv
  # QEMU's build (docs/qemu.md)
  libglib2.0-dev libzstd-dev zlib1g-dev ninja-build ccache seabios ipxe-qemu
  # reference codecs of the benchmark and the compatibility tests
  libisal-dev libdeflate-dev liblz4-dev
  # bindgen, for the IAA model's check that its committed UAPI bindings are current
  libclang-dev
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# rustfmt and clippy come with the toolchain on these machines; add them if not.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

# The sanitizer runs (make asan) build with the nightly toolchain.
# Miri (make miri) needs the miri and rust-src components and its sysroot.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup component add --toolchain nightly miri rust-src
fi
cargo +nightly miri setup >/dev/null 2>&1 || cargo +nightly miri setup

# cargo-fuzz (make fuzz), from Rust's package registry, once.
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

# QEMU 10.2 wants meson >= 1.5; Debian 12 has 1.0. A private venv holds it.
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
VENV=$CACHE/venv
if ! "$VENV/bin/python3" -c 'import mesonbuild, pycotap' 2>/dev/null; then
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q meson==1.9.0 pycotap
fi
echo "setup-deps: ok" >&2
