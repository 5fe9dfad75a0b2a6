#!/usr/bin/env bash
# Builds QEMU 10.2.2 (qemu-system-x86_64 and tests/qtest/migration-test).
#
#   scripts/build-qemu.sh ours       patched with qemu-patches/, against this library
#   scripts/build-qemu.sh intel-qpl  unmodified QEMU --enable-qpl, against Intel QPL 1.9
#
# Everything lives under CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}:
#   dl/                     the pinned inputs, verified (scripts/fetch-inputs.py)
#   qemu-src/VARIANT/qemu-10.2.2/  source tree (Debian firmware patches + our series for ours)
#   qemu-src/VARIANT/build/        build tree: qemu-system-x86_64, tests/qtest/migration-test
#   qemu-build/VARIANT             a link to that build tree: the path everything else uses
#   prefix/, lib-target/    this library (make install) and its cargo build, for ours
#   intel-qpl/              Intel QPL unpacked from the pinned debs, private qpl.pc
#   firmware/               seabios/ipxe links, for hand-started QEMUs (-L DIR)
#   ccache/, logs/
# A second run with unchanged inputs skips unpacking and configure; ninja is
# incremental. Progress goes to stderr; a failing step prints its log's tail.
set -euo pipefail

VARIANT=${1:-}
case "$VARIANT" in
  ours|intel-qpl) ;;
  *) echo "usage: $0 ours|intel-qpl" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
QEMU_VERSION=10.2.2
ORIG=qemu_${QEMU_VERSION}+ds.orig.tar.xz
DEBIAN_TAR=qemu_${QEMU_VERSION}+ds-1.debian.tar.xz
DEBIAN_PATCHES=(skip-unpack-edk2-blobs.patch skip-install-dtb.patch)
SRC_PARENT=$CACHE/qemu-src/$VARIANT
SRC=$SRC_PARENT/qemu-$QEMU_VERSION
BUILD=$CACHE/qemu-build/$VARIANT
# The build tree sits beside its source tree, so that every compiler command
# names the source as ../qemu-10.2.2 in both variants: ccache (whose base
# directory is the cache) then serves the second variant's build the objects
# the two have in common, most of QEMU.
BUILD_TREE=$SRC_PARENT/build
LOGS=$CACHE/logs
VENV=$CACHE/venv
# Bump when the steps below change in a way that needs a fresh configure.
SCRIPT_REV=3

export CCACHE_DIR=$CACHE/ccache
export CCACHE_BASEDIR=$CACHE
export LC_ALL=C

say() { echo "build-qemu[$VARIANT]: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# run LOGNAME CMD...: runs CMD with its output in logs/VARIANT-LOGNAME.log and
# prints the tail of that log when it fails.
run() {
  local log=$LOGS/$VARIANT-$1.log
  shift
  if ! "$@" >"$log" 2>&1; then
    say "FAILED: $* (log: $log), last lines:"
    tail -n 40 "$log" >&2
    exit 1
  fi
}
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$CACHE" "$LOGS" "$CCACHE_DIR" "$CACHE/qemu-build"
t_start=$(date +%s)

# One build per variant at a time: two ninjas in one tree break each other.
exec 9>"$CACHE/qemu-build/.$VARIANT.lock"
if ! flock -n 9; then
  say "another build of $VARIANT is running: waiting for it"
  flock 9
fi

# A build tree of the earlier layout (a directory at qemu-build/VARIANT)
# cannot share ccache's objects: it is replaced by a fresh one beside the source.
if [ -d "$BUILD" ] && [ ! -L "$BUILD" ]; then
  say "moving to the build tree beside the source: removing the old $BUILD"
  rm -rf "$BUILD"
fi
mkdir -p "$SRC_PARENT"
ln -sfn "../qemu-src/$VARIANT/build" "$BUILD"

# --- tools -------------------------------------------------------------------
if ! "$VENV/bin/python3" -c 'import mesonbuild' 2>/dev/null; then
  say "no meson venv in $VENV: running scripts/setup-deps.sh"
  bash "$REPO/scripts/setup-deps.sh"
fi
for tool in ninja pkg-config cc; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup-deps.sh)"
done
dpkg-query -W -f='${Status}' zlib1g-dev 2>/dev/null | grep "install ok installed" >/dev/null \
  || die "zlib1g-dev is not installed (QEMU needs it; the multifd zlib method is built from it)"

# --- inputs: pinned in scripts/inputs.lock, fetched and verified into $CACHE/dl ---
DL=$CACHE/dl
FETCH_SETS=(qemu)
[ "$VARIANT" = intel-qpl ] && FETCH_SETS+=(intel-qpl)
python3 "$REPO/scripts/fetch-inputs.py" --quiet "${FETCH_SETS[@]}" \
  || die "the pinned inputs could not be fetched (the message above says which file and what to do)"

