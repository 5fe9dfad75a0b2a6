#!/usr/bin/env bash
# Checks the QEMU patch series the way QEMU's maintainers would.
#
#   tests/qemu/checkpatch.sh [PATCH...]     (default: qemu-patches/*.patch)
#
# For every patch:
#   - QEMU 10.2.2's scripts/checkpatch.pl must report 0 errors and 0 warnings;
#   - it must come from `git format-patch` (its first line is "From <sha> ...");
#   - its author must be a name and an address (From: NAME <user@host>) and a
#     Signed-off-by line must name that same author.
# checkpatch.pl is taken from the build tree source of scripts/build-qemu.sh
# ($CACHE/qemu-src/ours/qemu-10.2.2) or, before any build, extracted from the
# pinned QEMU tarball (scripts/fetch-inputs.py) into $CACHE/checkpatch/.
# Prints one line per patch and exits non-zero if any patch fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
ORIG=qemu_10.2.2+ds.orig.tar.xz

say() { echo "checkpatch: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v perl >/dev/null || die "perl not found (apt-get install perl)"

find_checkpatch() {
  local tree=$CACHE/qemu-src/ours/qemu-10.2.2/scripts/checkpatch.pl
  local own=$CACHE/checkpatch/qemu-10.2.2/scripts/checkpatch.pl
  if [ -f "$tree" ]; then echo "$tree"; return; fi
  if [ ! -f "$own" ]; then
    local tarball=$CACHE/dl/$ORIG
    python3 "$REPO/scripts/fetch-inputs.py" --quiet "$ORIG" >&2 \
      || die "the QEMU source could not be fetched (the message above says what to do)"
    say "extracting scripts/checkpatch.pl from $tarball"
    mkdir -p "$CACHE/checkpatch"
    tar -xJf "$tarball" -C "$CACHE/checkpatch" --no-same-owner qemu-10.2.2/scripts/checkpatch.pl
  fi
  echo "$own"
}

PATCHES=("$@")
if [ ${#PATCHES[@]} -eq 0 ]; then
  PATCHES=("$REPO"/qemu-patches/*.patch)
  [ -e "${PATCHES[0]}" ] || die "no patches in $REPO/qemu-patches"
fi
CHECKPATCH=$(find_checkpatch)
say "using $CHECKPATCH"

failed=0
for p in "${PATCHES[@]}"; do
  name=$(basename "$p")
  problems=()
  first=$(head -n1 "$p")
  if ! printf '%s\n' "$first" | grep -Eq '^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001$'; then
    problems+=("not made by git format-patch (first line: $first)")
  elif printf '%s\n' "$first" | grep '^From 0\{40\} ' >/dev/null; then
    problems+=("no commit id in the first line: made by hand or with --zero-commit")
  fi
  author=$(sed -n 's/^From: //p' "$p" | head -n1)
  if ! printf '%s\n' "$author" | grep -Eq '^[^<>@]*[^<>@ ] <[^<>@ ]+@[^<>@ ]+\.[^<>@ ]+>$'; then
    problems+=("author '$author' is not 'Name <user@host.domain>'")
  elif ! grep -Fqx "Signed-off-by: $author" "$p"; then
    problems+=("no 'Signed-off-by: $author' line")
  fi
  out=$(perl "$CHECKPATCH" --no-tree --color=never "$p" 2>&1) || true
  total=$(printf '%s\n' "$out" | grep -E '^total: ' | tail -n1)
  if [ "$total" = "" ]; then
    problems+=("checkpatch.pl printed no total line")
  elif ! printf '%s\n' "$total" | grep -Eq '^total: 0 errors, 0 warnings,'; then
    problems+=("checkpatch.pl: ${total#total: }")
  fi
  if [ ${#problems[@]} -eq 0 ]; then
    echo "ok   $name (${total#total: })"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    printf '     %s\n' "${problems[@]}"
    printf '%s\n' "$out" | grep -E '^(ERROR|WARNING):' -A3 | sed 's/^/     | /' || true
  fi
done
echo "$(( ${#PATCHES[@]} - failed )) patches clean, $failed with problems"
[ "$failed" -eq 0 ]
