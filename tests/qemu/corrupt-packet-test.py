#!/usr/bin/env python3
"""A qpl migration through a proxy that corrupts one page: the error must say
which page of guest memory it was.

Starts a destination QEMU (-incoming defer) and a source QEMU, both with
multifd and the qpl method, and migrates through a TCP proxy on localhost.
The proxy follows each multifd channel packet by packet (the packet header
names the RAMBlock and the offset of every page) and damages one page of one
packet, in one of three ways:

  length   the page's length becomes the page size + 1   (caught by qemu_qpl_recv_lengths)
  stream   the page's DEFLATE stream starts with a reserved block type
                                                          (caught by qemu_qpl_recv_pages)
  sum      the page's length shrinks by one, so the lengths no longer add up
           to the packet size (a fault of the whole packet: no page named)

The destination must fail the migration, not crash, with an error that is the
library's message followed, for the first two modes, by
"[RAMBlock 'NAME', offset 0xOFFSET]" for exactly the page the proxy damaged.

  tests/qemu/corrupt-packet-test.py [--src BIN] [--dst BIN] [--mode MODE]...

BIN defaults to the `ours` build of tests/qemu/build-qemu.sh; the source may
be any qpl QEMU (e.g. the intel-qpl build), the destination must be ours.
Prints the destination's error for each mode and a closing "N passed, N
failed" line; exits non-zero on any failure.
"""

import argparse
import importlib.util
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

CACHE = os.environ.get("QEMU_QPL_CACHE", "/var/tmp/qemu-qpl")
HERE = os.path.dirname(os.path.abspath(__file__))

# migration/multifd.h and multifd.c of QEMU 10.2
MULTIFD_MAGIC = 0x11223344
INIT_SIZE = 64                   # MultiFDInit_t
HDR = struct.Struct(">III")      # magic, version, flags
RAM_FIXED = struct.Struct(">IIIQII24s256s")  # pages_alloc .. ramblock
DEVICE_FIXED = 256 + 4 + 4       # idstr, instance_id, next_packet_size
FLAG_DEVICE_STATE = 32 << 1
FLAG_QPL = 4 << 1
PAGE_SIZE = 4096
# Every packet header carries room for this many page offsets, sync packets
# (whose pages_alloc field is 0) too: multifd_ram_page_count() for x86's
# 4 KiB pages and multifd's 512 KiB packets.
PAGES_PER_PACKET = 128


def log(msg):
    print(f"corrupt-packet-test: {msg}", file=sys.stderr, flush=True)


