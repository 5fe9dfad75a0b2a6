#!/usr/bin/env bash
# The IAA path of qemu-qpl in QEMU, on the IAA model (issue #14).
#
#   tests/iaa/check.sh migration-test   QEMU's migration-test qpl case, our QEMU on the model
#   tests/iaa/check.sh live             live migrations of a real-data guest, 2 and 4 channels:
#                                       ours(IAA)->ours(IAA), ours(IAA)<->upstream (Intel QPL on
#                                       IAA), ours(IAA)<->ours(CPU); RAM hashed on both sides
#   tests/iaa/check.sh faults           ours(IAA)->ours(IAA) with a full queue, random error
#                                       completions, page faults, a device that stops completing
#   tests/iaa/check.sh library          tests/running_guest.rs and tests/allocations.rs on the IAA
#                                       path (both Huffman modes): pages rewritten while the device
#                                       compresses them, no allocation per packet
#   tests/iaa/check.sh all              the four
#
# Each QEMU runs through a wrapper that puts it on the model (make -s iaa-model-env), gives it
# this checkout's library (LD_LIBRARY_PATH: the shared build tree may hold another checkout's
# libqemu_qpl.so) and its own statistics directory and channel log (QEMU_QPL_IAA_LOG). Our
# IAA QEMUs run with QEMU_QPL_IAA=require: a channel that cannot use the device fails the
# migration instead of passing on the CPU. After each run the model's statistics and the
# library's counters must show that the device did the work.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${QEMU_QPL_CACHE:-/var/tmp/qemu-qpl}
OURS=$CACHE/qemu-build/ours/qemu-system-x86_64
INTEL=$CACHE/qemu-build/intel-qpl/qemu-system-x86_64
QPL_CASE=/x86_64/migration/multifd/tcp/plain/qpl
SIZE=${IAA_CHECK_SIZE:-256M}
stage=${1:-all}
# The model is a thread that shares two cores with the guests, the QEMUs and make check's
# other lane: it can be starved for seconds, which silicon never is. Our library's default
# deadline (1 s) is sized for silicon and would give the device up here, so the runs whose
# subject is not a timeout get a generous one; the stalled-device case sets its own 200 ms.
MODEL_TIMEOUT_MS=${IAA_CHECK_TIMEOUT_MS:-30000}

target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac
# Wait for a build of either QEMU that is under way (build-qemu.sh holds these locks).
for variant in ours intel-qpl; do
  if [ -e "$CACHE/qemu-build/.$variant.lock" ]; then
    flock "$CACHE/qemu-build/.$variant.lock" true
  fi
done
for bin in "$OURS" "$INTEL"; do
  [ -x "$bin" ] || { echo "iaa check: $bin missing: run make qemu-build" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/iaa-check.XXXXXX")
if [ -z "${IAA_CHECK_KEEP:-}" ]; then
  trap 'rm -rf "$work"' EXIT
else
  echo "iaa check: keeping $work" >&2
fi

step() { echo "iaa check: $*" >&2; }

cargo build --release --quiet --lib --manifest-path "$root/Cargo.toml"
libdir=$target/iaa-qemu-lib
mkdir -p "$libdir"
ln -sfn "$target/release/libqemu_qpl.so" "$libdir/libqemu_qpl.so.0"

# model_env WQS: the KEY=VALUE lines that put a process on a model with work queues WQS.
model_env() {
  IAA_MODEL_WQS=$1 bash "$root/tests/iaa-model/env.sh"
}

# wrapper NAME BINARY KIND WQS [KEY=VALUE...]: an executable $work/NAME/qemu-system-x86_64
# (migration-test wants that name) that runs BINARY on the model (KIND ours-iaa, ours-cpu or
# intel) with statistics in $work/NAME/stats and our channels' log in $work/NAME/channels.log.
# Prints its path.
wrapper() {
  local name=$1 binary=$2 kind=$3 wqs=$4
  shift 4
  local dir=$work/$name
  local path=$dir/qemu-system-x86_64
  mkdir -p "$dir/stats"
  {
    echo '#!/usr/bin/env bash'
    echo "export IAA_MODEL_STATS=$dir/stats"
    local line
    while read -r line; do echo "export $line"; done < <(model_env "$wqs")
    echo "export IAA_MODEL_WQS=$wqs"
    case "$kind" in
      ours-iaa) echo "export QEMU_QPL_IAA=require QEMU_QPL_IAA_LOG=$dir/channels.log" ;;
      ours-cpu) echo "export QEMU_QPL_IAA=off QEMU_QPL_IAA_LOG=$dir/channels.log" ;;
      intel) ;;
      *) echo "iaa check: unknown wrapper kind $kind" >&2; exit 1 ;;
    esac
    case "$kind" in
      ours-*)
        echo "export LD_LIBRARY_PATH=$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
        echo "export QEMU_QPL_IAA_TIMEOUT_MS=$MODEL_TIMEOUT_MS"
        ;;
    esac
    for line in "$@"; do echo "export $line"; done
    echo "exec $binary \"\$@\""
  } > "$path"
  chmod +x "$path"
  echo "$path"
}

