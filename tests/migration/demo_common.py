"""Shared pieces of qpl-demo: paths, errors, logging and size formats."""

import argparse
import os
import re
import sys

PAGE = 4096
REPO = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CACHE = os.environ.get("QEMU_QPL_CACHE") or "/var/tmp/qemu-qpl"


class DemoError(Exception):
    """An error a person can act on; the message says what to do."""


class Unsupported(DemoError):
    """A QEMU binary lacks a compression method."""


class QMPError(DemoError):
    def __init__(self, cmd, cls, desc):
        super().__init__("QMP %s failed: %s: %s" % (cmd, cls, desc))
        self.cmd, self.cls, self.desc = cmd, cls, desc


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def parse_size(text):
    """'2G', '256M', '4096', '1.5G' -> bytes (binary units, like QEMU's -m)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError("not a size: %r (use e.g. 256M, 2G)" % text)
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def parse_bandwidth(text):
    if text.lower() in ("unlimited", "none", "0", "off"):
        return None
    return parse_size(text)


def fmt_size(n):
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= (1 << shift) and n % (1 << shift) == 0:
            return "%d%s" % (n >> shift, unit)
    return str(n)


def fmt_mib(n):
    return "%.0f" % (n / 1048576.0)
