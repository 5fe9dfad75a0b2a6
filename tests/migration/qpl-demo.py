#!/usr/bin/env python3
"""qpl-demo: real multifd live migrations between two local QEMU processes.

For every requested method this starts a source QEMU whose guest RAM is a
prepared image (real files, then zeros), a destination QEMU waiting on
127.0.0.1, migrates the guest with multifd, measures time, wire bytes and CPU
of both processes, and proves that the destination's guest RAM equals the
source's byte for byte (SHA-256 of both processes' RAM read from
/proc/PID/mem).  One table of results goes to stdout.

By default the guest runs while it migrates: a boot sector of our own
(tests/guest/dirtier.S, driven by running_guest.py) keeps rewriting its RAM,
and the migration goes through several dirty-page passes before it converges.
--guest paused migrates the untouched image instead.

Standard library only.  See docs/demo.md for how to run and read it.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the script in the checkout

import running_guest  # noqa: E402
from demo_common import (CACHE, REPO, DemoError, QMPError, Unsupported, fmt_mib,  # noqa: E402
                         fmt_size, log, parse_bandwidth, parse_size)
from demo_chart import write_chart  # noqa: E402
from demo_progress import Progress, phase  # noqa: E402
from demo_report import fmt_bandwidth, format_report, median_row  # noqa: E402
from guest_ram import diff_pages, hash_mem, ram_block  # noqa: E402
from qemu_proc import (Qemu, kill_all, kvm_usable, multifd_methods, qpl_libraries,  # noqa: E402
                       start_incoming)
from ram_image import prepare_image  # noqa: E402

UNLIMITED_BW = 1 << 40    # "no cap": 1 TiB/s (QEMU's default cap is only 128 MiB/s)
DEFAULT_GUEST_HZ = 2000   # running guest: see docs/demo.md for how these were chosen
DEFAULT_GUEST_OPS = 1
DEFAULT_LIVE_SYNCS = 5

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR, EXIT_UNSUPPORTED = 0, 1, 2, 3


def host_busy_seconds():
    """CPU seconds all processes of the machine have used (busy time of /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / float(os.sysconf("SC_CLK_TCK"))


def resolve_binary(name):
    """'ours', 'intel-qpl', 'system' or a path -> (path or None, label)."""
    if name in ("ours", "intel-qpl"):
        return os.path.join(CACHE, "qemu-build", name, "qemu-system-x86_64"), name
    if name == "system":
        return shutil.which("qemu-system-x86_64"), "system"
    return os.path.abspath(name), os.path.basename(os.path.dirname(os.path.abspath(name))) or name


def firmware_dir():
    d = os.path.join(CACHE, "firmware")
    if os.path.isdir(d) and os.listdir(d):
        return d
    own = os.path.join(CACHE, "demo", "firmware")
    os.makedirs(own, exist_ok=True)
    import glob
    found = glob.glob("/usr/share/seabios/*.bin") + glob.glob("/usr/lib/ipxe/qemu/*.rom")
    if not any(p.endswith("bios-256k.bin") for p in found):
        raise DemoError("no firmware: %s is missing and /usr/share/seabios/bios-256k.bin is not "
                        "installed (apt-get install seabios ipxe-qemu)" % d)
    for p in found:
        link = os.path.join(own, os.path.basename(p))
        if not os.path.lexists(link):
            os.symlink(p, link)
    return own


# ---------------------------------------------------------------- one migration

def base_args(opts):
    """Options every QEMU of a run gets, source and destination alike."""
    return ["-L", opts.firmware, "-nographic", "-nodefaults", "-accel", opts.accel,
            "-machine", "q35,memory-backend=ram0", "-m", str(opts.size >> 20) + "M"]


def guest_disk(opts, workdir):
    """The running guest's boot disk (both QEMUs need it), or None for a paused guest."""
    if opts.guest != "running":
        return None
    return running_guest.write_disk(os.path.join(workdir, "guest-disk.img"), opts.guest_cfg)


def start_destination(binary, opts, workdir, disk):
    """A destination QEMU, paused and waiting for migrate-incoming; it stays paused after the
    migration (-S), so its RAM holds still for the check."""
    dev = running_guest.qemu_args(disk, os.path.join(workdir, "dst-firmware.log")) if disk else []
    return Qemu("dst", binary, base_args(opts) + ["-S"] + dev + [
        "-object", "memory-backend-ram,id=ram0,size=%d%s"
        % (opts.size, ",prealloc=on" if getattr(opts, "dst_prealloc", False) else ""),
        "-incoming", "defer"], workdir)


def start_source(binary, opts, image, workdir, disk):
    """The source QEMU; its guest RAM is the image, mapped privately so the file never changes.
    With a running guest it boots the guest program from `disk`."""
    dev = running_guest.qemu_args(disk, os.path.join(workdir, "src-firmware.log")) if disk else []
    # prealloc: the guest's RAM is read in from the image before the clock starts, so no
    # method pays for page faults or disk reads.
    return Qemu("src", binary, base_args(opts) + ([] if opts.guest == "running" else ["-S"]) + dev + [
        "-object", "memory-backend-file,id=ram0,size=%d,mem-path=%s,share=off,prealloc=on"
        % (opts.size, image)], workdir)


def start_pair(spec, opts, image, workdir):
    """The destination (paused, waiting) and the source QEMU."""
    disk = guest_disk(opts, workdir)
    dst = start_destination(spec["dst"], opts, workdir, disk)
    src = start_source(spec["src"], opts, image, workdir, disk)
    return src, dst


def configure(src, dst, method, channels, opts, result, qpl_level=None):
    for q in (src, dst):
        v = q.qmp.greeting["QMP"]["version"]
        result[q.role + "_version"] = ("%d.%d.%d %s" % (v["qemu"]["major"], v["qemu"]["minor"],
                                                        v["qemu"]["micro"], v.get("package", ""))).strip()
        result[q.role + "_qpl_libraries"] = qpl_libraries(q.pid)
        have = multifd_methods(q.qmp)
        if have is not None and method not in have:
            raise Unsupported("%s QEMU %s (%s) has no multifd-compression '%s'; it offers: %s"
                              % (q.role, q.binary, result[q.role + "_version"], method,
                                 ", ".join(have)))
        q.qmp.cmd("migrate-set-capabilities",
                  capabilities=[{"capability": "multifd", "state": True}])
        params = {"multifd-channels": channels, "multifd-compression": method}
        if q is dst and os.environ.get("QPL_DEMO_DST_COMPRESSION"):
            # Self-test of the failure path: a destination expecting another method.
            params["multifd-compression"] = os.environ["QPL_DEMO_DST_COMPRESSION"]
        if q is src:
            if qpl_level:
                params["multifd-qpl-level"] = qpl_level
            params["max-bandwidth"] = opts.max_bandwidth or UNLIMITED_BW
            if opts.guest == "running":
                params["downtime-limit"] = running_guest.LIVE_DOWNTIME_MS
                params["avail-switchover-bandwidth"] = running_guest.LIVE_SWITCHOVER_BW
            elif opts.downtime_limit is not None:
                params["downtime-limit"] = opts.downtime_limit
        try:
            q.qmp.cmd("migrate-set-parameters", **params)
        except QMPError as e:
            if "multifd-compression" in (e.desc or "") or method in (e.desc or ""):
                raise Unsupported("%s QEMU %s does not accept multifd-compression '%s': %s"
                                  % (q.role, q.binary, method, e.desc))
            raise
        if q is src and method == "qpl":
            # The level in effect (QEMU's default when none was set); None on a QEMU without
            # the parameter, such as upstream's Intel QPL build.
            result["src_qpl_level"] = q.qmp.cmd("query-migrate-parameters").get("multifd-qpl-level")


def migrate(src, dst, port, opts, label, live):
    """migrate, then query-migrate every 50 ms until both sides completed; the source's last
    answer.  `live` (or None) watches the running guest and paces the passes."""
    prog = Progress(label)
    t0 = time.monotonic()
    if live:
        live.begin()
    src.qmp.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
    deadline = t0 + opts.timeout
    pct = 0.0
    while True:
        if not dst.alive():
            raise DemoError("migration broke: " + dst.died_msg())
        if not src.alive():
            raise DemoError("migration broke: " + src.died_msg())
        info = src.qmp.cmd("query-migrate")
        status = info.get("status")
        ram = info.get("ram", {})
        if ram.get("total"):
            pct = 100.0 * (ram["total"] - ram.get("remaining", 0)) / ram["total"]
            prog.show(ram, status, force=status == "completed")
        if status == "completed":
            break
        if status in ("failed", "cancelled"):
            prog.done()
            derr = ""
            try:
                dinfo = dst.qmp.cmd("query-migrate", timeout=5)
                if dinfo.get("error-desc"):
                    derr = "; destination says: " + dinfo["error-desc"]
            except Exception:
                if not dst.alive():
                    derr = "; " + dst.died_msg()
            raise DemoError("migration %s: %s%s" % (status, info.get("error-desc", "(no error-desc)"), derr))
        if live:
            try:
                live.poll(info)
            except DemoError:
                prog.done()
                raise
        if time.monotonic() > deadline:
            prog.done()
            raise DemoError("migration did not complete within %d s (status %s, %.1f %% done); "
                            "raise --timeout if the machine is just slow" % (opts.timeout, status, pct))
        time.sleep(0.05)
    prog.done()
    # The destination finishes loading after the source reports completion.
    while True:
        dinfo = dst.qmp.cmd("query-migrate")
        if dinfo.get("status") == "completed":
            break
        if dinfo.get("status") in ("failed", "cancelled"):
            raise DemoError("destination: migration %s: %s" % (dinfo["status"], dinfo.get("error-desc")))
        if time.monotonic() > deadline:
            raise DemoError("destination did not finish loading within %d s (status %s)"
                            % (opts.timeout, dinfo.get("status")))
        if not dst.alive():
            raise DemoError(dst.died_msg())
        time.sleep(0.02)
    return info, time.monotonic() - t0


def counters(info, size, cpu, wall, other):
    ram = info["ram"]
    total_ms = info.get("total-time", 0)
    setup_ms = info.get("setup-time", 0)
    xfer_s = max(total_ms - setup_ms, 1) / 1000.0
    return {
        "total_ms": total_ms, "downtime_ms": info.get("downtime"), "setup_ms": setup_ms,
        "mbps": ram.get("mbps"), "qemu_pages_per_second": ram.get("pages-per-second"),
        "pages_per_second": (ram.get("normal", 0) + ram.get("duplicate", 0)) / xfer_s,
        "wire_bytes": ram.get("transferred"), "ram_bytes": ram.get("total"),
        "wire_ratio": ram.get("transferred", 0) / float(ram.get("total") or size),
        "normal_pages": ram.get("normal"), "zero_pages": ram.get("duplicate"),
        "multifd_bytes": ram.get("multifd-bytes"), "dirty_syncs": ram.get("dirty-sync-count"),
        "src_cpu_s": cpu[0], "dst_cpu_s": cpu[1],
        "src_cpu_pct": 100.0 * cpu[0] / max(total_ms / 1000.0, 1e-3),
        "dst_cpu_pct": 100.0 * cpu[1] / max(total_ms / 1000.0, 1e-3),
        "wall_s": wall, "other_cpu_s": other, "other_cpu_pct": 100.0 * other / max(wall, 1e-3),
    }


def verify_ram(src, dst, size, image, image_info, running):
    """Proof: the destination's guest RAM equals the source's.  A paused guest's also equals the
    image; a running guest's differs from it in the pages the firmware and the guest wrote."""
    s_addr, s_len = ram_block(src, size, image)
    d_addr, d_len = ram_block(dst, size, None)
    if os.environ.get("QPL_DEMO_CORRUPT_DST"):
        # Self-test of the verification: flip one byte of the destination's RAM.
        off = int(os.environ["QPL_DEMO_CORRUPT_DST"], 0) % size
        with open("/proc/%d/mem" % dst.pid, "r+b", buffering=0) as f:
            f.seek(d_addr + off)
            b = f.read(1)
            f.seek(d_addr + off)
            f.write(bytes([b[0] ^ 0xFF]))
        log("  QPL_DEMO_CORRUPT_DST: flipped the destination's RAM byte at 0x%x" % off)
    if running and os.environ.get("QPL_DEMO_RESUME_DST"):
        # Self-test: let the destination's guest run on, so its RAM moves away from the source's.
        dst.qmp.cmd("cont")
        time.sleep(0.5)
        log("  QPL_DEMO_RESUME_DST: the destination's guest ran for 0.5 s before the check")
    hashes = {}
    ts = [threading.Thread(target=hash_mem, args=(src.pid, s_addr, s_len, hashes, "src",
                                                  image if running else None)),
          threading.Thread(target=hash_mem, args=(dst.pid, d_addr, d_len, hashes, "dst"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k in ("src", "dst"):
        if isinstance(hashes[k], Exception):
            raise DemoError("could not read the %s QEMU's guest RAM from /proc/PID/mem: %s (run as root: "
                            "reading another process's memory needs ptrace rights)" % (k, hashes[k]))
    out = {"src_sha256": hashes["src"], "dst_sha256": hashes["dst"],
           "image_sha256": image_info["sha256"],
           "ram_equal": hashes["src"] == hashes["dst"],
           "src_equals_image": hashes["src"] == image_info["sha256"]}
    if "src_changed" in hashes:
        out["pages_changed_from_image"] = hashes["src_changed"]
    if not out["ram_equal"]:
        n, first, detail = diff_pages((src.pid, s_addr), (dst.pid, d_addr), size)
        out["differing_pages"] = n
        out["first_differing_offsets"] = ["0x%x" % o for o in first]
        out["first_differing_bytes"] = ["0x%x: src %02x dst %02x" % d for d in detail]
    return out


def break_guest_later(live, delay):
    """Self-test of the crash detection: clear the guest's timer gate `delay` seconds into the
    migration; its next tick then faults with no handler left, i.e. a triple fault."""
    def clobber():
        time.sleep(delay)
        try:
            with open("/proc/%d/mem" % live.src.pid, "r+b", buffering=0) as f:
                f.seek(live.hva + running_guest.TIMER_GATE_GPA)
                f.write(bytes(8))
            log("  QPL_DEMO_BREAK_GUEST: cleared the source guest's timer gate")
        except OSError as e:
            log("  QPL_DEMO_BREAK_GUEST: could not write the guest's memory: %s" % e)
    threading.Thread(target=clobber, daemon=True).start()


def run_one(spec, channels, opts, image, image_info, workdir, label):
    size = opts.size
    method = spec["method"]
    running = opts.guest == "running"
    src = dst = None
    result = {"method": spec["name"], "compression": method, "channels": channels,
              "src": spec["src_label"], "dst": spec["dst_label"],
              "src_binary": spec["src"], "dst_binary": spec["dst"], "guest_mode": opts.guest,
              "dst_prealloc": opts.dst_prealloc}
    try:
        phase("%s: starting both QEMUs" % label)
        src, dst = start_pair(spec, opts, image, workdir)
        dst.connect()
        src.connect()
        configure(src, dst, method, channels, opts, result, spec.get("qpl_level"))
        result["qpl_level"] = spec.get("qpl_level")
        live = None
        if running:
            phase("%s: booting the guest program" % label)
            hva, _ = ram_block(src, size, image)
            live = running_guest.LiveGuest(src, hva, opts.guest_cfg,
                                           os.path.join(workdir, "src-firmware.log"),
                                           opts.live_syncs, opts.converge_ms)
            t_boot = time.monotonic()
            live.wait_started(opts.boot_timeout)
            result["guest_boot_s"] = time.monotonic() - t_boot
            if os.environ.get("QPL_DEMO_BREAK_GUEST"):
                break_guest_later(live, float(os.environ["QPL_DEMO_BREAK_GUEST"]))
        port = start_incoming(dst, opts.port)
        result["port"] = port

        # The source's vCPU threads run the guest, not the migration: their CPU is counted apart.
        vcpus = src.vcpu_threads()
        t_cpu = (src.cpu_seconds(), dst.cpu_seconds(), src.vcpu_seconds(vcpus))
        t_busy = host_busy_seconds()
        info, wall = migrate(src, dst, port, opts, label, live)
        guest_cpu = src.vcpu_seconds(vcpus) - t_cpu[2]
        cpu = (src.cpu_seconds() - t_cpu[0] - guest_cpu, dst.cpu_seconds() - t_cpu[1])
        other = max(0.0, host_busy_seconds() - t_busy - cpu[0] - cpu[1] - guest_cpu)
        result.update(counters(info, size, cpu, wall, other))
        result["guest_cpu_s"] = guest_cpu
        if live:
            result.update(live.finish(info))
        phase("%s: comparing both sides' guest RAM (SHA-256)" % label)
        result.update(verify_ram(src, dst, size, image, image_info, running))
        if live and result["live_problems"] and result["ram_equal"]:
            raise DemoError("RAM equal, but this was no test of a running guest: "
                            + "; ".join(result["live_problems"]))
        return result
    finally:
        for q in (src, dst):
            if q is not None:
                q.stop()


# ---------------------------------------------------------------- methods and table

def parse_methods(text, default_src, default_dst):
    """'none,zstd,qpl,qpl-turbo,qpl-intel,qpl@ours:intel-qpl' -> run specs; qpl-LEVEL sets
    the source's multifd-qpl-level (fast, strong, turbo, auto)."""
    specs = []
    items = []
    for x in [x.strip() for x in text.split(",") if x.strip()]:
        # 'interop': qpl from our QEMU to upstream's on Intel QPL, and back.
        items += ["qpl@ours:intel-qpl", "qpl@intel-qpl:ours"] if x == "interop" else [x]
    for item in items:
        name = item
        level = None
        if item == "qpl-intel":
            method, s, d = "qpl", "intel-qpl", "intel-qpl"
        elif item in ("qpl-fast", "qpl-strong", "qpl-turbo", "qpl-auto"):
            # Our qpl at a multifd-qpl-level (set on the source only).
            method, s, d = "qpl", default_src, default_dst
            level = item.split("-", 1)[1]
        elif "@" in item:
            method, pair = item.split("@", 1)
            if ":" not in pair:
                raise DemoError("method %r: write METHOD@SRC:DST, e.g. qpl@ours:intel-qpl" % item)
            s, d = pair.split(":", 1)
        else:
            method, s, d = item, default_src, default_dst
        spath, slabel = resolve_binary(s)
        dpath, dlabel = resolve_binary(d)
        specs.append({"name": name, "method": method, "src": spath, "dst": dpath,
                      "src_label": slabel, "dst_label": dlabel, "qpl_level": level,
                      # Only the optional reference row is skipped quietly when its build is missing.
                      "optional": item == "qpl-intel"})
    return specs


def save_json(doc, path):
    """Writes the results document; False (with the reason on stderr) when it cannot."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        log("error: could not write the results to %s: %s" % (path, e))
        return False
    phase("results: %s" % path)
    return True


def chart(doc, path):
    """Draws the chart; a failure is reported, never fatal (the results are already out)."""
    try:
        write_chart(doc, path)
        phase("chart: %s" % path)
    except Exception as e:  # noqa: BLE001 - any failure here must not cost the run
        log("warning: could not write the chart %s: %s" % (path, e))


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Real multifd live migrations between two local QEMUs; prints one table.",
        epilog="Methods: none, zlib, zstd, qpl (with --src-binary/--dst-binary, default ours), "
               "qpl-intel (qpl with the intel-qpl build on both ends), METHOD@SRC:DST, e.g. "
               "qpl@ours:intel-qpl, or interop (= qpl@ours:intel-qpl,qpl@intel-qpl:ours).  Binaries: ours, intel-qpl, system (qemu-system-x86_64 in PATH) "
               "or a path.  See docs/demo.md.")
    ap.add_argument("--size", type=parse_size, default=parse_size("2G"), help="guest RAM (default 2G)")
    ap.add_argument("--fill", type=float, default=0.9, help="fraction of RAM holding real data (0.9)")
    ap.add_argument("--channels", default="2", help="multifd channels; a list like 2,4 runs each (2)")
    ap.add_argument("--methods", default="none,zlib,zstd,qpl,qpl-fast,qpl-turbo,qpl-intel")
    ap.add_argument("--max-bandwidth", default="unlimited",
                    help="source max-bandwidth in bytes/s, e.g. 125000000 (1 Gbit/s) or 1G; a list like "
                         "unlimited,125000000 runs each (default: unlimited; make demo runs both)")
    ap.add_argument("--downtime-limit", type=int, default=None, metavar="MS",
                    help="source downtime-limit in ms (default: QEMU's, 300; upstream's tables used 100); "
                         "with a running guest, the limit it converges with after the live passes")
    ap.add_argument("--dst-prealloc", action="store_true",
                    help="preallocate the destination's RAM (prealloc=on, as -mem-prealloc does); "
                         "default: not preallocated")
    ap.add_argument("--guest", choices=["running", "paused"], default="running",
                    help="running: the source's guest keeps rewriting its RAM during the migration "
                         "(default); paused: the image is migrated untouched")
    ap.add_argument("--guest-hz", type=int, default=DEFAULT_GUEST_HZ,
                    help="running guest: timer ticks per second (%d)" % DEFAULT_GUEST_HZ)
    ap.add_argument("--guest-ops", type=int, default=DEFAULT_GUEST_OPS,
                    help="running guest: RAM operations per tick (%d)" % DEFAULT_GUEST_OPS)
    ap.add_argument("--guest-hot", type=parse_size, default=None, metavar="SIZE",
                    help="running guest: size of the region it writes, from 2 MiB up (default: a quarter "
                         "of the RAM)")
    ap.add_argument("--live-syncs", type=int, default=DEFAULT_LIVE_SYNCS, metavar="N",
                    help="running guest: until QEMU's dirty-sync-count reaches N, it may switch over "
                         "only after a pass that found no dirty page; then --downtime-limit applies (%d)"
                         % DEFAULT_LIVE_SYNCS)
    ap.add_argument("--repeat", type=int, default=1, help="runs per method; the table shows medians")
    ap.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    ap.add_argument("--src-binary", default=None, help="source QEMU: ours, intel-qpl, system or a path")
    ap.add_argument("--dst-binary", default=None, help="destination QEMU (default: as --src-binary)")
    ap.add_argument("--pair", default=None, help="SRC:DST shorthand, e.g. ours:intel-qpl")
    ap.add_argument("--port", type=int, default=0, help="fixed TCP port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds allowed per migration (600)")
    ap.add_argument("--json", action="store_true", help="print JSON on stdout instead of the table")
    ap.add_argument("--save", metavar="FILE", action="append",
                    help="also write the JSON document to FILE (may be given more than once)")
    ap.add_argument("--chart", metavar="FILE.svg",
                    help="also draw the results as an SVG chart: total time, CPU seconds and wire bytes "
                         "per method (a chart that cannot be written is a warning, not an error)")
    ap.add_argument("--render", metavar="FILE",
                    help="print the table of a saved JSON document (and with --chart draw its chart) and exit")
    ap.add_argument("--rebuild-image", action="store_true", help="rebuild the cached guest RAM image")
    ap.add_argument("--keep", action="store_true", help="keep the QEMU logs and sockets directory")
    opts = ap.parse_args(argv)

    if opts.render:
        with open(opts.render) as f:
            doc = json.load(f)
        print(format_report(doc))
        if opts.chart:
            chart(doc, opts.chart)
        return EXIT_OK
    if opts.size % (2 << 20) or opts.size < (64 << 20):
        ap.error("--size must be a multiple of 2 MiB and at least 64M")
    if not 0.0 <= opts.fill <= 1.0:
        ap.error("--fill must be between 0 and 1")
    try:
        channels = [int(c) for c in opts.channels.split(",") if c.strip()]
    except ValueError:
        ap.error("--channels takes numbers, e.g. 2 or 2,4")
    if not channels or any(c < 1 or c > 255 for c in channels):
        ap.error("--channels must be between 1 and 255")
    if opts.repeat < 1:
        ap.error("--repeat must be at least 1")
    try:
        opts.bandwidths = [parse_bandwidth(b.strip()) for b in opts.max_bandwidth.split(",") if b.strip()]
    except argparse.ArgumentTypeError as e:
        ap.error("--max-bandwidth: %s" % e)
    if not opts.bandwidths:
        ap.error("--max-bandwidth takes byte rates, e.g. unlimited or unlimited,125000000")
    opts.max_bandwidth = opts.bandwidths[0]
    if opts.guest == "running":
        if opts.live_syncs < running_guest.MIN_LIVE_SYNCS:
            ap.error("--live-syncs must be at least %d (a paused guest already completes at 3)"
                     % running_guest.MIN_LIVE_SYNCS)
        try:
            opts.guest_cfg = running_guest.GuestConfig(opts.size, opts.guest_hz, opts.guest_ops,
                                                       opts.guest_hot)
        except DemoError as e:
            ap.error(str(e))
        opts.converge_ms = opts.downtime_limit if opts.downtime_limit is not None else 300
        opts.boot_timeout = 120
    src_default = opts.src_binary or "ours"
    dst_default = opts.dst_binary or opts.src_binary or "ours"
    if opts.pair:
        if ":" not in opts.pair:
            ap.error("--pair takes SRC:DST, e.g. ours:intel-qpl")
        src_default, dst_default = opts.pair.split(":", 1)

    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    workdir = tempfile.mkdtemp(prefix="qpl-demo-")
    code = EXIT_OK
    try:
        code = run(opts, channels, src_default, dst_default, workdir)
    except KeyboardInterrupt:
        log("\ninterrupted; stopping the QEMUs")
        code = 130
    except DemoError as e:
        log("error: %s" % e)
        code = EXIT_UNSUPPORTED if isinstance(e, Unsupported) else EXIT_ERROR
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        kill_all()
        if opts.keep:
            log("logs kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def run(opts, channels, src_default, dst_default, workdir):
    specs = parse_methods(opts.methods, src_default, dst_default)
    runnable, notes, failures = [], [], []
    for s in specs:
        missing = [p for p in (s["src"], s["dst"]) if not p or not os.access(p, os.X_OK)]
        if missing:
            m = missing[0] or "qemu-system-x86_64 in PATH"
            hint = ""
            for v in ("ours", "intel-qpl"):
                if m.endswith("/qemu-build/%s/qemu-system-x86_64" % v):
                    hint = " (build it with: scripts/build-qemu.sh %s)" % v
            msg = "%s: QEMU binary %s is missing%s" % (s["name"], m, hint)
            if s["optional"]:
                notes.append("skipped " + msg)
                log("note: skipped " + msg)
            else:
                failures.append(msg)
                log("error: " + msg)
            continue
        runnable.append(s)
    opts.started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load1 = os.getloadavg()[0]
    if load1 > 0.5:
        log("note: the machine is busy (load average %.1f); the figures will be noisy" % load1)
    if not runnable:
        raise DemoError("nothing to run: every method's QEMU binary is missing. Build ours with "
                        "scripts/build-qemu.sh ours, or try Debian's QEMU with --src-binary system "
                        "--methods none,zlib,zstd")

    opts.accel_auto = opts.accel == "auto"
    if opts.accel == "auto":
        ok, why = kvm_usable()
        opts.accel = "kvm" if ok else "tcg"
        accel_note = "kvm (/dev/kvm works)" if ok else "tcg (no KVM: %s)" % why
    else:
        accel_note = opts.accel + " (forced)"
    phase("accelerator: " + accel_note)
    opts.firmware = firmware_dir()
    phase("guest RAM image: %s, %.0f %% real data" % (fmt_size(opts.size), opts.fill * 100))
    image, image_info = prepare_image(opts.size, opts.fill, opts.rebuild_image)
    if opts.guest == "running":
        running_guest.boot_sector()  # assemble it now: a missing assembler is one error, not one per run
        phase("guest: " + opts.guest_cfg.describe())

    # Every method at one bandwidth, then the next: a cap never sits between two methods compared.
    jobs = [(s, ch, bw) for bw in opts.bandwidths for s in runnable for ch in channels]
    many_bw = len(opts.bandwidths) > 1
    results, unsupported = {}, []
    bad = set()
    total_runs = len(jobs) * opts.repeat
    n = 0
    for rep in range(opts.repeat):
        for s, ch, bw in jobs:
            key = (s["name"], ch, bw)
            n += 1
            if key in bad:
                continue
            opts.max_bandwidth = bw
            label = "run %d/%d %s ch=%d %s%s→%s" % (n, total_runs, s["name"], ch,
                                                   ("max-bw %s " % fmt_bandwidth(bw)) if many_bw else "",
                                                   s["src_label"], s["dst_label"])
            try:
                try:
                    r = run_one(s, ch, opts, image, image_info, workdir, label)
                except DemoError as e:
                    if not (opts.accel_auto and opts.accel == "kvm" and "while starting" in str(e)
                            and "kvm" in str(e).lower()):
                        raise
                    why = str(e).strip().splitlines()[-1].strip(" |")
                    log("  KVM did not work for QEMU (%s); falling back to TCG for all runs" % why)
                    opts.accel = "tcg"
                    accel_note = "tcg (KVM failed: %s)" % why
                    r = run_one(s, ch, opts, image, image_info, workdir, label)
            except Unsupported as e:
                log("  unsupported: %s" % e)
                unsupported.append("%s: %s" % (s["name"], e))
                bad.add(key)
                continue
            except DemoError as e:
                log("  FAILED: %s" % e)
                failures.append("%s ch=%d max-bw %s run %d: %s" % (s["name"], ch, fmt_bandwidth(bw), rep + 1, e))
                bad.add(key)
                continue
            r["run"] = rep + 1
            r["max_bandwidth"] = bw
            results.setdefault(key, []).append(r)
            live = ""
            if r.get("guest_mode") == "running":
                live = ", %d passes, %d pages resent, %d guest ops" % (
                    r["dirty_syncs"], r["resent_pages"], r["guest_ops"])
            phase("%s: done: %d ms, %s MiB on the wire%s, RAM %s"
                  % (label, r["total_ms"], fmt_mib(r["wire_bytes"]), live,
                     "equal" if r["ram_equal"] else "DIFFERS"))

    rows = [median_row(results[(s["name"], ch, bw)]) for s, ch, bw in jobs if (s["name"], ch, bw) in results]
    mismatch = [r for runs in results.values() for r in runs if not r["ram_equal"]]
    host = os.uname()
    header = {
        "date": opts.started, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([os.path.relpath(sys.argv[0], REPO) if sys.argv[0].startswith(REPO)
                             else sys.argv[0]] + sys.argv[1:]),
        "load_average_at_start": load1,
        "host": "%s, %d CPUs" % (host.release, os.cpu_count()),
        "accel": opts.accel, "accel_note": accel_note, "guest_ram": opts.size, "fill": opts.fill,
        "image": image, "image_sha256": image_info["sha256"], "image_data_bytes": image_info["data_bytes"],
        "max_bandwidth": opts.bandwidths, "downtime_limit": opts.downtime_limit, "repeat": opts.repeat,
        "guest": opts.guest,
    }
    if opts.guest == "running":
        header.update({"guest_desc": opts.guest_cfg.describe(), "guest_config": opts.guest_cfg.as_dict(),
                       "live_syncs": opts.live_syncs, "converge_ms": opts.converge_ms})
    doc = {"header": header, "rows": rows,
           "runs": [r for s, ch, bw in jobs for r in results.get((s["name"], ch, bw), [])],
           "notes": notes, "unsupported": unsupported, "failures": failures}
    if opts.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_report(doc))
    sys.stdout.flush()
    unsaved = [path for path in opts.save or [] if not save_json(doc, path)]
    if opts.chart:
        chart(doc, opts.chart)
    if mismatch:
        log("error: destination RAM differs from source RAM in %d run(s): the migration lost or corrupted "
            "data (see the MISMATCH lines)" % len(mismatch))
        return EXIT_MISMATCH
    if failures or unsaved:
        return EXIT_ERROR
    if unsupported:
        return EXIT_UNSUPPORTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
