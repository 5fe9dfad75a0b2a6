#!/usr/bin/env python3
"""A live migration by hand, the way docs/qemu.md describes it.

Starts a destination QEMU (-incoming defer) and a source QEMU whose guest RAM
is an image file mapped privately (the file stays unchanged), sets multifd and
the compression method with the HMP commands of docs/qemu.md (sent through
QMP's human-monitor-command), migrates over TCP on localhost, then hashes both
processes' guest RAM from /proc/PID/mem and compares them with the image.

  tests/qemu/hand-migration.py [--src BIN] [--dst BIN] [--method qpl]
                               [--channels N] [--image FILE] [--qpl-level LEVEL]

BIN defaults to the `ours` build of scripts/build-qemu.sh. The image
defaults to corpus A when it has been built (scripts/corpus.py), else to a
256 MiB image made of this machine's /usr/lib files. --qpl-level sets the
source's multifd-qpl-level (fast or strong; the source must be a qemu-qpl
build, the destination may be any). Exit status 0 and a closing "PASS" line
when the destination's RAM equals the source's.
"""

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

CACHE = os.environ.get("QEMU_QPL_CACHE", "/var/tmp/qemu-qpl")
MIB = 1 << 20


def log(msg):
    print(f"hand-migration: {msg}", file=sys.stderr, flush=True)


class Qmp:
    def __init__(self, path, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.file = self.sock.makefile("rw")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"{name}: {reply['error']}")
        return reply["return"]

    def hmp(self, line):
        out = self.cmd("human-monitor-command", **{"command-line": line})
        if out.strip():
            raise RuntimeError(f"(qemu) {line}: {out.strip()}")
        log(f"(qemu) {line}")


def make_image(path, size):
    """Fills `size` bytes from /usr/lib files in a fixed order, zero padded."""
    with open(path, "wb") as out:
        left = size
        for root, dirs, files in sorted(os.walk("/usr/lib")):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(root, f)
                if left <= 0 or os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    with open(p, "rb") as src:
                        data = src.read(min(left, 8 * MIB))
                except OSError:
                    continue
                out.write(data)
                left -= len(data)
        out.write(b"\0" * max(left, 0))


def ram_hash(qmp, pid, block, size):
    table = qmp.cmd("x-query-ramblock")["human-readable-text"]
    for line in table.splitlines():
        cols = line.split()
        if cols and cols[0] == block:
            # the last column is RO (ro/rw) in QEMU 10.2, HVA before it
            hva = int(cols[-2] if cols[-1] in ("ro", "rw") else cols[-1], 16)
            break
    else:
        raise RuntimeError(f"ram block {block} not in:\n{table}")
    h = hashlib.sha256()
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(hva)
        done = 0
        while done < size:
            chunk = mem.read(min(16 * MIB, size - done))
            h.update(chunk)
            done += len(chunk)
    return h.hexdigest()


def file_hash(path, size):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(size))
    return h.hexdigest()


def main():
    ours = f"{CACHE}/qemu-build/ours/qemu-system-x86_64"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=ours)
    ap.add_argument("--dst", default=ours)
    ap.add_argument("--method", default="qpl")
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--image")
    ap.add_argument("--port", type=int, default=4444)
    ap.add_argument("--qpl-level", help="the source's multifd-qpl-level")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="hand-migration.")
    image = args.image
    if not image:
        corpus = f"{CACHE}/corpus/corpusA.bin"
        image = corpus if os.path.exists(corpus) else f"{CACHE}/hand-migration.img"
        if not os.path.exists(image):
            log(f"making {image} from /usr/lib")
            make_image(image, 256 * MIB)
    size = os.path.getsize(image)
    if size % (2 * MIB):
        sys.exit(f"{image}: size must be a multiple of 2 MiB")

    common = ["-L", f"{CACHE}/firmware", "-accel", "kvm", "-accel", "tcg",
              "-machine", "q35,memory-backend=ram0", "-m", f"{size // MIB}M",
              "-nodefaults", "-display", "none", "-S"]
    procs = []
    try:
        dst = subprocess.Popen(
            [args.dst, *common, "-name", "destination",
             "-object", f"memory-backend-ram,id=ram0,size={size}",
             "-qmp", f"unix:{work}/dst.qmp,server=on,wait=off",
             "-incoming", "defer"], stdout=open(f"{work}/dst.log", "w"),
            stderr=subprocess.STDOUT)
        procs.append(dst)
        src = subprocess.Popen(
            [args.src, *common, "-name", "source",
             "-object", f"memory-backend-file,id=ram0,size={size},"
                        f"mem-path={image},share=off",
             "-qmp", f"unix:{work}/src.qmp,server=on,wait=off"],
            stdout=open(f"{work}/src.log", "w"), stderr=subprocess.STDOUT)
        procs.append(src)
        qd, qs = Qmp(f"{work}/dst.qmp"), Qmp(f"{work}/src.qmp")
        log(f"source {args.src}\nhand-migration: destination {args.dst}")
        log(f"guest RAM: {size // MIB} MiB from {image}")

        for side, q in (("destination", qd), ("source", qs)):
            log(f"on the {side}:")
            q.hmp("migrate_set_capability multifd on")
            q.hmp(f"migrate_set_parameter multifd-channels {args.channels}")
            q.hmp(f"migrate_set_parameter multifd-compression {args.method}")
        if args.qpl_level:
            log("on the source:")
            qs.hmp(f"migrate_set_parameter multifd-qpl-level {args.qpl_level}")
        qd.hmp(f"migrate_incoming tcp:127.0.0.1:{args.port}")
        t0 = time.time()
        qs.hmp(f"migrate -d tcp:127.0.0.1:{args.port}")
        while True:
            info = qs.cmd("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
        wall = time.time() - t0
        if info["status"] != "completed":
            log(f"source: {info}")
            for _ in range(50):
                dinfo = qd.cmd("query-migrate")
                if dinfo.get("status") == "failed":
                    break
                time.sleep(0.1)
            log(f"destination: {dinfo}")
            print("FAIL")
            return 1
        while qd.cmd("query-migrate").get("status") != "completed":
            time.sleep(0.05)
        ram = info.get("ram", {})
        log(f"completed in {wall:.2f}s (QEMU: {info.get('total-time')} ms, "
            f"downtime {info.get('downtime')} ms), wire {ram.get('transferred', 0) / MIB:.1f} "
            f"MiB for {ram.get('total', 0) / MIB:.0f} MiB of RAM")

        want = file_hash(image, size)
        got_src = ram_hash(qs, src.pid, "ram0", size)
        got_dst = ram_hash(qd, dst.pid, "ram0", size)
        log(f"image       {want}\nhand-migration: source RAM  {got_src}\n"
            f"hand-migration: dest RAM    {got_dst}")
        ok = got_dst == got_src == want
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for f in ("src.log", "dst.log"):
            path = os.path.join(work, f)
            if os.path.exists(path) and os.path.getsize(path):
                log(f"{f}: " + open(path).read().strip().replace("\n", " | "))


if __name__ == "__main__":
    sys.exit(main())
