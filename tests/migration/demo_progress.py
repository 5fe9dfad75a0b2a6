"""What qpl-demo says while it works, on stderr: each phase with the time since the demo
started, and during a migration a progress line from QEMU's own counters."""

import sys
import time

from demo_common import fmt_mib

_START = time.monotonic()


def elapsed():
    s = int(time.monotonic() - _START)
    return "%d:%02d" % (s // 60, s % 60)


def phase(msg):
    """One line: [m:ss since the start] msg."""
    sys.stderr.write("[%s] %s\n" % (elapsed(), msg))
    sys.stderr.flush()


class Progress:
    """One migration's progress, from the source's query-migrate: the share of guest RAM that is
    sent and clean (ram.total - ram.remaining, of ram.total), the bytes on the wire
    (ram.transferred), the dirty-sync pass and the seconds since `migrate`.  On a terminal it
    rewrites one line five times a second; into a pipe or a log it writes a line every 2 s."""

    def __init__(self, label):
        self.label = label
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = False

    def show(self, ram, status, force=False):
        now = time.monotonic()
        if not force and now - self.last < (0.2 if self.tty else 2.0):
            return
        self.last = now
        total = ram.get("total") or 0
        pct = 100.0 * (total - ram.get("remaining", 0)) / total if total else 0.0
        msg = "[%s] %s: %s, %5.1f %% of RAM sent, %s MiB on the wire, pass %d, %.1f s" % (
            elapsed(), self.label, "migrating" if status in ("active", "setup", None) else status,
            pct, fmt_mib(ram.get("transferred", 0)), ram.get("dirty-sync-count", 0), now - self.t0)
        if self.tty:
            sys.stderr.write("\r" + msg + "\033[K")
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()
        self.shown = True

    def done(self):
        if self.tty and self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.shown = False