# counters NAME: the library's counters summed over the channels of wrapper NAME's QEMUs
# (the channel log's "done" lines), as KEY=VALUE lines.
counters() {
  python3 - "$work/$1/channels.log" <<'PY'
import re, sys
total = {}
try:
    lines = open(sys.argv[1]).read().splitlines()
except FileNotFoundError:
    lines = []
for line in lines:
    if " done: " in line:
        for key, value in re.findall(r"(\w+)=(\d+)", line.split(" done: ", 1)[1]):
            total[key] = total.get(key, 0) + int(value)
for key, value in total.items():
    print("%s=%d" % (key, value))
PY
}

# expect NAME EXPR: EXPR (python, over the counters of NAME) must hold.
expect() {
  local name=$1 expr=$2
  local values
  values=$(counters "$name" | paste -sd' ')
  if ! python3 -c "
import sys
c = dict(kv.split('=') for kv in sys.argv[1].split())
c = {k: int(v) for k, v in c.items()}
sys.exit(0 if eval(sys.argv[2], {}, c) else 1)" "$values" "$expr" 2>/dev/null; then
    echo "iaa check: $name: expected $expr; counters: ${values:-none (no channel log)}" >&2
    head -8 "$work/$name/channels.log" >&2 2>/dev/null || true
    exit 1
  fi
  step "$name: $expr ($values)"
}

stats() { # NAME ARGS...: stats.py over wrapper NAME's statistics
  local name=$1
  shift
  python3 "$root/tests/iaa-model/stats.py" "$work/$name/stats" "$@"
}

# summary NAME...: one markdown row per wrapper: our counters and the model's statistics.
summary() {
  echo "| QEMU | pages on IAA | on the CPU | raw | queue full | errors | page faults (fallback) | timeouts | rejected | device page faults | model: compress / decompress ok | model: faults resolved |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
  python3 - "$work" "$@" <<'PY'
import glob, json, os, re, sys
for name in sys.argv[2:]:
    d = os.path.join(sys.argv[1], name)
    c = {}
    log = os.path.join(d, "channels.log")
    if os.path.exists(log):
        for line in open(log):
            if " done: " in line:
                for k, v in re.findall(r"(\w+)=(\d+)", line.split(" done: ", 1)[1]):
                    c[k] = c.get(k, 0) + int(v)
    m = {}
    for f in glob.glob(os.path.join(d, "stats", "*.json")):
        for k, v in json.load(open(f)).items():
            if isinstance(v, int):
                m[k] = m.get(k, 0) + v
    g = lambda k: str(c[k]) if k in c else "—"
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d / %d | %d |" % (
        name, g("pages_iaa"), g("pages_cpu"), g("pages_raw"), g("fallback_queue_full"),
        g("fallback_error"), g("fallback_page_fault"), g("fallback_timeout"), g("fallback_rejected"),
        g("page_faults"), m.get("compress_ok", 0), m.get("decompress_ok", 0), m.get("faults_resolved", 0)))
PY
}

demo() { # demo ARGS...: qpl-demo, 256 MiB of real data, a running guest, RAM verified
  python3 "$root/tests/migration/qpl-demo.py" --size "$SIZE" "$@"
}

