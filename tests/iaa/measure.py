#!/usr/bin/env python3
"""Measures the IAA path on the IAA model against Intel QPL 1.9's hardware path (upstream
QEMU) on the same model, and against our CPU path: live migrations of a paused guest full of
real data (tests/migration/qpl-demo.py), one QEMU pair at a time, with the CPU time of every
QEMU thread sampled (QEMU's threads named with debug-threads=on; the model's engine threads
are the "device" and are reported apart).

  tests/iaa/measure.py [--size 512M] [--channels 2] [--repeat 1] [--only NAME,...]

Prints one markdown table. On the model the device is software on the same cores, so times
and the device's CPU say nothing about silicon; the channel threads' CPU per page (what a
channel spends submitting, waiting and copying, or compressing itself) and the ratio
(the model's match finder) are what compare clients on the same model."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("QEMU_QPL_CACHE", "/var/tmp/qemu-qpl")
OURS = os.path.join(CACHE, "qemu-build/ours/qemu-system-x86_64")
INTEL = os.path.join(CACHE, "qemu-build/intel-qpl/qemu-system-x86_64")

# name, source kind, destination kind, work queues, extra source env, qpl-demo options
CONFIGS = [
    ("qemu-qpl IAA fixed", "ours-iaa", "ours-iaa", "shared:128:bof", {"QEMU_QPL_IAA_HUFFMAN": "fixed"}, []),
    ("qemu-qpl IAA dynamic", "ours-iaa", "ours-iaa", "shared:128:bof", {"QEMU_QPL_IAA_HUFFMAN": "dynamic"}, []),
    ("Intel QPL IAA", "intel", "intel", "shared:128:bof", {}, []),
    ("qemu-qpl CPU fast", "ours-cpu", "ours-cpu", "shared:128:bof", {}, []),
    ("qemu-qpl IAA fixed, dst prealloc", "ours-iaa", "ours-iaa", "shared:128:bof", {"QEMU_QPL_IAA_HUFFMAN": "fixed"},
     ["--dst-prealloc"]),
    ("Intel QPL IAA, dst prealloc", "intel", "intel", "shared:128:bof", {}, ["--dst-prealloc"]),
    ("qemu-qpl IAA fixed, no block on fault", "ours-iaa", "ours-iaa", "shared:128", {"QEMU_QPL_IAA_HUFFMAN": "fixed"},
     []),
    # Upstream fails here (docs/iaa-model.md: Intel QPL resubmits a faulting job only once).
    ("Intel QPL IAA, no block on fault", "intel", "intel", "shared:128", {}, []),
]


def model_env(wqs):
    out = subprocess.run(["bash", os.path.join(ROOT, "tests/iaa-model/env.sh")], check=True,
                         env=dict(os.environ, IAA_MODEL_WQS=wqs), capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.split())


def wrapper(workdir, name, kind, wqs, extra, libdir):
    d = os.path.join(workdir, name)
    os.makedirs(os.path.join(d, "stats"))
    env = dict(model_env(wqs))
    env["IAA_MODEL_WQS"] = wqs
    env["IAA_MODEL_STATS"] = os.path.join(d, "stats")
    binary = INTEL if kind == "intel" else OURS
    if kind.startswith("ours"):
        env["QEMU_QPL_IAA"] = "require" if kind == "ours-iaa" else "off"
        env["QEMU_QPL_IAA_LOG"] = os.path.join(d, "channels.log")
    env.update(extra)
    path = os.path.join(d, "qemu-system-x86_64")
    with open(path, "w") as f:
        f.write("#!/usr/bin/env bash\n")
        for k, v in env.items():
            f.write("export %s=%s\n" % (k, v))
        if kind.startswith("ours"):
            f.write("export LD_LIBRARY_PATH=%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\n" % libdir)
        f.write("python3 %s $$ %s/cpu-$$.json </dev/null >/dev/null 2>&1 &\n"
                % (os.path.join(ROOT, "tests/iaa/thread_cpu.py"), d))
        f.write('exec %s "$@" -name debug-threads=on\n' % binary)
    os.chmod(path, 0o755)
    return d


def threads(d):
    """CPU seconds of the channel threads, the model's engines and the rest, over the QEMUs
    this wrapper started."""
    sums = {"channels": 0.0, "engines": 0.0, "other": 0.0}
    for name in os.listdir(d):
        if name.startswith("cpu-") and name.endswith(".json"):
            with open(os.path.join(d, name)) as f:
                for t in json.load(f).values():
                    comm = t["comm"]
                    # QEMU 10.2's multifd channel threads: mig/src/send_N, mig/dst/recv_N.
                    key = ("channels" if comm.startswith(("mig/src/send", "mig/dst/recv"))
                           else "engines" if comm.startswith("iaa-engine") else "other")
                    sums[key] += t["cpu_s"]
    return sums


def counters(d):
    total = {}
    path = os.path.join(d, "channels.log")
    if os.path.exists(path):
        for line in open(path):
            if " done: " in line:
                for kv in line.split(" done: ", 1)[1].split(";")[0].split():
                    k, v = kv.split("=")
                    total[k] = total.get(k, 0) + int(v)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="512M")
    ap.add_argument("--channels", default="2")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", default="")
    opts = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--lib", "--manifest-path",
                    os.path.join(ROOT, "Cargo.toml")], check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    libdir = os.path.join(target, "iaa-qemu-lib")
    os.makedirs(libdir, exist_ok=True)
    link = os.path.join(libdir, "libqemu_qpl.so.0")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.join(target, "release/libqemu_qpl.so"), link)
    rows = []
    print("load average at the start: %.1f" % os.getloadavg()[0])
    with tempfile.TemporaryDirectory(prefix="iaa-measure.") as workdir:
        if os.environ.get("IAA_MEASURE_KEEP"):
            workdir = tempfile.mkdtemp(prefix="iaa-measure-kept.")
        # Repetitions interleave the configurations, so that a change in the machine's load
        # falls on all of them alike.
        for rep in range(opts.repeat):
            for name, src_kind, dst_kind, wqs, extra, demo_opts in CONFIGS:
                if opts.only and name not in opts.only.split(","):
                    continue
                tag = "%d-%d" % (len(rows), rep)
                src = wrapper(workdir, "src" + tag, src_kind, wqs, extra, libdir)
                dst = wrapper(workdir, "dst" + tag, dst_kind, wqs, {}, libdir)
                save = os.path.join(workdir, "demo%s.json" % tag)
                cmd = [sys.executable, os.path.join(ROOT, "tests/migration/qpl-demo.py"), "--size", opts.size,
                       "--guest", "paused", "--channels", opts.channels, "--save", save, "--methods",
                       "qpl@%s/qemu-system-x86_64:%s/qemu-system-x86_64" % (src, dst)] + demo_opts
                print("measure: %s (%d/%d)" % (name, rep + 1, opts.repeat), file=sys.stderr)
                result = subprocess.run(cmd, stdout=subprocess.DEVNULL)
                if result.returncode != 0:
                    rows.append((name, None))
                    continue
                with open(save) as f:
                    run = json.load(f)["runs"][0]
                rows.append((name, {"run": run, "src": threads(src), "dst": threads(dst),
                                    "src_counters": counters(src), "dst_counters": counters(dst)}))
    rows.sort(key=lambda row: [c[0] for c in CONFIGS].index(row[0]))
    print("load average at the end: %.1f" % os.getloadavg()[0])
    print("| configuration | total ms | pages/s | wire/RAM | src channels CPU s | µs/page | src device CPU s "
          "| dst channels CPU s | µs/page | dst device CPU s | pages on IAA src / dst | faults |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, r in rows:
        if r is None:
            print("| %s | failed |||||||||||" % name)
            continue
        run = r["run"]
        pages = (run.get("normal_pages") or 0) or 1
        sc, dc = r["src_counters"], r["dst_counters"]

        def share(c):
            total = sum(c.get(k, 0) for k in ("pages_iaa", "pages_cpu", "pages_raw"))
            return "%.0f %%" % (100.0 * c["pages_iaa"] / total) if total else "—"
        print("| %s | %d | %d | %.3f | %.2f | %.1f | %.2f | %.2f | %.1f | %.2f | %s / %s | %s |" % (
            name, run["total_ms"], run["pages_per_second"], run["wire_ratio"],
            r["src"]["channels"], 1e6 * r["src"]["channels"] / pages, r["src"]["engines"],
            r["dst"]["channels"], 1e6 * r["dst"]["channels"] / pages, r["dst"]["engines"],
            share(sc), share(dc), sc.get("page_faults", 0) + dc.get("page_faults", 0) if sc else "—"))


if __name__ == "__main__":
    main()
