#!/usr/bin/env bash
# Builds corpus A (256 MiB of real files from pinned Debian packages) once into
# the cache, with the script and checksums from ../shared; prints its path.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
OUT=$CACHE/corpus/corpusA.bin
EXPECTED=725fc4b3f18cbba76dbbf2ca3a4c895091a934b7ed7de6ad5589762a3ea4b905
if [ -f "$OUT" ] && [ -f "$OUT.ok" ]; then
  echo "$OUT"; exit 0
fi
mkdir -p "$CACHE/corpus"
DEBCACHE=$CACHE/corpus/debcache bash "$HERE/../shared/corpus/make-corpus-a.sh" "$OUT.tmp" >&2
echo "$EXPECTED  $OUT.tmp" | sha256sum -c --quiet - >&2
mv "$OUT.tmp" "$OUT"
touch "$OUT.ok"
echo "$OUT"
