#!/usr/bin/env bash
# The IAA model's make-check stages (issue #13).
#
#   tests/iaa-model/check.sh validate   Intel QPL 1.9's hardware path on the model over corpus A
#   tests/iaa-model/check.sh qemu       upstream QEMU (intel-qpl build) on the model: migration-test's
#                                       qpl case and live migrations at 2 and 4 channels, RAM verified
#   tests/iaa-model/check.sh all        both
#
# Each stage checks the model's statistics: the work must have been done by
# IAA descriptors, not by Intel QPL's software path.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/tests/iaa-model
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
CORPUS=$CACHE/corpus/corpusA.bin
PAGES=$(( 256 * 1024 * 1024 / 4096 ))
stage=${1:-all}

target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/iaa-model-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The model's KEY=VALUE lines, in the array named by $1 (a failed build
# stops the script here rather than running clients without the model).
model_env() {
  local lines
  lines=$(bash "$here/env.sh")
  mapfile -t "$1" <<<"$lines"
}

step() {
  echo "iaa-model check: $*" >&2
}

validate() {
  [ -f "$CORPUS" ] || { echo "iaa-model check: $CORPUS missing: run scripts/corpus.py" >&2; exit 1; }
  cargo build --release --quiet -p iaa-validate --manifest-path "$root/Cargo.toml"
  local validate=$target/release/iaa-validate
  local -a env
  model_env env

  step "QEMU's job configuration (fixed Huffman, with and without verification) over all of corpus A, and every other encoder's pages"
  mkdir -p "$work/validate"
  env "${env[@]}" IAA_MODEL_STATS="$work/validate" "$validate" --modes qemu,qemu-verify "$CORPUS"
  # Two passes of compression, each followed by a round trip through DECOMPRESS,
  # then five encoders' pages: all of it on the device.
  python3 "$here/stats.py" "$work/validate" --shapes --min-compress $(( 2 * PAGES * 9 / 10 )) \
    --min-decompress $(( 7 * PAGES * 9 / 10 )) --max-faults 0 --max-errors 0

  step "dynamic Huffman (statistics pass, then codes in the AECS), with and without verification, first quarter of corpus A"
  mkdir -p "$work/dynamic"
  env "${env[@]}" IAA_MODEL_STATS="$work/dynamic" "$validate" --modes dynamic,dynamic-verify --pages $(( PAGES / 4 )) --no-decompress "$CORPUS"
  python3 "$here/stats.py" "$work/dynamic" --shapes --min-compress $(( PAGES / 4 )) --max-faults 0 --max-errors 0

  step "Intel QPL's write() fallback: the portal cannot be mapped, QPL probes the WQ with a NOOP and writes its descriptors"
  mkdir -p "$work/write"
  env "${env[@]}" IAA_MODEL_PORTAL=write IAA_MODEL_STATS="$work/write" "$validate" --pages 1024 --no-decompress "$CORPUS"
  python3 "$here/stats.py" "$work/write" --min-compress 1024 --min-decompress 1000 --max-faults 0 --max-errors 0

  step "a broken model (one flipped bit in every COMPRESS output) must fail the validation"
  if env "${env[@]}" IAA_MODEL_CORRUPT=1 "$validate" --pages 256 --no-decompress "$CORPUS" >"$work/corrupt.log" 2>&1; then
    cat "$work/corrupt.log" >&2
    echo "iaa-model check: the validation passed on a broken model" >&2
    exit 1
  fi
  grep -E 'independent inflate|FAILED' "$work/corrupt.log" >&2
  step "the broken model was caught"

  step "page faults: one Intel QPL job reused for three decompressions into untouched pages"
  env "${env[@]}" IAA_MODEL_WQS=shared:128 "$validate" fault-probe
  env "${env[@]}" "$validate" fault-probe
}

qemu() {
  local build=$CACHE/qemu-build/intel-qpl
  [ -x "$build/qemu-system-x86_64" ] || { echo "iaa-model check: $build missing: run scripts/build-qemu.sh intel-qpl" >&2; exit 1; }
  local -a env
  model_env env

  step "upstream QEMU's migration-test multifd/tcp/plain/qpl (intel-qpl build) on the model"
  mkdir -p "$work/migration-test"
  env "${env[@]}" IAA_MODEL_STATS="$work/migration-test" \
    bash "$root/tests/qemu/run-migration-test.sh" intel-qpl /x86_64/migration/multifd/tcp/plain/qpl
  python3 "$here/stats.py" "$work/migration-test" --shapes --min-compress 1000 --min-decompress 1000 \
    --max-faults 0 --max-errors 0

  step "live migrations of a 256 MiB guest full of real data, 2 and 4 channels, RAM hashed on both sides; destination not preallocated"
  mkdir -p "$work/demo"
  local start=$SECONDS
  env "${env[@]}" IAA_MODEL_STATS="$work/demo" \
    python3 "$root/tests/migration/qpl-demo.py" --size 256M --methods qpl-intel --channels 2,4
  # 90 % of 65,536 pages hold data; most of them must have gone through the device
  # on both sides (pages refused by a full queue fall back to Intel QPL's software path).
  python3 "$here/stats.py" "$work/demo" --shapes --min-compress $(( PAGES / 2 )) --min-decompress $(( PAGES / 2 )) \
    --max-faults 0 --max-errors 0
  step "live migrations on the model: $(( SECONDS - start )) s; faults_resolved above counts destination (and buffer) pages the device found absent"
}

case "$stage" in
  validate) validate ;;
  qemu) qemu ;;
  all) validate; qemu ;;
  *) echo "usage: $0 validate|qemu|all" >&2; exit 2 ;;
esac
echo "iaa-model check: $stage passed"
