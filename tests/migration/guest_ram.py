"""Guest RAM of a QEMU process, read through /proc/PID/mem: find it, hash it, compare it."""

import hashlib
import os
import re

from demo_common import PAGE, DemoError, QMPError


def ram_block(q, size, image=None):
    """(host address, length) of the guest RAM block of QEMU q."""
    text = None
    try:
        text = q.qmp.cmd("x-query-ramblock")["human-readable-text"]
    except QMPError:
        text = q.qmp.cmd("human-monitor-command", **{"command-line": "info ramblock"})
    blocks = []
    for line in text.splitlines()[1:]:
        tok = line.split()
        hexes = re.findall(r"0x[0-9a-fA-F]+", line)
        if not tok or len(hexes) < 3:
            continue
        used = int(hexes[1], 16)
        hva = int(hexes[3], 16) if len(hexes) >= 4 else None
        blocks.append((tok[0], used, hva))
    pick = None
    for want in ("ram0", "pc.ram"):
        pick = pick or next((b for b in blocks if b[0] == want), None)
    if pick is None and blocks:
        pick = max(blocks, key=lambda b: b[1])
    if pick is None:
        raise DemoError("%s QEMU: no RAM block in x-query-ramblock output:\n%s" % (q.role, text))
    name, used, hva = pick
    if used != size:
        raise DemoError("%s QEMU: RAM block %s is %d bytes, expected %d" % (q.role, name, used, size))
    if hva is None:
        hva = hva_from_maps(q.pid, size, image)  # QEMU before 9.x prints no HVA column
    return hva, used


def hva_from_maps(pid, size, image):
    found = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5].strip() if len(parts) > 5 else ""
            if hi - lo != size or not parts[1].startswith("rw"):
                continue
            if image is not None and path == os.path.realpath(image):
                return lo
            if image is None and path == "":
                found.append(lo)
    if len(found) == 1:
        return found[0]
    raise DemoError("cannot locate guest RAM of pid %d in /proc/%d/maps (candidates: %d); "
                    "this QEMU prints no HVA in x-query-ramblock" % (pid, pid, len(found)))


def read_mem(pid, addr, length, chunk=8 << 20):
    with open("/proc/%d/mem" % pid, "rb", buffering=0) as f:
        f.seek(addr)
        left = length
        while left:
            buf = f.read(min(chunk, left))
            if not buf:
                raise DemoError("short read of /proc/%d/mem at 0x%x" % (pid, addr + length - left))
            left -= len(buf)
            yield buf


def hash_mem(pid, addr, length, out, key, compare=None):
    """SHA-256 of a RAM range into out[key]; with `compare` (a file as long as the range) also
    the number of 4 KiB pages that differ from it into out[key + '_changed']."""
    try:
        h = hashlib.sha256()
        changed = 0
        ref = open(compare, "rb") if compare else None
        try:
            for buf in read_mem(pid, addr, length):
                h.update(buf)
                if ref is not None:
                    old = ref.read(len(buf))
                    if old != buf:
                        changed += sum(1 for p in range(0, len(buf), PAGE)
                                       if buf[p:p + PAGE] != old[p:p + PAGE])
        finally:
            if ref is not None:
                ref.close()
        out[key] = h.hexdigest()
        if ref is not None:
            out[key + "_changed"] = changed
    except Exception as e:  # reported by the caller
        out[key] = e


def diff_pages(a, b, length, limit=5):
    """Counts differing 4 KiB pages between two (pid, addr) RAM views; also the first offsets and
    the first differing bytes of the first such page, as (offset, byte in a, byte in b)."""
    ga, gb = read_mem(a[0], a[1], length), read_mem(b[0], b[1], length)
    off, count, first, detail = 0, 0, [], []
    for x, y in zip(ga, gb):
        if x != y:
            for p in range(0, len(x), PAGE):
                if x[p:p + PAGE] != y[p:p + PAGE]:
                    count += 1
                    if len(first) < limit:
                        first.append(off + p)
                    if not detail:
                        detail = [(off + p + i, x[p + i], y[p + i]) for i in range(PAGE)
                                  if x[p + i] != y[p + i]][:8]
        off += len(x)
    return count, first, detail
