#!/usr/bin/env bash
# Builds the IAA model if needed and prints, one per line, the KEY=VALUE
# assignments that put an unmodified process on it (`make -s iaa-model-env`):
#
#   env $(make -s iaa-model-env) qemu-system-x86_64 ...
#   env $(make -s iaa-model-env) IAA_MODEL_STATS=/tmp/stats ./my-qpl-program
#
# For Intel QPL only LD_PRELOAD is needed: the model library's SONAME is
# libaccel-config.so.1, so Intel QPL's dlopen of that name finds the
# preloaded model. The model's own settings (IAA_MODEL_*) are in
# docs/iaa-model.md; their defaults need no setting.
#
# qemu-qpl's own IAA path reads sysfs, not accel-config: QEMU_QPL_IAA_SYSFS
# names a tree that describes the model's device and work queues, written
# for IAA_MODEL_WQS as it is set when this script runs (then also printed,
# so that the model and the tree agree):
#
#   env $(IAA_MODEL_WQS=dedicated:32 make -s iaa-model-env) qemu-system-x86_64 ...
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

# The model's one device, iax1, as the kernel's idxd driver would show it
# (values: docs/iaa-model.md, "device discovery"), and its work queues.
wqs=${IAA_MODEL_WQS:-shared:128:bof}
sysfs=$target/iaa-model-sysfs/$(printf '%s' "$wqs" | tr -c 'a-z0-9' '_')
devices=$sysfs/bus/dsa/devices
attrs() { # DIR NAME=VALUE...
  local dir=$1; shift
  mkdir -p "$dir"
  local pair
  for pair in "$@"; do printf '%s\n' "${pair#*=}" > "$dir/${pair%%=*}"; done
}
if [ ! -d "$devices" ]; then
  # Built aside and renamed into place, so that a process reading the tree
  # meanwhile never sees half of it.
  build=$(mktemp -d "$target/iaa-model-sysfs.XXXXXX")
  attrs "$build/bus/dsa/devices/iax1" state=enabled version=0x100 gen_cap=0x10000150001 numa_node=0 \
    max_transfer_size=2097152
  index=0
  IFS=, read -ra items <<<"$wqs"
  for item in "${items[@]}"; do
    IFS=: read -r mode size bof <<<"$item"
    attrs "$build/bus/dsa/devices/wq1.$index" state=enabled type=user "mode=$mode" "size=$size" \
      max_transfer_size=2097152 "block_on_fault=$([ "${bof:-}" = bof ] && echo 1 || echo 0)" priority=10 \
      name=iaa-model
    index=$((index + 1))
  done
  mkdir -p "$(dirname "$sysfs")"
  mv -T "$build" "$sysfs" 2>/dev/null || rm -rf "$build"
fi
echo "QEMU_QPL_IAA_SYSFS=$sysfs"
if [ -n "${IAA_MODEL_WQS:-}" ]; then
  echo "IAA_MODEL_WQS=$IAA_MODEL_WQS"
fi