PAGES=$(python3 -c "import re; s='$SIZE'; n=int(re.match(r'\d+', s).group()); print(n * {'M': 256, 'G': 262144}[s[-1]])")

migration_test() {
  local src dst
  src=$(wrapper mt-src "$OURS" ours-iaa shared:128:bof)
  dst=$(wrapper mt-dst "$OURS" ours-iaa shared:128:bof)
  # Upstream's test program (the intel-qpl build's, unmodified): its qpl case alone.
  step "migration-test $QPL_CASE, our QEMU on the model at both ends"
  bash "$root/tests/qemu/run-migration-test.sh" intel-qpl --src "$src" --dst "$dst" "$QPL_CASE"
  stats mt-src --min-compress 1000 --max-faults 0
  stats mt-dst --min-decompress 1000 --max-faults 0
  expect mt-src "pages_iaa > 1000"
  expect mt-dst "pages_iaa > 1000"
  summary mt-src mt-dst
}

live() {
  local ours_src ours_dst cpu_src cpu_dst intel_src intel_dst
  ours_src=$(wrapper ours-src "$OURS" ours-iaa shared:128:bof)
  ours_dst=$(wrapper ours-dst "$OURS" ours-iaa shared:128:bof)
  cpu_src=$(wrapper cpu-src "$OURS" ours-cpu shared:128:bof)
  cpu_dst=$(wrapper cpu-dst "$OURS" ours-cpu shared:128:bof)
  intel_src=$(wrapper intel-src "$INTEL" intel shared:128:bof)
  intel_dst=$(wrapper intel-dst "$INTEL" intel shared:128:bof)
  step "live migrations of a $SIZE running guest full of real data, 2 and 4 channels, RAM hashed; destinations not preallocated"
  demo --channels 2,4 --methods "qpl@$ours_src:$ours_dst,qpl@$ours_src:$intel_dst,qpl@$intel_src:$ours_dst,qpl@$ours_src:$cpu_dst,qpl@$cpu_src:$ours_dst"
  # Six migrations from our IAA source, six into our IAA destination (2 and 4 channels
  # each): the device did most of the work; a page that met a full queue went to the CPU,
  # as upstream does.
  stats ours-src --min-compress $((6 * PAGES / 4)) --max-faults 0
  stats ours-dst --min-decompress $((6 * PAGES / 4)) --max-faults 0
  stats intel-src --min-compress $((2 * PAGES / 4)) --max-faults 0
  stats intel-dst --min-decompress $((2 * PAGES / 4)) --max-faults 0
  expect ours-src "pages_iaa > 6 * $PAGES // 4 and pages_iaa > pages_cpu and fallback_error + fallback_timeout == 0"
  expect ours-dst "pages_iaa > 6 * $PAGES // 4 and pages_iaa > pages_cpu and fallback_error + fallback_timeout + fallback_rejected == 0"
  expect cpu-src "pages_iaa == 0 and pages_cpu > 2 * $PAGES // 2"
  expect cpu-dst "pages_iaa == 0 and pages_cpu > 2 * $PAGES // 2"
  # The QEMU_QPL_IAA=off QEMUs ran on the model too, and must not have used it.
  python3 - "$work/cpu-src/stats" "$work/cpu-dst/stats" <<'PY' \
    || { echo "iaa check: a QEMU_QPL_IAA=off QEMU used the device" >&2; exit 1; }
import glob, json, os, sys
sys.exit(1 if any(json.load(open(f)).get("submitted", 0) for d in sys.argv[1:]
                  for f in glob.glob(os.path.join(d, "*.json"))) else 0)
PY
  summary ours-src ours-dst intel-src intel-dst cpu-src cpu-dst
}

