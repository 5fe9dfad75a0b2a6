#!/usr/bin/env bash
# Checks what QEMU's configure does with the qpl option, with and without
# qemu-qpl visible to pkg-config.
#
#   tests/qemu/configure-test.sh [--src DIR] [--prefix DIR] [--jobs N]
#
# DIR defaults to the patched source tree of `scripts/build-qemu.sh ours`
# ($CACHE/qemu-src/ours/qemu-10.2.2) and PREFIX to the library it installed
# ($CACHE/prefix). Each case configures in its own scratch build directory
# under $CACHE/configure-test/ (nothing is compiled), N cases at a time
# (default 2), with QEMU's default features: build-qemu.sh's
# --without-default-features turns meson's auto features off, and with it the
# default case would never look for qemu-qpl. Each case checks:
#
#   option          library visible   expected
#   --disable-qpl   yes / no          success, no CONFIG_QPL, qemu-qpl not looked up
#   --enable-qpl    yes               success, CONFIG_QPL, summary names qemu-qpl
#   --enable-qpl    no / only 0.1.0   configure fails with the message saying what to install
#   (default)       yes               success, CONFIG_QPL
#   (default)       no / only 0.1.0   success, no CONFIG_QPL ("qpl compression support : NO")
#
# "no" points PKG_CONFIG_PATH at an empty directory, "only 0.1.0" at one
# holding a qemu-qpl.pc of version 0.1.0 (older than the series requires);
# the script first makes sure that no qemu-qpl.pc is installed system-wide.
# A passing case keeps only its configure.log, a failing one its build tree.
# Ends with "N passed, N failed" and exits non-zero on any failure.
set -euo pipefail

CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
SRC=$CACHE/qemu-src/ours/qemu-10.2.2
PREFIX=$CACHE/prefix
JOBS=2
WORK=$CACHE/configure-test
ENABLE_MESSAGE='--enable-qpl needs qemu-qpl >= 0.3.0'

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --src) SRC=${2:?}; shift 2 ;;
    --prefix) PREFIX=${2:?}; shift 2 ;;
    --jobs) JOBS=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "configure-test: unknown argument $1" >&2; usage ;;
  esac
done

