#!/usr/bin/env bash
# The pinned inputs (scripts/inputs.lock) can be fetched from nothing: a scratch cache, a fresh
# private apt state, no offline mirror (../shared hidden), and the system's apt setup untouched.
#
#   tests/inputs/fetch-test.sh
#
#  1. the registry's index lists every pinned file with its pinned size and SHA-256
#     (apt-get --print-uris on fresh index lists; nothing downloaded);
#  2. the smallest pinned package of each suite really downloads with apt-get and verifies
#     (checked again here with sha256sum against the lock);
#  3. the offline mirror is used first when its copy is good, and skipped when it is not;
#  4. a pin the registry does not match fails, naming the file, its SHA-256 and where to put
#     it by hand, and leaves no file behind; a version the index lacks fails --check-index.
# Network-bound: about 15 s here. Scratch under $QEMU_QPL_CACHE/fetch-test (kept on failure).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
LOCK=$REPO/scripts/inputs.lock
SCRATCH=$CACHE/fetch-test
T0=$SECONDS

say() { echo "fetch-test: $*" >&2; }
fail() {
  say "FAILED: $*"
  say "scratch kept in $SCRATCH"
  exit 1
}
# expect_in LOG TEXT...: each TEXT is a line fragment LOG must contain.
expect_in() {
  local log=$1 text
  shift
  for text in "$@"; do
    grep -qF -- "$text" "$log" || { sed 's/^/    | /' "$log" >&2; fail "expected \"$text\" in $log"; }
  done
}
etc_apt_sum() { find /etc/apt -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum; }

rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
# ../shared (or QEMU_QPL_SHARED) hidden: only the registry can supply anything.
export QEMU_QPL_SHARED=$SCRATCH/no-mirror
fetch() { python3 "$REPO/scripts/fetch-inputs.py" --cache "$SCRATCH/cache" "$@"; }
etc_before=$(etc_apt_sum)

# --- 1. the index ---------------------------------------------------------------------
pins=$(grep -cv -e '^#' -e '^[[:space:]]*$' "$LOCK")
say "$(( SECONDS - T0 )) s: 1. the registry's index against all $pins pins (fresh private apt state)"
fetch --check-index all 2>"$SCRATCH/index.log" || { cat "$SCRATCH/index.log" >&2; fail "--check-index"; }
listed=$(grep -c 'listed as pinned$' "$SCRATCH/index.log" || true)
[ "$listed" -eq "$pins" ] || fail "$listed of $pins pins listed as pinned (log: $SCRATCH/index.log)"
[ -d "$SCRATCH/cache/apt/lists" ] && compgen -G "$SCRATCH/cache/apt/lists/*InRelease" >/dev/null \
  || fail "no index lists in the private apt state $SCRATCH/cache/apt/lists"

# --- 2. real downloads ------------------------------------------------------------------
# The smallest binary package of each suite: file size sha256 per line. (A source package
# comes whole, .orig tarball included: the QEMU builds fetch that one.)
mapfile -t small < <(grep -v -e '^#' -e '^[[:space:]]*$' "$LOCK" | awk '$2 == "deb"' \
  | sort -k3,3 -k7,7n | awk '!seen[$3]++ { print $9, $7, $8 }')
files=()
for line in "${small[@]}"; do files+=("${line%% *}"); done
say "$(( SECONDS - T0 )) s: 2. downloading ${files[*]} with apt-get"
fetch "${files[@]}" 2>"$SCRATCH/download.log" || { cat "$SCRATCH/download.log" >&2; fail "fetch"; }
for line in "${small[@]}"; do
  read -r file size sha <<<"$line"
  expect_in "$SCRATCH/download.log" "$file: from the registry, verified"
  got=$SCRATCH/cache/dl/$file
  [ -f "$got" ] || fail "$got missing after the fetch"
  [ "$(stat -c %s "$got")" = "$size" ] || fail "$got has $(stat -c %s "$got") bytes, pinned $size"
  [ "$(sha256sum "$got" | cut -d' ' -f1)" = "$sha" ] || fail "$got does not have the pinned SHA-256 $sha"
done
[ "$(ls "$SCRATCH/cache/dl" | wc -l)" -eq "${#files[@]}" ] || fail "unexpected files in $SCRATCH/cache/dl: $(ls "$SCRATCH/cache/dl")"

# --- 3. the offline mirror ----------------------------------------------------------------
first=${files[0]}
say "$(( SECONDS - T0 )) s: 3. the offline mirror first: a good copy of $first is taken, a damaged one skipped"
mkdir -p "$SCRATCH/mirror/cache"
cp "$SCRATCH/cache/dl/$first" "$SCRATCH/mirror/cache/"
rm "$SCRATCH/cache/dl/$first"
QEMU_QPL_SHARED=$SCRATCH/mirror fetch "$first" 2>"$SCRATCH/mirror.log" || { cat "$SCRATCH/mirror.log" >&2; fail "fetch from the mirror"; }
expect_in "$SCRATCH/mirror.log" "$first: from the offline mirror $SCRATCH/mirror/cache, verified"
printf 'damaged' | dd of="$SCRATCH/mirror/cache/$first" bs=1 seek=1000 conv=notrunc status=none
rm "$SCRATCH/cache/dl/$first"
QEMU_QPL_SHARED=$SCRATCH/mirror fetch "$first" 2>"$SCRATCH/mirror-bad.log" || { cat "$SCRATCH/mirror-bad.log" >&2; fail "fetch past a damaged mirror"; }
expect_in "$SCRATCH/mirror-bad.log" "$first in the offline mirror $SCRATCH/mirror/cache is not the pinned file" \
  "$first: from the registry, verified"

# --- 4. failures name the file --------------------------------------------------------------
say "$(( SECONDS - T0 )) s: 4. a pin the registry does not match, and a version it does not have"
bad_sha=$(printf '%064d' 0)
sed "s/ $(grep -F " $first" "$LOCK" | awk '{ print $8 }') / $bad_sha /" "$LOCK" >"$SCRATCH/wrong-sha.lock"
if fetch --lock "$SCRATCH/wrong-sha.lock" "$first" 2>"$SCRATCH/wrong-sha.log"; then
  fail "a fetch against a wrong SHA-256 succeeded"
fi
expect_in "$SCRATCH/wrong-sha.log" "$first (" "SHA-256 $bad_sha" "Put each missing file, exactly as named, in $SCRATCH/cache/dl/"
[ ! -e "$SCRATCH/cache/dl/$first" ] || fail "$first was left in dl/ although it does not match its pin"
pkg=$(grep -F " $first" "$LOCK" | awk '{ print $5 }')
ver=$(grep -F " $first" "$LOCK" | awk '{ print $6 }')
awk -v f="$first" '$9 == f { $6 = $6 "+no.such.version" } { print }' "$LOCK" >"$SCRATCH/no-version.lock"
if fetch --lock "$SCRATCH/no-version.lock" --check-index "$first" 2>"$SCRATCH/no-version.log"; then
  fail "--check-index passed a version the registry does not have"
fi
expect_in "$SCRATCH/no-version.log" "$first (package $pkg $ver+no.such.version" "not in the index"

[ "$(etc_apt_sum)" = "$etc_before" ] || fail "the files under /etc/apt changed during the test"
rm -rf "$SCRATCH"
say "ok in $(( SECONDS - T0 )) s: $pins pins listed in the index, ${#files[@]} downloaded and verified, mirror and failure paths checked, /etc/apt untouched"