# --- the library the variant links ---------------------------------------------
if [ "$VARIANT" = ours ]; then
  PREFIX=$CACHE/prefix
  say "installing qemu-qpl into $PREFIX"
  # A target directory of its own: make check builds this while its Rust lane
  # holds the checkout's target/ for minutes at a time (cargo test, clippy).
  run lib-install env CARGO_TARGET_DIR="$CACHE/lib-target" make -C "$REPO" install PREFIX="$PREFIX"
  export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
  pkg-config --exists qemu-qpl || die "qemu-qpl.pc not found in $PKG_CONFIG_PATH"
  LIB_ID="qemu-qpl $(pkg-config --modversion qemu-qpl)"
  # Dynamic link: the build tree binary finds libqemu_qpl.so through its
  # rpath, so rebuilding the library does not require relinking QEMU.
  EXTRA_CONFIGURE=(--enable-qpl "--extra-ldflags=-Wl,-rpath,$PREFIX/lib")
  PATCHES=("$REPO"/qemu-patches/*.patch)
  [ -e "${PATCHES[0]}" ] || die "no patches in $REPO/qemu-patches"
else
  QPLROOT=$CACHE/intel-qpl
  QPL_LIBDIR=$QPLROOT/root/usr/lib/x86_64-linux-gnu
  if [ ! -f "$QPL_LIBDIR/libqpl.a" ]; then
    say "unpacking Intel QPL 1.9.0 into $QPLROOT/root (not installed system-wide)"
    rm -rf "$QPLROOT"
    mkdir -p "$QPLROOT/root"
    dpkg-deb -x "$DL/libqpl-dev_1.9.0-1_amd64.deb" "$QPLROOT/root"
    dpkg-deb -x "$DL/libqpl1_1.9.0-1_amd64.deb" "$QPLROOT/root"
  fi
  # libqpl 1.9.0 was built against glibc 2.38, whose C23 strtol variants
  # Debian 12 lacks: the same two-function shim the reference codecs link.
  cp "$REPO/reference-codecs/csrc/glibc_compat.c" "$QPLROOT/isoc23-shim.c"
  cc -O2 -fPIC -c "$QPLROOT/isoc23-shim.c" -o "$QPLROOT/isoc23-shim.o"
  ar rcs "$QPLROOT/libisoc23-shim.a" "$QPLROOT/isoc23-shim.o"
  mkdir -p "$QPLROOT/pkgconfig"
  # libqpl.a by full path: -lqpl would pick the glibc-2.38 shared object.
  cat >"$QPLROOT/pkgconfig/qpl.pc" <<EOF
Name: qpl
Description: Intel QPL 1.9.0 (static, from Debian's libqpl-dev), private to qemu-qpl's tests
Version: 1.9.0
Cflags: -I$QPLROOT/root/usr/include
Libs: $QPL_LIBDIR/libqpl.a $QPLROOT/libisoc23-shim.a -lstdc++ -ldl -lpthread
EOF
  export PKG_CONFIG_PATH=$QPLROOT/pkgconfig
  LIB_ID="intel-qpl 1.9.0 $(sha_of "$QPL_LIBDIR/libqpl.a")"
  EXTRA_CONFIGURE=(--enable-qpl)
  PATCHES=()
fi

# QEMU's configure hands meson an explicit compiler, so meson does not add
# ccache by itself: name Debian's ccache wrapper as the compiler.
CC_ARGS=()
if [ -x /usr/lib/ccache/cc ]; then
  CC_ARGS=(--cc=/usr/lib/ccache/cc)
else
  say "ccache wrapper /usr/lib/ccache/cc not found: building without ccache"
fi

CONFIGURE_ARGS=(
  "${CC_ARGS[@]}"
  --target-list=x86_64-softmmu --without-default-features
  --enable-kvm --enable-tcg --enable-zstd
  --disable-docs --disable-werror --disable-debug-info
  --disable-download --disable-install-blobs
  "--python=$VENV/bin/python3"
  "${EXTRA_CONFIGURE[@]}"
)

# --- stamp: what the source tree and the configuration depend on ---------------
stamp_input() {
  echo "rev $SCRIPT_REV"
  echo "orig $(sha_of "$DL/$ORIG")"
  echo "debian $(sha_of "$DL/$DEBIAN_TAR") ${DEBIAN_PATCHES[*]}"
  local p
  for p in "${PATCHES[@]}"; do echo "patch $(basename "$p") $(sha_of "$p")"; done
  echo "lib $LIB_ID"
  echo "pkg-config-path $PKG_CONFIG_PATH"
  printf 'arg %s\n' "${CONFIGURE_ARGS[@]}"
}
STAMP_WANT=$(stamp_input | sha256sum | cut -d' ' -f1)
STAMP_FILE=$BUILD/.qemu-qpl-stamp

if [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$STAMP_WANT" ] \
   && [ -f "$BUILD/build.ninja" ] && [ -d "$SRC" ]; then
  say "source and configuration unchanged: skipping unpack and configure"
else
  # Unpack and patch into a fresh tree, then sync it over the existing one
  # file by file so unchanged files keep their timestamps (ninja and ccache
  # then rebuild only what the new series touches).
  NEW=$SRC_PARENT/new
  rm -rf "$NEW"
  mkdir -p "$NEW"
  say "unpacking $ORIG"
  tar -xf "$DL/$ORIG" -C "$NEW" --no-same-owner
  tar -xf "$DL/$DEBIAN_TAR" -C "$NEW" --no-same-owner debian/patches
  for p in "${DEBIAN_PATCHES[@]}"; do
    say "applying Debian's $p"
    run "patch-$p" patch -d "$NEW/qemu-$QEMU_VERSION" -p1 --fuzz=0 --no-backup-if-mismatch -i "$NEW/debian/patches/$p"
  done
  for p in "${PATCHES[@]}"; do
    say "applying $(basename "$p")"
    run "patch-$(basename "$p")" patch -d "$NEW/qemu-$QEMU_VERSION" -p1 --fuzz=0 --no-backup-if-mismatch -i "$p"
  done
  if [ -d "$SRC" ]; then
    say "syncing changed files into $SRC"
    python3 - "$NEW/qemu-$QEMU_VERSION" "$SRC" <<'EOF'
import filecmp, os, shutil, sys
new, old = sys.argv[1], sys.argv[2]
changed = 0
for root, dirs, files in os.walk(new):
    rel = os.path.relpath(root, new)
    dst_root = os.path.join(old, rel)
    os.makedirs(dst_root, exist_ok=True)
    for f in files:
        s, d = os.path.join(root, f), os.path.join(dst_root, f)
        if os.path.islink(s) or os.path.islink(d):
            if os.path.lexists(d):
                os.remove(d)
            shutil.copy2(s, d, follow_symlinks=False)
            continue
        if not os.path.exists(d) or not filecmp.cmp(s, d, shallow=False):
            shutil.copy2(s, d)
            os.utime(d)  # newer than anything built from the old copy
            changed += 1
            print(f"  updated {os.path.join(rel, f)}", file=sys.stderr)
for root, dirs, files in os.walk(old, topdown=False):
    rel = os.path.relpath(root, old)
    for f in files:
        if not os.path.lexists(os.path.join(new, rel, f)):
            os.remove(os.path.join(root, f))
            changed += 1
            print(f"  removed {os.path.join(rel, f)}", file=sys.stderr)
    if not os.path.isdir(os.path.join(new, rel)):
        os.rmdir(root)
print(f"{changed} files changed", file=sys.stderr)
EOF
    rm -rf "$NEW"
  else
    mv "$NEW/qemu-$QEMU_VERSION" "$SRC"
    rm -rf "$NEW"
  fi

  mkdir -p "$BUILD_TREE"
  say "configure ${CONFIGURE_ARGS[*]}"
  rm -f "$STAMP_FILE"
  # From the tree itself, not through the link: configure and meson take the
  # build path they are started in, and ../qemu-10.2.2 must hold from there.
  (cd "$BUILD_TREE" && run configure "$SRC/configure" "${CONFIGURE_ARGS[@]}")
  grep -E '(qpl compression|Query Processing Library|zstd) support|dependency (zlib|qpl|qemu-qpl) found' \
    "$LOGS/$VARIANT-configure.log" | sed 's/^/    /' >&2 || true
  echo "$STAMP_WANT" >"$STAMP_FILE"
fi

# --- build ------------------------------------------------------------------------
say "ninja -j2 qemu-system-x86_64 tests/qtest/migration-test (log: $LOGS/$VARIANT-ninja.log)"
t_ninja=$(date +%s)
run ninja ninja -C "$BUILD_TREE" -j2 qemu-system-x86_64 tests/qtest/migration-test
say "ninja done in $(( $(date +%s) - t_ninja ))s"
grep -q '^#define CONFIG_QPL\b' "$BUILD/config-host.h" || die "CONFIG_QPL is not set in $BUILD/config-host.h"

if [ "$VARIANT" = ours ]; then
  # "libqemu_qpl.so.0 => PREFIX/lib/libqemu_qpl.so.0": the SONAME found
  # through the rpath.
  ldd "$BUILD/qemu-system-x86_64" | grep "$PREFIX/lib/libqemu_qpl.so" >/dev/null \
    || die "qemu-system-x86_64 does not resolve libqemu_qpl.so from $PREFIX/lib"
fi

# --- firmware ---------------------------------------------------------------------
BUNDLE=$BUILD/qemu-bundle/usr/local/share/qemu
mkdir -p "$BUNDLE" "$CACHE/firmware"
for fw in /usr/share/seabios/*.bin /usr/lib/ipxe/qemu/*.rom; do
  [ -e "$fw" ] || continue
  ln -sfn "$fw" "$BUNDLE/$(basename "$fw")"
  ln -sfn "$fw" "$CACHE/firmware/$(basename "$fw")"
done
[ -e "$BUNDLE/bios-256k.bin" ] || die "bios-256k.bin missing (apt-get install seabios)"
[ -e "$BUNDLE/efi-e1000e.rom" ] || die "efi-e1000e.rom missing (apt-get install ipxe-qemu)"

say "ok in $(( $(date +%s) - t_start ))s: $BUILD/qemu-system-x86_64 and $BUILD/tests/qtest/migration-test"
