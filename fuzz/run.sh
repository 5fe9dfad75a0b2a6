#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (make fuzz):
#   fuzz/run.sh SECONDS TARGET...
# Each target starts from its working corpus in the cache and the committed
# seeds. Exits non-zero on the first crash, leak, out-of-bounds access or
# timeout; libFuzzer then names the input it saved under fuzz/artifacts/, which
# belongs in fuzz/regressions/TARGET/ once the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:?seconds}
shift
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
cargo +nightly fuzz build -O
for target in "$@"; do
  mkdir -p "$CACHE/fuzz-corpus/$target"
  echo "fuzz: $target for ${SECONDS_EACH}s" >&2
  # libFuzzer's progress lines are many; keep its summary and any report.
  set +e
  cargo +nightly fuzz run -O "$target" "$CACHE/fuzz-corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | grep -Ev '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' \
    | grep -Ev '^INFO: |^"|^###### '
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $target FAILED (exit $status); the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${SECONDS_EACH}s without a failure" >&2
