#!/usr/bin/env bash
# Builds the IAA model if needed and prints, one per line, the KEY=VALUE
# assignments that put an unmodified process on it (`make -s iaa-model-env`):
#
#   env $(make -s iaa-model-env) qemu-system-x86_64 ...
#   env $(make -s iaa-model-env) IAA_MODEL_STATS=/tmp/stats ./my-qpl-program
#
# Only LD_PRELOAD is needed: the model library's SONAME is
# libaccel-config.so.1, so Intel QPL's dlopen of that name finds the
# preloaded model. The model's own settings (IAA_MODEL_*) are in
# docs/iaa-model.md; their defaults need no setting.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac
if ! cargo build --release --quiet -p iaa-model --manifest-path "$root/Cargo.toml" >&2; then
  echo "iaa-model-env: building the model failed (cargo build --release -p iaa-model)" >&2
  exit 1
fi
lib=$target/release/libiaa_model.so
if [ ! -f "$lib" ]; then
  echo "iaa-model-env: $lib is missing after the build" >&2
  exit 1
fi
echo "LD_PRELOAD=$lib"