t0=$(date +%s)
say() { echo "configure-test: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ -x "$SRC/configure" ] || die "$SRC/configure not found: run scripts/build-qemu.sh ours (or pass --src)"
[ -f "$PREFIX/lib/pkgconfig/qemu-qpl.pc" ] \
  || die "$PREFIX/lib/pkgconfig/qemu-qpl.pc not found: run scripts/build-qemu.sh ours (or make install PREFIX=... and pass --prefix)"
[ -x "$CACHE/venv/bin/python3" ] || die "no meson venv in $CACHE/venv: run scripts/setup-deps.sh"
if env -u PKG_CONFIG_PATH pkg-config --exists qemu-qpl; then
  die "a qemu-qpl.pc is installed system-wide ($(env -u PKG_CONFIG_PATH pkg-config --variable=pcfiledir qemu-qpl)): the cases without the library cannot hide it; remove it first"
fi

rm -rf "$WORK"
mkdir -p "$WORK/pc-none" "$WORK/pc-old"
# A library too old for the series: configure must treat it as missing.
cat >"$WORK/pc-old/qemu-qpl.pc" <<'EOF'
Name: qemu-qpl
Description: stand-in for qemu-qpl 0.1.0 (configure-test only)
Version: 0.1.0
Cflags:
Libs: -lqemu_qpl_configure_test_does_not_link_this
EOF

# name option pkg-config-dir expectation
CASES=(
  "disable-with     --disable-qpl $PREFIX/lib/pkgconfig off-not-looked-up"
  "disable-without  --disable-qpl $WORK/pc-none         off-not-looked-up"
  "enable-with      --enable-qpl  $PREFIX/lib/pkgconfig on"
  "enable-without   --enable-qpl  $WORK/pc-none         fails"
  "enable-old       --enable-qpl  $WORK/pc-old          fails"
  "default-with     -             $PREFIX/lib/pkgconfig on"
  "default-without  -             $WORK/pc-none         off"
  "default-old      -             $WORK/pc-old          off"
)

# Runs configure for one case; its output goes to WORK/NAME/configure.log and
# its exit status to WORK/NAME/rc.
run_configure() {
  local name=$1 option=$2 pcdir=$3
  local dir=$WORK/$name
  local opts=()
  [ "$option" = - ] || opts=("$option")
  mkdir -p "$dir/build"
  local rc=0
  (cd "$dir/build" && env PKG_CONFIG_PATH="$pcdir" LC_ALL=C "$SRC/configure" \
     --target-list=x86_64-softmmu \
     --disable-docs --disable-werror --disable-debug-info \
     --disable-download --disable-install-blobs \
     "--python=$CACHE/venv/bin/python3" "${opts[@]}") >"$dir/configure.log" 2>&1 || rc=$?
  echo "$rc" >"$dir/rc"
}

# Checks one case's outcome; prints PASS/FAIL and the reason.
check_case() {
  local name=$1 option=$2 pcdir=$3 expect=$4
  local dir=$WORK/$name
  local rc log=$dir/configure.log header=$dir/build/config-host.h
  local mlog=$dir/build/meson-logs/meson-log.txt
  rc=$(cat "$dir/rc")
  local why=
  case "$expect" in
    fails)
      if [ "$rc" -eq 0 ]; then
        why="configure succeeded"
      elif ! grep -qF -- "$ENABLE_MESSAGE" "$log"; then
        why="configure failed (status $rc) without the message '$ENABLE_MESSAGE'"
      fi ;;
    *)
      if [ "$rc" -ne 0 ]; then
        why="configure failed (status $rc)"
      elif [ ! -f "$header" ]; then
        why="no $header"
      elif [ "$expect" = on ]; then
        grep -q '^#define CONFIG_QPL\b' "$header" || why="CONFIG_QPL is not set"
        [ -n "$why" ] || grep -Eq 'qpl compression support *: *qemu-qpl [0-9]' "$log" \
          || why="the configure summary does not name qemu-qpl"
      else
        if grep -q '^#define CONFIG_QPL\b' "$header"; then
          why="CONFIG_QPL is set"
        elif ! grep -Eq 'qpl compression support *: *NO' "$log"; then
          why="the configure summary does not say 'qpl compression support : NO'"
        elif [ "$expect" = off-not-looked-up ] \
             && grep -Eiq "dependency '?qemu-qpl'?|pkg-config .*qemu-qpl" "$mlog"; then
          why="meson looked qemu-qpl up: $(grep -Eim1 "dependency '?qemu-qpl'?|pkg-config .*qemu-qpl" "$mlog")"
        fi
      fi ;;
  esac
  local label="$option, pkg-config in ${pcdir/#$WORK\//}"
  if [ -z "$why" ]; then
    echo "PASS $name ($label): $expect"
  else
    echo "FAIL $name ($label): expected $expect, but $why (log: $log)"
    return 1
  fi
}

say "source $SRC, library $PREFIX, ${#CASES[@]} cases, $JOBS at a time"
running=0
for c in "${CASES[@]}"; do
  read -r name option pcdir expect <<<"$c"
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_configure "$name" "$option" "$pcdir" &
  running=$((running + 1))
done
wait

passed=0
failed=0
for c in "${CASES[@]}"; do
  read -r name option pcdir expect <<<"$c"
  if check_case "$name" "$option" "$pcdir" "$expect"; then
    passed=$((passed + 1))
    rm -rf "$WORK/$name/build"   # about 60 MB each; configure.log stays
  else
    failed=$((failed + 1))
  fi
done
say "done in $(( $(date +%s) - t0 ))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