def load_qmp():
    spec = importlib.util.spec_from_file_location(
        "hand_migration", os.path.join(HERE, "hand-migration.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Qmp


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


class Proxy:
    """Forwards every connection to the destination; damages one page of the
    first qpl packet that has a compressed page, on whichever channel sends
    it first."""

    def __init__(self, dst_port, mode):
        self.dst_port = dst_port
        self.mode = mode
        self.lock = threading.Lock()
        self.done = None        # (ramblock, offset, page index) once damaged
        self.error = None       # why the proxy lost track of a channel
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                src, _ = self.listener.accept()
            except OSError:
                return
            dst = socket.create_connection(("127.0.0.1", self.dst_port))
            threading.Thread(target=self._pump, args=(dst, src), daemon=True).start()
            threading.Thread(target=self._forward, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _forward(self, src, dst):
        try:
            head = read_exact(src, 4)
            dst.sendall(head)
            if struct.unpack(">I", head)[0] != MULTIFD_MAGIC:
                self._pump(src, dst)      # the main migration channel
                return
            dst.sendall(read_exact(src, INIT_SIZE - 4))
            while True:
                hdr = read_exact(src, HDR.size)
                magic, _version, flags = HDR.unpack(hdr)
                if magic != MULTIFD_MAGIC:
                    raise RuntimeError(f"lost track of the multifd stream (magic {magic:#x})")
                if flags & FLAG_DEVICE_STATE:
                    fixed = read_exact(src, DEVICE_FIXED)
                    body = read_exact(src, struct.unpack(">I", fixed[-4:])[0])
                    dst.sendall(hdr + fixed + body)
                    continue
                fixed = read_exact(src, RAM_FIXED.size)
                (pages_alloc, normal, size, _num, _zero, _u32, _u64,
                 ramblock) = RAM_FIXED.unpack(fixed)
                if pages_alloc not in (0, PAGES_PER_PACKET):
                    raise RuntimeError(f"packet for {pages_alloc} pages, expected "
                                       f"{PAGES_PER_PACKET}")
                offsets = read_exact(src, 8 * PAGES_PER_PACKET)
                body = bytearray(read_exact(src, size)) if normal else bytearray()
                if normal and flags & FLAG_QPL:
                    self._maybe_damage(body, normal, ramblock, offsets)
                dst.sendall(hdr + fixed + offsets + bytes(body))
        except (EOFError, OSError):
            pass
        except Exception as e:  # a parse error must not hang the migration
            self.error = str(e)
            log(f"proxy: {e}")
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _maybe_damage(self, body, normal, ramblock, offsets):
        lengths = list(struct.unpack(f">{normal}I", body[:4 * normal]))
        # the last compressed page (long enough to shrink by one byte), so
        # that its index is rarely 0
        page = next((i for i in reversed(range(normal))
                     if 1 < lengths[i] < PAGE_SIZE), None)
        if page is None:
            return
        with self.lock:
            if self.done:
                return
            name = ramblock.split(b"\0", 1)[0].decode()
            offset = struct.unpack(">Q", offsets[8 * page:8 * page + 8])[0]
            self.done = (name, offset, page)
        if self.mode == "length":
            struct.pack_into(">I", body, 4 * page, PAGE_SIZE + 1)
        elif self.mode == "sum":
            struct.pack_into(">I", body, 4 * page, lengths[page] - 1)
        else:
            start = 4 * normal + sum(lengths[:page])
            # BFINAL = 1, BTYPE = 11: a block type that DEFLATE reserves
            body[start] = 0x07
        log(f"damaged ({self.mode}) page {page} of a {normal}-page packet: "
            f"RAMBlock '{name}', offset {offset:#x}")

    def close(self):
        self.listener.close()


def run_mode(args, qmp_class, mode, work):
    proxy = Proxy(0, mode)  # destination port filled in below
    common = ["-L", f"{CACHE}/firmware", "-accel", "kvm", "-accel", "tcg",
              "-machine", "q35", "-m", "256M", "-nodefaults", "-display", "none"]
    procs = []
    try:
        dst_log = open(f"{work}/{mode}-dst.log", "w")
        dst = subprocess.Popen(
            [args.dst, *common, "-name", "destination",
             "-qmp", f"unix:{work}/{mode}-dst.qmp,server=on,wait=off",
             "-incoming", "defer"], stdout=dst_log, stderr=subprocess.STDOUT)
        procs.append(dst)
        src = subprocess.Popen(
            [args.src, *common, "-name", "source",
             "-qmp", f"unix:{work}/{mode}-src.qmp,server=on,wait=off"],
            stdout=open(f"{work}/{mode}-src.log", "w"), stderr=subprocess.STDOUT)
        procs.append(src)
        qd = qmp_class(f"{work}/{mode}-dst.qmp")
        qs = qmp_class(f"{work}/{mode}-src.qmp")
        for q in (qd, qs):
            q.sock.settimeout(30)
        time.sleep(1)  # let the guest's firmware fill some pages
        for q in (qd, qs):
            q.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "multifd", "state": True}])
            q.cmd("migrate-set-parameters", **{"multifd-channels": 2,
                                                "multifd-compression": "qpl"})
        qd.cmd("migrate-incoming", uri="tcp:127.0.0.1:0", **{"exit-on-error": False})
        dst_port = None
        for _ in range(100):
            info = qd.cmd("query-migrate")
            sockets = info.get("socket-address") or []
            if sockets:
                dst_port = int(sockets[0]["port"])
                break
            time.sleep(0.05)
        if not dst_port:
            raise RuntimeError(f"destination did not report its port: {info}")
        proxy.dst_port = dst_port
        qs.cmd("migrate", uri=f"tcp:127.0.0.1:{proxy.port}")

        deadline = time.time() + 60
        dinfo = {}
        while time.time() < deadline:
            dinfo = qd.cmd("query-migrate")
            if dinfo.get("status") in ("failed", "completed"):
                break
            time.sleep(0.1)
        if dst.poll() is not None:
            return False, f"the destination exited with status {dst.returncode}"
        error = dinfo.get("error-desc", "")
        log(f"{mode}: destination status {dinfo.get('status')}, error: {error}")
        if proxy.error:
            return False, f"the proxy lost track of a channel: {proxy.error}"
        if proxy.done is None:
            return False, "the proxy found no compressed page to damage"
        name, offset, page = proxy.done
        if dinfo.get("status") != "failed":
            return False, f"destination status {dinfo.get('status')}, expected failed"
        suffix = f" [RAMBlock '{name}', offset {offset:#x}]"
        if mode == "sum":
            want = re.compile(r"^qpl: multifd channel \d+: page lengths add up to \d+ bytes "
                              r"but the packet header announces \d+$")
        else:
            what = ("length 4097 exceeds the page size 4096" if mode == "length"
                    else r"corrupt DEFLATE stream \(reserved block type\)")
            want = re.compile(rf"^qpl: multifd channel \d+: page {page}: {what}"
                              + re.escape(suffix) + "$")
        if not want.match(error):
            return False, f"error {error!r} does not match {want.pattern!r}"
        return True, error
    finally:
        proxy.close()
        for p in procs:
            p.kill()
            p.wait()


def main():
    ours = f"{CACHE}/qemu-build/ours/qemu-system-x86_64"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=ours)
    ap.add_argument("--dst", default=ours)
    ap.add_argument("--mode", action="append", choices=("length", "stream", "sum"))
    args = ap.parse_args()
    for b in (args.src, args.dst):
        if not os.access(b, os.X_OK):
            sys.exit(f"corrupt-packet-test: {b} is not an executable: "
                     "run tests/qemu/build-qemu.sh ours")
    qmp_class = load_qmp()
    work = tempfile.mkdtemp(prefix="corrupt-packet-test.")
    passed = failed = 0
    for mode in args.mode or ["length", "stream", "sum"]:
        ok, detail = run_mode(args, qmp_class, mode, work)
        if ok:
            passed += 1
            print(f"PASS {mode}: {detail}")
        else:
            failed += 1
            print(f"FAIL {mode}: {detail} (logs in {work})")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
