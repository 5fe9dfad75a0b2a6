#!/usr/bin/env bash
# Runs QEMU's own migration-test cases for the multifd compression methods
# against a build from scripts/build-qemu.sh.
#
#   tests/qemu/run-migration-test.sh [VARIANT] [PATH...]
#   tests/qemu/run-migration-test.sh [--variant VARIANT] --src BIN --dst BIN [PATH...]
#
# VARIANT is ours (default) or intel-qpl: the build whose migration-test runs,
# and whose qemu-system-x86_64 is used unless overridden. --src/--dst (or the
# QTEST_QEMU_BINARY_SRC / QTEST_QEMU_BINARY_DST environment variables) run
# the source and destination QEMU from different builds, e.g. ours -> intel-qpl.
# PATH defaults to the qpl, zstd and uncompressed multifd cases.
#
# Each PATH runs alone: GLib's -p also runs the cases below PATH (e.g.
# .../plain/qpl/live below .../plain/qpl), so those are skipped with -s and
# run only when named themselves.
# A case passes only if migration-test exits 0 AND its TAP output has the line
# "ok N PATH" (a path that matches nothing prints "1..0" and exits 0; a
# skipped case prints "ok N PATH # SKIP"). The last line is "N passed, N failed".
set -euo pipefail

CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
LOGS=$CACHE/logs
TIMEOUT=${QEMU_QPL_TEST_TIMEOUT:-600}
DEFAULT_PATHS=(
  /x86_64/migration/multifd/tcp/plain/qpl
  /x86_64/migration/multifd/tcp/plain/zstd
  /x86_64/migration/multifd/tcp/uri/plain/none
)

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

VARIANT=
SRC_BIN=${QTEST_QEMU_BINARY_SRC:-}
DST_BIN=${QTEST_QEMU_BINARY_DST:-}
PATHS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) VARIANT=${2:?}; shift 2 ;;
    --src) SRC_BIN=${2:?}; shift 2 ;;
    --dst) DST_BIN=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    ours|intel-qpl)
      [ -z "$VARIANT" ] || usage
      VARIANT=$1; shift ;;
    /*) PATHS+=("$1"); shift ;;
    *) echo "run-migration-test: unknown argument $1" >&2; usage ;;
  esac
done
VARIANT=${VARIANT:-ours}
[ ${#PATHS[@]} -gt 0 ] || PATHS=("${DEFAULT_PATHS[@]}")

BUILD=$CACHE/qemu-build/$VARIANT
TEST=$BUILD/tests/qtest/migration-test
for f in "$BUILD/qemu-system-x86_64" "$TEST"; do
  [ -x "$f" ] || { echo "run-migration-test: $f missing: run scripts/build-qemu.sh $VARIANT" >&2; exit 1; }
done

abspath() {
  [ -x "$1" ] || { echo "run-migration-test: $1 is not an executable" >&2; exit 1; }
  echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

# migration-test takes the source binary from QTEST_QEMU_BINARY or
# QTEST_QEMU_BINARY_SRC and the destination from QTEST_QEMU_BINARY or
# QTEST_QEMU_BINARY_DST, and refuses both _SRC and _DST at once: express a
# pair as QTEST_QEMU_BINARY=SRC plus QTEST_QEMU_BINARY_DST=DST.
unset QTEST_QEMU_BINARY_SRC QTEST_QEMU_BINARY_DST
DEFAULT_BIN=./qemu-system-x86_64
[ -z "$SRC_BIN" ] || SRC_BIN=$(abspath "$SRC_BIN")
[ -z "$DST_BIN" ] || DST_BIN=$(abspath "$DST_BIN")
QEMU_ENV=("QTEST_QEMU_BINARY=${SRC_BIN:-$DEFAULT_BIN}")
if [ -n "$DST_BIN" ]; then
  QEMU_ENV+=("QTEST_QEMU_BINARY_DST=$DST_BIN")
fi
echo "run-migration-test: migration-test of $VARIANT; source ${SRC_BIN:-$BUILD/qemu-system-x86_64}, destination ${DST_BIN:-${SRC_BIN:-$BUILD/qemu-system-x86_64}}" >&2

# Cross runs get their own logs, named after the builds: -from-ours-to-intel-qpl.
PAIR_TAG=
if [ -n "$SRC_BIN$DST_BIN" ]; then
  PAIR_TAG=-from-$(basename "$(dirname "${SRC_BIN:-$BUILD/x}")")-to-$(basename "$(dirname "${DST_BIN:-${SRC_BIN:-$BUILD/x}}")")
fi
mkdir -p "$LOGS"
passed=0
failed=0
for path in "${PATHS[@]}"; do
  log=$LOGS/migration-test-$VARIANT$PAIR_TAG$(echo "$path" | tr '/' '-').log
  echo "run-migration-test: $path ..." >&2
  t0=$(date +%s)
  skips=()
  while read -r below; do
    skips+=(-s "$below")
  done < <(cd "$BUILD" && env "${QEMU_ENV[@]}" ./tests/qtest/migration-test --full -l -p "$path" 2>/dev/null \
             | grep -F -- "$path/" || true)
  rc=0
  (cd "$BUILD" && env "${QEMU_ENV[@]}" timeout "$TIMEOUT" \
     ./tests/qtest/migration-test --tap --full -p "$path" "${skips[@]}") >"$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - t0 ))
  # The case must have run and passed: "ok N PATH", nothing after the path
  # (a skipped case reads "ok N PATH # SKIP ...").
  if [ "$rc" -eq 0 ] && grep -Eq "^ok [0-9]+ $(printf '%s' "$path" | sed 's/[][\.*^$]/\\&/g')[[:space:]]*$" "$log"; then
    passed=$((passed + 1))
    echo "PASS $path (${secs}s)"
  else
    failed=$((failed + 1))
    if [ "$rc" -ne 0 ]; then why="exit status $rc"; else why="no 'ok N $path' line"; fi
    echo "FAIL $path (${secs}s, $why; log: $log)"
    tail -n 25 "$log" | sed 's/^/    /' >&2
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
