"""The running guest of qpl-demo: a boot sector of our own that keeps rewriting guest RAM
while the migration runs, and the pacing that keeps the migration live for a few passes.

The guest program is tests/guest/dirtier.S (read its header for what it does).  This module
assembles it with binutils (cached by the source's SHA-256), patches its parameters into a
boot disk, watches its heartbeat in the source QEMU's memory, and steers QEMU's
downtime-limit: tiny until enough dirty-sync passes have run with the guest writing, then
large enough for the migration to converge.  docs/demo.md explains the numbers.
"""

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time

from demo_common import CACHE, REPO, DemoError, log

GUEST_SOURCE = os.path.join(REPO, "tests", "guest", "dirtier.S")
SECTOR = 512
PARAMS_OFFSET = SECTOR - 2 - 32   # eight u32 before the 0x55 0xaa signature (see dirtier.S)
PARAMS_FORMAT = "<8I"
HEARTBEAT_GPA = 0x1000            # {u32 magic, u32 bursts}: the guest's only write below 1 MiB
MAGIC = 0x474C5051                # "QPLG"
TIMER_GATE_GPA = 0x100000 + 0x20 * 8   # the IDT's timer gate in the guest's scratch page
RESERVED_LOW = 2 << 20            # BIOS, boot sector, heartbeat and scratch page live below
PIT_HZ = 1193182
DISK_SIZE = 1 << 20               # SeaBIOS does not boot a one-sector virtio disk
SEED = 0x2545F491                 # any non-zero xorshift32 state
# While live, QEMU may switch over only when a dirty-sync pass finds no dirty page at all:
# expected bandwidth 1000 B/s (1 byte/ms) x downtime-limit 1 ms = a threshold of 1 byte.
LIVE_DOWNTIME_MS = 1
LIVE_SWITCHOVER_BW = 1000
MAX_DOWNTIME_MS = 60000
# A paused guest completes at dirty-sync-count 3 (setup, after the first pass, final stop).
# 4 or more: a pass after the first one found pages the running guest had dirtied, and QEMU
# sent them again with the guest still running.
MIN_LIVE_SYNCS = 4
ESCALATE_AFTER_SYNCS = 20         # passes at one limit without converging before doubling it
STALL_SECONDS = 20.0              # heartbeat standing still this long while running: fail
BAD_EVENTS = ("RESET", "SHUTDOWN", "GUEST_PANICKED", "GUEST_CRASHLOADED")


# ---------------------------------------------------------------- the boot sector

def _check_sector(data, origin):
    if len(data) != SECTOR or data[510:] != b"\x55\xaa":
        raise DemoError("%s is not a 512-byte boot sector ending in 55 aa (%d bytes)" % (origin, len(data)))
    if data[PARAMS_OFFSET:510] != bytes(510 - PARAMS_OFFSET):
        raise DemoError("%s: the parameter block at offset %d is not where running_guest.py "
                        "expects it (PARAMS_OFFSET and dirtier.S's `params` must agree)"
                        % (origin, PARAMS_OFFSET))


