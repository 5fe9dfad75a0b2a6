#!/usr/bin/env bash
# Installs the library into a scratch prefix, compiles tests/c/abi_test.c
# against the installed header through pkg-config, once against the shared
# and once against the static library, plus a build under ASan and UBSan,
# and runs all three.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
PREFIX=$CACHE/c-test-prefix
OUT=$CACHE/c-test
rm -rf "$PREFIX" "$OUT"
mkdir -p "$OUT"
make -s -C "$ROOT" install PREFIX="$PREFIX"
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
CFLAGS=(-std=c11 -Wall -Wextra -Werror -O2 -pthread)
cc "${CFLAGS[@]}" "$ROOT/tests/c/abi_test.c" -o "$OUT/abi_test_shared" \
  $(pkg-config --cflags --libs qemu-qpl) -Wl,-rpath,"$PREFIX/lib"
cc "${CFLAGS[@]}" "$ROOT/tests/c/abi_test.c" -o "$OUT/abi_test_static" \
  $(pkg-config --cflags qemu-qpl) "$PREFIX/lib/libqemu_qpl.a" \
  $(pkg-config --static --libs-only-l qemu-qpl | sed 's/-lqemu_qpl//')
# Once more under AddressSanitizer and UndefinedBehaviorSanitizer, on the
# shared library: any out-of-bounds access or UB on the C side of the calls
# (an iovec past its buffer, a bad message length) aborts the run.
cc "${CFLAGS[@]}" -g -fsanitize=address,undefined -fno-sanitize-recover=all \
  -fno-omit-frame-pointer "$ROOT/tests/c/abi_test.c" -o "$OUT/abi_test_asan_ubsan" \
  $(pkg-config --cflags --libs qemu-qpl) -Wl,-rpath,"$PREFIX/lib"
# The header must also compile as C++ (QEMU is C, but other users may not be).
printf '#include <qemu_qpl.h>\nint main(void){return qemu_qpl_version()==nullptr;}\n' \
  | g++ -x c++ -std=c++17 -Wall -Werror $(pkg-config --cflags qemu-qpl) - -o "$OUT/cxx_header" \
      $(pkg-config --libs qemu-qpl) -Wl,-rpath,"$PREFIX/lib"
"$OUT/cxx_header"
status=0
for binary in abi_test_shared abi_test_static abi_test_asan_ubsan; do
  echo "# $binary"
  "$OUT/$binary" || status=1
done
exit $status