faults() {
  local src dst
  step "a full queue: 4 channels on a queue of 8 entries at each end"
  src=$(wrapper full-src "$OURS" ours-iaa shared:8:bof)
  dst=$(wrapper full-dst "$OURS" ours-iaa shared:8:bof)
  demo --channels 4 --methods "qpl@$src:$dst"
  expect full-src "fallback_queue_full > 0 and pages_iaa > 1000"
  expect full-dst "fallback_queue_full > 0 and pages_iaa > 1000"

  step "random error completions (5 % of descriptors) at both ends"
  src=$(wrapper errors-src "$OURS" ours-iaa shared:128:bof IAA_MODEL_FAIL_RATE=0.05 IAA_MODEL_FAIL_SEED=3)
  dst=$(wrapper errors-dst "$OURS" ours-iaa shared:128:bof IAA_MODEL_FAIL_RATE=0.05 IAA_MODEL_FAIL_SEED=5)
  demo --channels 2 --methods "qpl@$src:$dst"
  expect errors-src "fallback_error > 0 and pages_iaa > $PAGES // 2"
  expect errors-dst "fallback_error > 0 and pages_iaa > $PAGES // 2"

  step "page faults: no block on fault, output buffers given back to the kernel every 4th packet"
  src=$(wrapper pf-src "$OURS" ours-iaa shared:128 QEMU_QPL_IAA_EVICT_EVERY=4)
  dst=$(wrapper pf-dst "$OURS" ours-iaa shared:128 QEMU_QPL_IAA_EVICT_EVERY=4)
  demo --channels 2 --methods "qpl@$src:$dst"
  expect pf-src "page_faults > 0 and fallback_page_fault == 0 and pages_iaa > $PAGES // 2"
  expect pf-dst "page_faults > 0 and fallback_page_fault == 0 and pages_iaa > $PAGES // 2"

  step "a device that stops completing after 3000 descriptors (timeout 200 ms) at both ends"
  src=$(wrapper stall-src "$OURS" ours-iaa shared:128:bof IAA_MODEL_STALL_AFTER=3000 QEMU_QPL_IAA_TIMEOUT_MS=200)
  dst=$(wrapper stall-dst "$OURS" ours-iaa shared:128:bof IAA_MODEL_STALL_AFTER=3000 QEMU_QPL_IAA_TIMEOUT_MS=200)
  local start=$SECONDS
  demo --channels 2 --methods "qpl@$src:$dst" --timeout 300
  expect stall-src "fallback_timeout > 0 and pages_cpu > $PAGES // 2"
  expect stall-dst "fallback_timeout > 0 and pages_cpu > $PAGES // 2"
  grep -q "CPU since IAA timed out" "$work/stall-src/channels.log" \
    || { echo "iaa check: the stalled source did not say it gave the device up" >&2; exit 1; }
  step "the stalled device's migration took $((SECONDS - start)) s"
  summary full-src full-dst errors-src errors-dst pf-src pf-dst stall-src stall-dst
}

library() {
  local tests=()
  local name
  for name in running_guest allocations; do
    tests+=("$(cargo test --release --manifest-path "$root/Cargo.toml" --test "$name" --no-run 2>&1 \
      | sed -n 's/^ *Executable .*(\(.*\))$/\1/p')")
  done
  local huffman test
  for huffman in fixed dynamic; do
    mkdir -p "$work/library-$huffman/stats"
    for test in "${tests[@]}"; do
      [ -x "$root/$test" ] || { echo "iaa check: test binary $test not found" >&2; exit 1; }
      step "$(basename "$test") on the IAA path, $huffman Huffman"
      (cd "$root" && env $(model_env shared:128:bof) QEMU_QPL_IAA=require QEMU_QPL_IAA_HUFFMAN=$huffman QEMU_QPL_IAA_TIMEOUT_MS=$MODEL_TIMEOUT_MS \
        IAA_MODEL_STATS="$work/library-$huffman/stats" QEMU_QPL_STRESS_SECONDS=1 "$root/$test" --test-threads=2)
    done
    stats "library-$huffman" --min-compress 1000 --min-decompress 1000 --max-faults 0
  done
}

case "$stage" in
  library) library ;;
  migration-test) migration_test ;;
  live) live ;;
  faults) faults ;;
  all) library; migration_test; live; faults ;;
  *) echo "usage: $0 library|migration-test|live|faults|all" >&2; exit 2 ;;
esac
step "$stage passed"