def boot_sector():
    """The assembled guest program, built with binutils once per version of its source."""
    with open(GUEST_SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(source).hexdigest()[:16]
    cache_dir = os.path.join(CACHE, "guest")
    path = os.path.join(cache_dir, "dirtier-%s.bin" % key)
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        _check_sector(data, path)
        return data
    tools = {t: shutil.which(t) for t in ("as", "ld", "objcopy")}
    missing = [t for t, p in tools.items() if not p]
    if missing:
        raise DemoError("the running guest is assembled with GNU binutils, and %s is missing: "
                        "apt-get install binutils (or use --guest paused)" % ", ".join(missing))
    with tempfile.TemporaryDirectory(prefix="qpl-guest-") as d:
        obj, elf, binary = (os.path.join(d, n) for n in ("dirtier.o", "dirtier.elf", "dirtier.bin"))
        for cmd in ([tools["as"], "--32", "-o", obj, GUEST_SOURCE],
                    [tools["ld"], "-m", "elf_i386", "-Ttext", "0x7c00", "-e", "start", "-o", elf, obj],
                    [tools["objcopy"], "-O", "binary", "-j", ".text", elf, binary]):
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise DemoError("assembling %s failed: %s\n%s" % (GUEST_SOURCE, " ".join(cmd),
                                                                  r.stdout.decode(errors="replace")))
        with open(binary, "rb") as f:
            data = f.read()
    _check_sector(data, GUEST_SOURCE)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    log("assembled the running guest: %s" % path)
    return data


def low_ram_top(size):
    """End of the guest RAM mapped below 4 GiB on q35 (the rest sits above 4 GiB, out of reach of
    a 32-bit guest without paging)."""
    return size if size < 0xB0000000 else 0x80000000


class GuestConfig:
    """What the guest does: ticks per second, operations per tick, where it writes and reads."""

    def __init__(self, size, hz, ops_per_tick, hot_bytes=None):
        top = low_ram_top(size) - (4 << 20)   # keep clear of SeaBIOS's tables at the top
        if hot_bytes is None:
            hot_bytes = min(size // 4, top - RESERVED_LOW)
        if not 20 <= hz <= 10000:
            raise DemoError("--guest-hz must be between 20 and 10000")
        if not 1 <= ops_per_tick <= 10000:
            raise DemoError("--guest-ops must be between 1 and 10000")
        hot_bytes = hot_bytes // 4096 * 4096
        if hot_bytes < (1 << 20) or RESERVED_LOW + hot_bytes > top:
            raise DemoError("--guest-hot must be at least 1M and at most %d MiB for a %d MiB guest"
                            % ((top - RESERVED_LOW) >> 20, size >> 20))
        self.hz, self.ops_per_tick = hz, ops_per_tick
        self.divisor = max(1, min(65535, round(PIT_HZ / hz)))
        self.hot_lo, self.hot_len = RESERVED_LOW, hot_bytes
        self.src_lo, self.src_len = RESERVED_LOW, top - RESERVED_LOW
        self.seed = SEED

    def params(self):
        # Spans leave room for a whole page (the longest write) after the last start address.
        return struct.pack(PARAMS_FORMAT, self.divisor, self.ops_per_tick, HEARTBEAT_GPA, self.seed,
                           self.hot_lo, self.hot_len - 4096, self.src_lo, self.src_len - 4096)

    def as_dict(self):
        return {"hz": PIT_HZ / self.divisor, "ops_per_tick": self.ops_per_tick,
                "hot_region": [self.hot_lo, self.hot_lo + self.hot_len],
                "read_region": [self.src_lo, self.src_lo + self.src_len],
                "heartbeat_gpa": HEARTBEAT_GPA, "seed": self.seed}

    def describe(self):
        return ("running guest (%.0f ticks/s, %d RAM operation%s per tick, writes %d MiB from %d MiB, "
                "reads %d MiB)" % (PIT_HZ / self.divisor, self.ops_per_tick,
                                   "" if self.ops_per_tick == 1 else "s", self.hot_len >> 20,
                                   self.hot_lo >> 20, self.src_len >> 20))


def write_disk(path, cfg):
    sector = bytearray(boot_sector())
    sector[PARAMS_OFFSET:510] = cfg.params()
    with open(path, "wb") as f:
        f.write(sector)
        f.truncate(DISK_SIZE)
    return path


def qemu_args(disk, firmware_log):
    """Options both QEMUs need (the destination must have the same devices and CPU).

    virtio-blk rather than q35's AHCI: SeaBIOS spends about 32 s on the AHCI disk here before
    booting.  No kvmclock: SeaBIOS would turn it on, and the destination's KVM rewrites the
    kvmclock page in guest RAM when QEMU loads the vCPU state, so the destination's RAM would
    differ from the source's in a page that no migration carries."""
    return ["-cpu", "qemu64,kvmclock=off",
            "-drive", "if=none,id=d0,file=%s,format=raw" % disk,
            "-device", "virtio-blk-pci,drive=d0",
            "-chardev", "file,id=fwlog,path=%s" % firmware_log,
            "-device", "isa-debugcon,iobase=0x402,chardev=fwlog"]


# ---------------------------------------------------------------- watching and pacing

def _tail(path, n=8):
    try:
        with open(path, errors="replace") as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
    except OSError:
        return "    | (no firmware log)"
    return "\n".join("    | " + l for l in lines[-n:]) or "    | (empty)"


class LiveGuest:
    """The source's guest program, seen through its heartbeat, and the migration's pacing."""

    def __init__(self, src, hva, cfg, firmware_log, live_syncs, converge_ms):
        """live_syncs: QEMU keeps iterating (it may switch over only after a pass that found no
        dirty page) until its dirty-sync-count reaches this; then downtime-limit converge_ms."""
        self.src, self.hva, self.cfg = src, hva, cfg
        self.firmware_log = firmware_log
        self.live_syncs, self.converge_ms = live_syncs, converge_ms
        self.last = None
        self.last_change = time.monotonic()
        self.limit_ms = LIVE_DOWNTIME_MS
        self.raised_at_sync = None
        self.limits = []          # (dirty-sync-count, new downtime-limit) in order

    def heartbeat(self):
        with open("/proc/%d/mem" % self.src.pid, "rb", buffering=0) as f:
            f.seek(self.hva + HEARTBEAT_GPA)
            return struct.unpack("<II", f.read(8))

    def _check_events(self):
        bad = [e for e in self.src.qmp.events if e.get("event") in BAD_EVENTS]
        self.src.qmp.events.clear()
        if bad:
            e = bad[0]
            raise DemoError("the source guest stopped running properly: QMP event %s %s (a guest "
                            "reset is a triple fault of tests/guest/dirtier.S)"
                            % (e["event"], e.get("data", {})))

    def check(self, expect_progress=True):
        """Fails loudly when the guest restarted, crashed or stands still."""
        self._check_events()
        magic, count = self.heartbeat()
        now = time.monotonic()
        if self.last is not None:
            if magic != MAGIC or count < self.last:
                raise DemoError("the source guest restarted: its heartbeat at 0x%x went from %d to %d "
                                "(magic 0x%08x); a triple fault reboots the machine"
                                % (HEARTBEAT_GPA, self.last, count, magic))
            if count != self.last:
                self.last_change = now
            elif expect_progress and now - self.last_change > STALL_SECONDS:
                raise DemoError("the source guest stopped: its heartbeat stayed at %d for %.0f s"
                                % (count, now - self.last_change))
        self.last = count
        return count

    def wait_started(self, timeout):
        """Until the guest program runs: magic in place and the burst counter moving."""
        deadline = time.monotonic() + timeout
        first = None
        while True:
            if not self.src.alive():
                raise DemoError(self.src.died_msg())
            self._check_events()
            magic, count = self.heartbeat()
            if magic == MAGIC:
                if first is None:
                    first = count
                elif count > first:
                    self.last, self.last_change = count, time.monotonic()
                    return
            if time.monotonic() > deadline:
                raise DemoError("the running guest did not start within %d s (heartbeat at 0x%x: magic "
                                "0x%08x, count %d). The firmware's last words:\n%s"
                                % (timeout, HEARTBEAT_GPA, magic, count, _tail(self.firmware_log)))
            time.sleep(0.1)

    def begin(self):
        self.at_start = self.check()
        self.t_start = time.monotonic()

    def _set_limit(self, ms, syncs):
        # avail-switchover-bandwidth 0: back to QEMU's own estimate of the bandwidth.
        self.src.qmp.cmd("migrate-set-parameters",
                         **{"downtime-limit": ms, "avail-switchover-bandwidth": 0})
        self.limit_ms = ms
        self.limits.append((syncs, ms))
        log("  pass %d: downtime-limit %d ms" % (syncs, ms))

    def poll(self, info):
        """Once per query-migrate while the migration runs."""
        status = info.get("status")
        if status in ("active", "setup"):
            self.check()
        syncs = info.get("ram", {}).get("dirty-sync-count", 0)
        if status != "active":
            return
        if self.raised_at_sync is None:
            if syncs >= self.live_syncs:
                self.raised_at_sync = syncs
                self._set_limit(self.converge_ms, syncs)
        elif syncs - self.raised_at_sync >= ESCALATE_AFTER_SYNCS and self.limit_ms < MAX_DOWNTIME_MS:
            # Not converging at this limit: the guest dirties faster than the link drains.
            self.raised_at_sync = syncs
            self._set_limit(min(MAX_DOWNTIME_MS, self.limit_ms * 2), syncs)

    def finish(self, info):
        """Numbers for the table, and the checks that the guest really ran during the migration."""
        end = self.check(expect_progress=False)
        ram = info.get("ram", {})
        total_pages = ram.get("total", 0) // 4096
        sent = ram.get("normal", 0) + ram.get("duplicate", 0)
        bursts = end - self.at_start
        stats = {
            "guest": self.cfg.as_dict(),
            "heartbeat_start": self.at_start, "heartbeat_end": end,
            "guest_bursts": bursts, "guest_ops": bursts * self.cfg.ops_per_tick,
            "guest_ticks_per_second": bursts / max(time.monotonic() - self.t_start, 1e-3),
            "dirty_syncs": ram.get("dirty-sync-count"),
            "pages_sent": sent, "ram_pages": total_pages,
            "resent_pages": sent - total_pages,
            "dirty_pages_rate": ram.get("dirty-pages-rate"),
            "downtime_limits": self.limits, "live_syncs_wanted": self.live_syncs,
        }
        problems = []
        if bursts <= 0:
            problems.append("the guest's heartbeat did not move between migrate and completion")
        if (stats["dirty_syncs"] or 0) < MIN_LIVE_SYNCS:
            problems.append("QEMU completed at dirty-sync-count %s, as for a paused guest (a running "
                            "one needs %d): no pass after the first found pages the guest had dirtied"
                            % (stats["dirty_syncs"], MIN_LIVE_SYNCS))
        if sent <= total_pages:
            problems.append("QEMU sent %d pages for %d pages of RAM: no page was sent twice"
                            % (sent, total_pages))
        stats["live_problems"] = problems
        return stats
