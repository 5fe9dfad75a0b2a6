#!/usr/bin/env bash
# Paired, in-process speed comparison of the page codec at two commits.
#
#   tools/pair-bench/pair-bench.sh COMMIT_A COMMIT_B [FILE] [ROUNDS] [fast|strong|turbo]
#
# Both commits' codecs are compiled into one binary, which times them on the
# same blocks of pages in alternating order and reports the median, over
# rounds, of B's speed relative to A's. This machine's speed drifts by 10-30 %
# within minutes, and separate runs of two binaries (even interleaved,
# best-of) misjudged 5-10 % changes here; pairs taken milliseconds apart do
# not. See docs/codec.md.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '4p' "$0" >&2; exit 2; }
A=$1; B=$2
FILE=${3:-${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}/corpus/corpusA.bin}
ROUNDS=${4:-32}
LEVEL=${5:-fast}
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WORK=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}/pair-bench
rm -rf "$WORK/a" "$WORK/b" "$WORK/runner/src"
mkdir -p "$WORK/runner/src"

# One crate per commit: the library's modules without the C ABI (its
# exported symbols would clash) and without the benchmark-only features.
for side in a b; do
  commit=$A; [ $side = b ] && commit=$B
  mkdir -p "$WORK/$side"
  git -C "$REPO" archive "$commit" src | tar -x -C "$WORK/$side"
  rm -rf "$WORK/$side/src/bin" "$WORK/$side/src/abi.rs"
  sed -i '/^pub mod abi;/d' "$WORK/$side/src/lib.rs"
  # The library's own dependencies (libc, for the IAA path since 0.3.0).
  cat > "$WORK/$side/Cargo.toml" <<TOML
[package]
name = "codec-$side"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
libc = "0.2"
TOML
done

cp "$REPO/tools/pair-bench/main.rs" "$WORK/runner/src/main.rs"
cat > "$WORK/runner/Cargo.toml" <<TOML
[package]
name = "pair-bench"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
a = { package = "codec-a", path = "../a" }
b = { package = "codec-b", path = "../b" }

[profile.release]
codegen-units = 1
lto = "thin"

[workspace]
TOML
cargo build --quiet --release --manifest-path "$WORK/runner/Cargo.toml"
echo "pair-bench: A = $A ($(git -C "$REPO" rev-parse --short "$A")), B = $B ($(git -C "$REPO" rev-parse --short "$B")), $LEVEL, $FILE, $ROUNDS rounds"
"$WORK/runner/target/release/pair-bench" "$FILE" "$ROUNDS" "$LEVEL"
