#!/usr/bin/env python3
"""hostile-test: corrupt one qpl packet in flight between two real QEMUs, one case at a time.

One source QEMU runs the demo's guest program (it keeps rewriting its RAM).  For each case a
fresh destination QEMU waits, and the source migrates with multifd + qpl through a relay of
ours (corrupt_proxy.py) that changes exactly one qpl packet of the migration.  The test
expects: the migration fails; the destination's error names qpl, the channel and the page's
RAMBlock and offset (or the packet field); the destination is alive, not killed by a signal;
the source keeps running its guest; and a clean retry of the same source to a fresh
destination, without the relay, completes with both sides' guest RAM hashed equal.

Before the cases the relay carries one migration untouched (its parser must understand every
packet, and the RAM must arrive equal); after them, one bit flip that still inflates to one
page shows what no receiver can detect.  docs/hostile-input.md explains every case.

Standard library only; needs root (it reads the QEMUs' memory) and the demo's QEMU build.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the script in the checkout

import corrupt_proxy  # noqa: E402
import running_guest  # noqa: E402
from demo_common import PAGE, DemoError, fmt_size, log, parse_size  # noqa: E402
from guest_ram import ram_block  # noqa: E402
from qemu_proc import kill_all, kvm_usable, qpl_libraries, start_incoming  # noqa: E402
from ram_image import prepare_image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

# The eight corruptions of issue #15, in the order they run.
CASES = [
    ("length-above-page", "one page's length set to the page size + 1"),
    ("lengths-mismatch", "one page's length one byte short, so the lengths no longer add up to the body"),
    ("zero-length", "one page's length set to 0"),
    ("truncated-stream", "the second half of one page's DEFLATE stream dropped (length and body size "
                         "say so, the framing stays consistent)"),
    ("bit-flip", "one bit flipped inside one compressed page (a flip zlib's inflate rejects)"),
    ("inflates-past-page", "one page replaced by a real DEFLATE stream of two pages, shorter than a page"),
    ("too-many-pages", "pages_alloc and normal_pages one above the pages a packet holds"),
    ("huge-payload", "next_packet_size set to 0xffffffff"),
]
# Beyond the eight: the TCP stream of one channel ends in the middle of a packet's pages.
CUT = ("cut-payload", "one channel's connection closed in the middle of a packet's pages")
SILENT = ("silent-flip", "one bit flipped inside one compressed page so that it still inflates to one "
                         "page (expected to go unnoticed)")

# What each page-level fault must be called, as a regular expression (the library's words).
PAGE_FAULTS = {
    "length-above-page": r"length %d exceeds the page size %d" % (PAGE + 1, PAGE),
    "zero-length": r"length 0 is not a DEFLATE stream",
    "truncated-stream": r"DEFLATE stream ends before its final block",
    "bit-flip": r"(corrupt DEFLATE stream|DEFLATE stream ends before its final block|DEFLATE stream "
                r"inflates to|bytes follow the final DEFLATE block)",
    "inflates-past-page": r"DEFLATE stream inflates to more than the page size %d" % PAGE,
}


def expected_error(case, rec):
    """THE rule for what the destination's migration error must say about the packet the relay
    corrupted (`rec`, the relay's record of it): a list of (what, regular expression), every one
    of which must be found in the destination's error-desc.

    - A fault in one page names qpl, the channel, the page's index in the packet, the fault,
      and the page's RAMBlock and offset as QEMU's shim appends them
      ("[RAMBlock 'ram0', offset 0x...]"), all equal to what the relay changed.
    - A fault of the body's framing names qpl, the channel and the numbers that disagree, the
      header's next_packet_size among them.
    - A connection that ends inside a packet is reported by QEMU's I/O layer (end of file),
      which names neither qpl nor the channel.
    - A header field multifd checks before the qpl code sees the packet (the page count) is
      reported by QEMU's own multifd code, which names the field's value and the maximum but
      neither qpl nor the channel."""
    channel = re.escape("qpl: multifd channel %d: " % rec["channel"])
    if rec["kind"] == "page":
        return [("names qpl and the channel", channel),
                ("names the page and the fault", channel + re.escape("page %d: " % rec["page"])
                 + PAGE_FAULTS[case]),
                ("names the RAMBlock and offset", re.escape("[RAMBlock '%s', offset 0x%x]"
                                                            % (rec["ramblock"], rec["offset"])))]
    if rec["kind"] == "packet":
        return [("names qpl and the channel", channel),
                ("names the packet field", channel + re.escape(
                    "page lengths add up to %d bytes but the payload size in the packet header "
                    "leaves %d bytes after the length array"
                    % (rec["sum"], rec["announced"])))]
    if rec["kind"] == "cut":
        # The cut channel's reader and the main channel race to notice: the
        # destination reports the end of file on the multifd channel, or the
        # main stream's broken section that the source's abort leaves.
        return [("says a stream ended early", "|".join([
            re.escape("Unexpected end-of-file before all data were read"),
            re.escape("Section footer error")]))]
    if rec["kind"] == "header":
        return [("names the packet field", re.escape("multifd: received packet with %d pages, expected %d"
                                                     % (rec["value"], rec["max"])))]
    raise DemoError("no expected error for a %s fault" % rec["kind"])


def load_demo():
    """qpl-demo.py as a module: its QEMU setup, migration loop and RAM check are reused."""
    spec = importlib.util.spec_from_file_location("qpl_demo", os.path.join(HERE, "qpl-demo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


demo = load_demo()


class Run:
    """What every case shares: the options, the one source QEMU and its guest."""

    def __init__(self, opts, image, image_info, workdir):
        self.opts, self.image, self.image_info, self.workdir = opts, image, image_info, workdir
        self.src_bin, self.src_label = demo.resolve_binary(opts.src_binary)
        self.dst_bin, self.dst_label = demo.resolve_binary(opts.dst_binary)
        for b in (self.src_bin, self.dst_bin):
            if not b or not os.access(b, os.X_OK):
                raise DemoError("QEMU binary %s is missing (build it with scripts/build-qemu.sh ours)" % b)
        self.disk = demo.guest_disk(opts, workdir)
        self.src = None

    def start_source(self):
        self.src = demo.start_source(self.src_bin, self.opts, self.image, self.workdir, self.disk)
        self.src.connect()
        self.hva, _ = ram_block(self.src, self.opts.size, self.image)
        t = time.monotonic()
        self.live().wait_started(120)
        log("source guest running after %.1f s (pid %d)" % (time.monotonic() - t, self.src.pid))

    def builds(self):
        """Which QEMU binaries and qpl library this run used, for the record."""
        out = {}
        for role, path in (("src", self.src_bin), ("dst", self.dst_bin)):
            with open(path, "rb") as f:
                out[role] = "%s (sha256 %s)" % (path, hashlib.sha256(f.read()).hexdigest()[:12])
        out["qpl_library"] = qpl_libraries(self.src.pid)
        return out

    def live(self):
        """A fresh watcher of the source's guest (and pacer of one migration)."""
        return running_guest.LiveGuest(self.src, self.hva, self.opts.guest_cfg,
                                       os.path.join(self.workdir, "src-firmware.log"),
                                       self.opts.live_syncs, self.opts.converge_ms)

    def destination(self, name, exit_on_error=False):
        d = os.path.join(self.workdir, name)
        os.makedirs(d, exist_ok=True)
        dst = demo.start_destination(self.dst_bin, self.opts, d, self.disk)
        dst.connect()
        demo.configure(self.src, dst, "qpl", self.opts.channels, self.opts, {})
        return dst, start_incoming(dst, 0, exit_on_error)

    def source_running(self):
        """(ok, detail): the source's guest runs: query-status says so and its heartbeat moves."""
        if not self.src.alive():
            return False, self.src.died_msg()
        st = self.src.qmp.cmd("query-status")
        live = self.live()
        t0 = time.monotonic()
        try:
            a = b = live.check(expect_progress=False)
            # A busy host may hold the vCPU back for a while: give the heartbeat a few seconds.
            while b == a and time.monotonic() - t0 < 5:
                time.sleep(0.25)
                b = live.check(expect_progress=False)
        except DemoError as e:
            return False, str(e)
        ok = st.get("running") and st.get("status") == "running" and b > a
        return ok, "query-status %s, heartbeat %d -> %d in %.2f s" % (st.get("status"), a, b,
                                                                      time.monotonic() - t0)

    def resume_source(self):
        """After a completed migration the source is paused (postmigrate): run its guest on."""
        if self.src.qmp.cmd("query-status").get("status") != "running":
            self.src.qmp.cmd("cont")
        ok, detail = self.source_running()
        if not ok:
            raise DemoError("the source did not run again after `cont`: %s" % detail)


def wait_source(run, live, timeout):
    """query-migrate on the source until the migration ends; its last answer (status 'timeout'
    if it did not end)."""
    deadline = time.monotonic() + timeout
    while True:
        if not run.src.alive():
            raise DemoError("the source died: " + run.src.died_msg())
        info = run.src.qmp.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            return info
        live.poll(info)
        if time.monotonic() > deadline:
            run.src.qmp.cmd("migrate_cancel")
            info["status"] = "timeout"
            return info
        time.sleep(0.05)


def wait_destination(dst, exit_on_error, timeout=20):
    """The destination's status and error once it has failed or completed: from query-migrate,
    or, for a destination that exits on error, from its exit and its last error line."""
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        if not dst.alive():
            break
        if not exit_on_error:
            try:
                info = dst.qmp.cmd("query-migrate", timeout=5)
            except DemoError:
                break
            if info.get("status") in ("failed", "completed"):
                return info
        time.sleep(0.05)
    if exit_on_error and not dst.alive() and dst.proc.returncode == 1:
        prefix = os.path.basename(dst.binary) + ": "
        errors = [line[len(prefix):] for line in log_lines(dst.logpath, 1000)
                  if line.startswith(prefix) and not line.startswith(prefix + "warning:")]
        return {"status": "failed", "error-desc": errors[-1] if errors else None}
    return info


def log_lines(path, n=6):
    try:
        with open(path, errors="replace") as f:
            return [line for line in f.read().splitlines() if line.strip()][-n:]
    except OSError:
        return []


class Case:
    def __init__(self, name, what):
        self.name, self.what = name, what
        self.checks = []       # (check, ok, detail)
        self.data = {"case": name, "corruption": what}

    def check(self, what, ok, detail=""):
        self.checks.append((what, bool(ok), detail))
        log("  %s %s%s" % ("ok  " if ok else "FAIL", what, (": " + detail) if detail else ""))
        return ok

    def passed(self):
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def as_dict(self):
        d = dict(self.data)
        d["checks"] = [{"check": c, "ok": ok, "detail": det} for c, ok, det in self.checks]
        d["passed"] = self.passed()
        return d


def relay_for(run, port, name):
    opts = run.opts
    cfg = opts.guest_cfg
    target = corrupt_proxy.Target()
    if name == "silent-flip":
        # A page the guest never writes (above its hot region, below SeaBIOS's tables at the top
        # of RAM), so that no later pass sends it again and the flip stays in the destination.
        target = corrupt_proxy.Target(cfg.hot_lo + cfg.hot_len, running_guest.low_ram_top(opts.size) - (4 << 20))
    corruption = corrupt_proxy.CORRUPTIONS.get(name)
    return corrupt_proxy.Relay(port, corruption, target=target, noop=opts.noop_corruption)


def describe(rec):
    if rec is None:
        return "nothing (no packet suited the corruption)"
    where = "channel %d, packet %d (%d normal pages)" % (rec["channel"], rec["packet_num"], rec["normal_pages"])
    if "offset" in rec:
        where += ", page %d = RAMBlock '%s' offset 0x%x" % (rec["page"], rec["ramblock"], rec["offset"])
    elif "page" in rec:
        where += ", page %d" % rec["page"]
    skip = {"kind", "channel", "packet_num", "normal_pages", "page", "offset", "ramblock", "noop",
            "qpl_packet_index"}
    return where + "; " + ", ".join("%s %s" % (k, hex(v) if k == "next_packet_size" else v)
                                    for k, v in sorted(rec.items()) if k not in skip) + (
        " (NOOP: sent unchanged)" if rec.get("noop") else "")


def clean_retry(run, case):
    """The same source to a fresh destination, no relay: it must complete with RAM equal."""
    dst, port = run.destination(case.name + "-retry")
    try:
        info, wall = demo.migrate(run.src, dst, port, run.opts, "  retry", run.live())
        ver = demo.verify_ram(run.src, dst, run.opts.size, run.image, run.image_info, True)
        case.data["retry"] = {"total_ms": info.get("total-time"), "passes": info["ram"].get("dirty-sync-count"),
                              "src_sha256": ver["src_sha256"], "dst_sha256": ver["dst_sha256"]}
        case.check("clean retry to a fresh destination completed with RAM equal", ver["ram_equal"],
                   "%d ms, %d passes, sha256 src %s, dst %s" % (
                       info.get("total-time", 0), info["ram"].get("dirty-sync-count", 0),
                       ver["src_sha256"][:16], ver["dst_sha256"][:16]))
    except DemoError as e:
        case.check("clean retry to a fresh destination completed with RAM equal", False, str(e))
    finally:
        dst.stop()
    run.resume_source()


def through_relay_complete(run, case):
    """A migration through the relay that must complete (control, silent flip); the RAM check."""
    dst, port = run.destination(case.name)
    relay = relay_for(run, port, case.name)
    try:
        info, wall = demo.migrate(run.src, dst, relay.port, run.opts, "  " + case.name, run.live())
        ver = demo.verify_ram(run.src, dst, run.opts.size, run.image, run.image_info, True)
    except DemoError as e:
        case.check("migration through the relay completed", False, str(e))
        return None, relay
    finally:
        relay.close()
        dst.stop()
    case.data["relay"] = {"record": relay.record, "problems": relay.problems, "stats": relay.stats}
    case.check("the relay parsed every packet", not relay.problems, "; ".join(relay.problems))
    case.check("migration through the relay completed", True, "%d ms, %d passes" % (
        info.get("total-time", 0), info["ram"].get("dirty-sync-count", 0)))
    case.data["ram"] = ver
    run.resume_source()
    return ver, relay


def run_control(run):
    case = Case("control", "relay, no corruption")
    log("[control] the relay passes a migration through untouched")
    ver, relay = through_relay_complete(run, case)
    if ver is not None:
        chans = relay.stats["channels"]
        case.check("every multifd channel carried qpl packets through the relay parser",
                   len(chans) == run.opts.channels and all(c["qpl_packets"] > 0 for c in chans.values()),
                   ", ".join("channel %d: %d packets (%d qpl, %d sync), %d bytes" % (
                       ch, c["packets"], c["qpl_packets"], c["sync_packets"], c["bytes"])
                       for ch, c in sorted(chans.items())))
        case.check("RAM equal", ver["ram_equal"], "sha256 src %s, dst %s" % (ver["src_sha256"][:16],
                                                                             ver["dst_sha256"][:16]))
    return case


def run_silent(run):
    case = Case(*SILENT)
    log("[%s] %s" % (case.name, case.what))
    ver, relay = through_relay_complete(run, case)
    rec = relay.record
    case.data["record"] = rec
    log("  relay changed: " + describe(rec))
    if ver is None or not case.check("the relay found a packet to corrupt", rec is not None,
                                     "--noop-corruption: sent unchanged" if rec and rec.get("noop") else ""):
        return case
    n = ver.get("differing_pages", 0)
    first = ver.get("first_differing_offsets", [])
    case.check("the destination accepted the packet: RAM differs in exactly the flipped page",
               n == 1 and first == ["0x%x" % rec["offset"]],
               "%d page(s) differ, first at %s; flipped page at 0x%x%s" % (
                   n, ", ".join(first) or "-", rec["offset"],
                   "; bytes " + ", ".join(ver.get("first_differing_bytes", [])) if n else ""))
    return case


def run_hostile(run, name, what):
    case = Case(name, what)
    log("[%s] %s" % (name, what))
    opts = run.opts
    dst, port = run.destination(name, opts.exit_on_error)
    relay = relay_for(run, port, name)
    live = run.live()
    try:
        live.begin()
        run.src.qmp.cmd("migrate", uri="tcp:127.0.0.1:%d" % relay.port)
        sinfo = wait_source(run, live, opts.timeout)
        dinfo = wait_destination(dst, opts.exit_on_error)
    finally:
        relay.close()
    rec = relay.record
    case.data.update({"record": rec, "relay_problems": relay.problems,
                      "src_status": sinfo.get("status"), "src_error": sinfo.get("error-desc"),
                      "dst_status": (dinfo or {}).get("status"), "dst_error": (dinfo or {}).get("error-desc")})
    log("  relay changed: " + describe(rec))
    case.check("the relay parsed every packet", not relay.problems, "; ".join(relay.problems))
    case.check("the relay found a packet to corrupt", rec is not None,
               "" if rec is None else "--noop-corruption: sent unchanged" if rec.get("noop") else "")
    dst_alive = dst.alive()
    dst_exited = not dst_alive and dst.proc.returncode == 1 and opts.exit_on_error
    dst_status = (dinfo or {}).get("status") or ("dead" if not dst_alive else "no answer")
    case.check("the migration failed", sinfo.get("status") == "failed" and dst_status != "completed",
               "source %s (%s); destination %s" % (sinfo.get("status"), sinfo.get("error-desc", "no error"),
                                                   dst_status))
    error = (dinfo or {}).get("error-desc") or ""
    log("  destination %s: %s" % ("printed" if opts.exit_on_error else "says", error or "(nothing)"))
    case.data["dst_log"] = log_lines(dst.logpath)
    if rec is not None and error:
        for what, regex in expected_error(name, rec):
            case.check("destination error " + what, re.search(regex, error), "" if re.search(regex, error)
                       else "expected /%s/" % regex)
    else:
        case.check("destination reported an error", bool(error), "no error-desc from the destination")
    dst.stop()
    code = dst.proc.returncode
    case.data["dst_exit"] = code
    if not dst_alive and not dst_exited:
        last = ([line for line in case.data["dst_log"] if "qemu-system" in line] or case.data["dst_log"]
                or ["(empty log)"])
        case.data["dst_error"] = "(died, exit status %s) %s" % (code, last[-1])
    if dst_exited:
        detail = "it printed the error and exited with status 1, as -incoming's exit-on-error asks"
    elif dst_alive:
        detail = "alive after the failure, exit status %d after quit" % code
    else:
        detail = "it died: exit status %s%s; its log: %s" % (
            code, " (signal %d)" % -code if code is not None and code < 0 else "",
            " | ".join(case.data["dst_log"]) or "(empty)")
    case.check("destination was not killed by a signal", dst_exited or (dst_alive and code == 0), detail)
    if sinfo.get("status") == "completed":
        run.resume_source()
    ok, detail = run.source_running()
    case.check("source still running its guest", ok, detail)
    if not ok:
        raise DemoError("the source does not run any more (%s); later cases cannot use it" % detail)
    clean_retry(run, case)
    return case


def summary(cases):
    rows = [("case", "result", "destination's error (or what was checked)")]
    for c in cases:
        err = c.data.get("dst_error")
        if err is None and c.name == "control":
            err = "relay untouched; RAM equal" if c.passed() else "see above"
        elif err is None and c.name == SILENT[0]:
            err = "migration completed; RAM differs in the flipped page only" if c.passed() else "see above"
        failed = [w for w, ok, _ in c.checks if not ok]
        rows.append((c.name, "pass" if c.passed() else "FAIL: " + "; ".join(failed), err or "-"))
    w = [max(len(r[i]) for r in rows) for i in range(2)]
    out = ["%-*s  %-*s  %s" % (w[0], r[0], w[1], r[1], r[2]) for r in rows]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Corrupt one qpl packet in flight per case between real QEMUs "
                                             "(docs/hostile-input.md).")
    names = ["control"] + [n for n, _ in CASES] + [CUT[0], SILENT[0]]
    ap.add_argument("--cases", default="all",
                    help="comma list of: %s; 'all' = all of them, in this order; 'faults' = those "
                         "that must fail the migration (all but control and silent-flip)" % ", ".join(names))
    ap.add_argument("--size", type=parse_size, default=parse_size("256M"), help="guest RAM (256M)")
    ap.add_argument("--channels", type=int, default=2, help="multifd channels (2)")
    ap.add_argument("--src-binary", default="ours", help="source QEMU: ours, intel-qpl, system or a path")
    ap.add_argument("--dst-binary", default="ours", help="destination QEMU (ours)")
    ap.add_argument("--timeout", type=int, default=120, help="seconds allowed per migration (120)")
    ap.add_argument("--exit-on-error", action="store_true",
                    help="destinations keep QEMU's default for a failed incoming migration: print the "
                         "error and exit (checked: exit status 1 and the error on stderr); without it "
                         "they stay up and the error is read with query-migrate")
    ap.add_argument("--noop-corruption", action="store_true",
                    help="self-check: the relay picks its packet but sends it unchanged; every "
                         "corruption case must then fail")
    ap.add_argument("--save", metavar="FILE", help="write the results as JSON to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the QEMU logs and sockets directory")
    opts = ap.parse_args(argv)
    groups = {"all": names, "faults": [n for n in names if n not in ("control", SILENT[0])]}
    wanted = [n for c in opts.cases.split(",") if c.strip() for n in groups.get(c.strip(), [c.strip()])]
    unknown = [c for c in wanted if c not in names]
    if unknown:
        ap.error("unknown case(s) %s; known: %s" % (", ".join(unknown), ", ".join(names)))
    if os.geteuid() != 0:
        ap.error("run as root: the RAM check reads the QEMUs' memory through /proc/PID/mem")

    # The demo's options, as its functions expect them: a running guest, paced as in the demo.
    opts.guest, opts.fill = "running", 0.9
    opts.guest_cfg = running_guest.GuestConfig(opts.size, demo.DEFAULT_GUEST_HZ, demo.DEFAULT_GUEST_OPS)
    opts.live_syncs, opts.converge_ms = demo.DEFAULT_LIVE_SYNCS, 300
    opts.max_bandwidth = opts.downtime_limit = None
    opts.port = 0
    ok, why = kvm_usable()
    opts.accel = "kvm" if ok else "tcg"

    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    workdir = tempfile.mkdtemp(prefix="qpl-hostile-")
    t0 = time.monotonic()
    cases, code, builds = [], EXIT_OK, {}
    try:
        opts.firmware = demo.firmware_dir()
        image, image_info = prepare_image(opts.size, opts.fill)
        run = Run(opts, image, image_info, workdir)
        log("hostile-test: %s guest, %d channels, source %s, destination %s (%s), accel %s%s"
            % (fmt_size(opts.size), opts.channels, run.src_label, run.dst_label,
               "exits on error" if opts.exit_on_error else "stays up on error", opts.accel,
               "" if ok else " (%s)" % why))
        run.start_source()
        builds = run.builds()
        for k, v in sorted(builds.items()):
            log("%s: %s" % (k, "; ".join(v) if isinstance(v, list) else v))
        for name in wanted:
            if name == "control":
                cases.append(run_control(run))
            elif name == SILENT[0]:
                cases.append(run_silent(run))
            else:
                cases.append(run_hostile(run, name, dict(CASES + [CUT])[name]))
    except KeyboardInterrupt:
        log("\ninterrupted; stopping the QEMUs")
        code = 130
    except DemoError as e:
        log("error: %s" % e)
        code = EXIT_ERROR
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        kill_all()
        if opts.keep:
            log("logs kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - t0
    print(summary(cases))
    failed = [c.name for c in cases if not c.passed()]
    if failed:
        verdict = "FAILED: " + ", ".join(failed)
    else:
        verdict = "all passed" if code == EXIT_OK else "stopped early"
    print("%d case(s) in %.0f s: %s" % (len(cases), elapsed, verdict))
    if opts.save:
        with open(opts.save, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": elapsed,
                       "src": opts.src_binary, "dst": opts.dst_binary, "builds": builds, "size": opts.size,
                       "noop_corruption": opts.noop_corruption, "exit_on_error": opts.exit_on_error,
                       "cases": [c.as_dict() for c in cases]}, f, indent=1)
            f.write("\n")
    if code != EXIT_OK:
        return code
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
