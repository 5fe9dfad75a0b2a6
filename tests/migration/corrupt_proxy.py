"""A TCP relay between a migrating QEMU and its destination that corrupts one qpl packet.

The source migrates to the relay, the relay connects to the destination once per connection
the source opens.  A connection that starts with multifd's magic is a multifd channel: the
relay reads its initial packet (which names the channel), then every packet, parses the
header and the qpl body, and passes the packets on.  Exactly one qpl packet of the whole
migration is changed, by the corruption the relay was given; every other byte, and every
byte of the main migration channel, goes through untouched.

The packet layout is QEMU 10.2.2's (migration/multifd.h, multifd.c, multifd-nocomp.c):

    MultiFDInit_t, once per channel (64 bytes): be32 magic 0x11223344, be32 version 1,
        16-byte uuid, u8 channel id, 7 + 32 bytes reserved
    MultiFDPacket_t, per packet (320 bytes + 8 per page the sender's packets hold):
        be32 magic, be32 version, be32 flags, be32 pages_alloc, be32 normal_pages,
        be32 next_packet_size, be64 packet_num, be32 zero_pages, 4 + 24 bytes reserved,
        char ramblock[256], be64 offset[] (normal pages first, then zero pages)
    then next_packet_size bytes of body; for qpl (flags & 0x3e == 0x08):
        be32 length[normal_pages], then each page's bytes (a length equal to the page size
        is a raw page, a shorter one a raw DEFLATE stream)

A SYNC packet (flags bit 0) has the same size, with pages_alloc 0 and no body.  Packets with
MULTIFD_FLAG_DEVICE_STATE have their own header (MultiFDPacketDeviceState_t) and are relayed
as they are.
"""

import socket
import struct
import threading
import zlib

MULTIFD_MAGIC = 0x11223344
MULTIFD_VERSION = 1
FLAG_SYNC = 1 << 0
FLAG_COMPRESSION_MASK = 0x1F << 1
FLAG_QPL = 4 << 1
FLAG_DEVICE_STATE = 32 << 1

INIT = struct.Struct(">II16sB7x32x")        # MultiFDInit_t
HDR = struct.Struct(">III")                 # MultiFDPacketHdr_t
RAM = struct.Struct(">IIIQII24x256s")       # the rest of MultiFDPacket_t before offset[]
DEVICE_STATE = struct.Struct(">256sII")     # the rest of MultiFDPacketDeviceState_t
RAM_FIXED = HDR.size + RAM.size             # 320
OFFSET = struct.Struct(">Q")
LENGTH = struct.Struct(">I")

PAGE_SIZE = 4096
PAGES_PER_PACKET = (512 * 1024) // PAGE_SIZE   # MULTIFD_PACKET_SIZE / page size


class RelayError(Exception):
    """The stream did not look like QEMU 10.2.2's multifd: the relay cannot test anything."""


def inflate_page(stream, page_size):
    """The page a strict raw-DEFLATE decoder makes of `stream`, or None when the stream is not
    exactly one complete stream inflating to exactly page_size bytes (zlib's inflate)."""
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(bytes(stream), page_size + 1)
    except zlib.error:
        return None
    if len(out) != page_size or not d.eof or d.unused_data or d.unconsumed_tail:
        return None
    return out


def deflate_raw(data, level=9):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


class RamPacket:
    """One multifd RAM packet as it came off a channel, with accessors for its qpl body.  The
    corruptions edit it in place; encode() gives the bytes to send on."""

    def __init__(self, channel, header, body, page_size):
        self.channel, self.page_size = channel, page_size
        self.header, self.body = bytearray(header), bytearray(body)
        self.cut_at = None      # send only this many bytes, then end the connection
        _, _, self.flags = HDR.unpack_from(header)
        (self.pages_alloc, self.normal_pages, self.next_packet_size, self.packet_num,
         self.zero_pages, _, ramblock) = RAM.unpack_from(header, HDR.size)
        self.ramblock = ramblock.split(b"\0", 1)[0].decode("ascii", "replace")

    def is_qpl(self):
        return self.flags & FLAG_COMPRESSION_MASK == FLAG_QPL and not self.flags & FLAG_SYNC

    def offset(self, page):
        return OFFSET.unpack_from(self.header, RAM_FIXED + 8 * page)[0]

    def lengths(self):
        return list(struct.unpack_from(">%dI" % self.normal_pages, self.body))

    def check_qpl_body(self):
        """The body's own consistency as the sender made it; a message when it is broken."""
        n = self.normal_pages
        if n == 0:
            return None if self.next_packet_size == 0 else "no pages but %d bytes" % self.next_packet_size
        lengths = self.lengths()
        bad = [i for i, l in enumerate(lengths) if not 0 < l <= self.page_size]
        if bad:
            return "page %d has length %d" % (bad[0], lengths[bad[0]])
        if 4 * n + sum(lengths) != self.next_packet_size:
            return "lengths add up to %d, body is %d" % (4 * n + sum(lengths), self.next_packet_size)
        return None

    def page_span(self, page):
        lengths = self.lengths()
        start = 4 * self.normal_pages + sum(lengths[:page])
        return start, start + lengths[page]

    def page_bytes(self, page):
        start, end = self.page_span(page)
        return bytes(self.body[start:end])

    def set_length(self, page, value):
        LENGTH.pack_into(self.body, 4 * page, value)

    def set_field(self, name, value):
        at = {"pages_alloc": 0, "normal_pages": 4, "next_packet_size": 8}[name]
        LENGTH.pack_into(self.header, HDR.size + at, value)
        setattr(self, name, value)

    def replace_page(self, page, data):
        """New bytes for one page; its length and the header's body size follow, so the
        stream stays parseable."""
        start, end = self.page_span(page)
        self.body[start:end] = data
        self.set_length(page, len(data))
        self.set_field("next_packet_size", len(self.body))

    def encode(self):
        data = bytes(self.header) + bytes(self.body)
        return data if self.cut_at is None else data[:self.cut_at]


# ---------------------------------------------------------------- corruptions
#
# Each takes a qpl packet with normal pages and a Target, changes the packet and returns what
# it did (a dict), or returns None without touching it when the packet does not suit.  The
# dict's "kind" says where the fault is: "page" (one page: "page" is its index in the packet),
# "packet" (the body's framing as a whole) or "header" (a field multifd checks itself).


class Target:
    """Which pages a corruption may pick: offsets within [min_offset, max_offset)."""

    def __init__(self, min_offset=0, max_offset=1 << 64):
        self.min_offset, self.max_offset = min_offset, max_offset


def _pages(pkt, target, compressed):
    """Candidate pages, those from the middle of the packet on first."""
    n = pkt.normal_pages
    lengths = pkt.lengths()
    order = list(range(n // 2, n)) + list(range(n // 2))
    return [k for k in order if target.min_offset <= pkt.offset(k) < target.max_offset
            and (not compressed or lengths[k] < pkt.page_size)]


def _page_record(pkt, page, **extra):
    rec = {"kind": "page", "page": page, "offset": pkt.offset(page), "old_length": pkt.lengths()[page]}
    rec.update(extra)
    return rec


def length_above_page(pkt, target):
    pages = _pages(pkt, target, compressed=False)
    if not pages:
        return None
    k = pages[0]
    rec = _page_record(pkt, k, new_length=pkt.page_size + 1)
    pkt.set_length(k, pkt.page_size + 1)
    return rec


def lengths_mismatch(pkt, target):
    """One page's length one byte shorter: each length still valid, their sum one short."""
    pages = [k for k in _pages(pkt, target, compressed=True) if pkt.lengths()[k] >= 2]
    if not pages:
        return None
    k = pages[0]
    lengths = pkt.lengths()
    rec = {"kind": "packet", "page": k, "old_length": lengths[k], "new_length": lengths[k] - 1,
           "sum": sum(lengths) - 1, "announced": pkt.next_packet_size - 4 * pkt.normal_pages,
           "next_packet_size": pkt.next_packet_size}
    pkt.set_length(k, lengths[k] - 1)
    return rec


def zero_length(pkt, target):
    pages = _pages(pkt, target, compressed=False)
    if not pages:
        return None
    k = pages[0]
    rec = _page_record(pkt, k, new_length=0)
    pkt.set_length(k, 0)
    return rec


def truncated_stream(pkt, target):
    """The second half of one compressed page's stream dropped; its length and the body size
    say so, so the framing stays consistent and only the stream itself is short."""
    for k in _pages(pkt, target, compressed=True):
        stream = pkt.page_bytes(k)
        cut = stream[:len(stream) // 2]
        if len(stream) < 8 or inflate_page(cut, pkt.page_size) is not None:
            continue
        rec = _page_record(pkt, k, new_length=len(cut))
        pkt.replace_page(k, cut)
        return rec
    return None


def bit_flip(pkt, target):
    """One bit flipped in one compressed page, at the first bit from the middle of the stream
    on whose flip zlib's inflate rejects the stream (so any strict decoder can tell)."""
    for k in _pages(pkt, target, compressed=True):
        stream = bytearray(pkt.page_bytes(k))
        for bit in list(range(len(stream) * 4, len(stream) * 8)) + list(range(len(stream) * 4)):
            stream[bit // 8] ^= 1 << (bit % 8)
            if inflate_page(stream, pkt.page_size) is None:
                rec = _page_record(pkt, k, byte=bit // 8, bit=bit % 8)
                pkt.replace_page(k, bytes(stream))
                return rec
            stream[bit // 8] ^= 1 << (bit % 8)
    return None


def silent_flip(pkt, target):
    """One bit flipped so that the stream still inflates to exactly one page, other bytes than
    the sender's: raw DEFLATE has no checksum, so no receiver can tell (docs/hostile-input.md)."""
    for k in _pages(pkt, target, compressed=True):
        stream = bytearray(pkt.page_bytes(k))
        original = inflate_page(stream, pkt.page_size)
        if original is None:
            continue
        for bit in range(len(stream) * 8):
            stream[bit // 8] ^= 1 << (bit % 8)
            page = inflate_page(stream, pkt.page_size)
            if page is not None and page != original:
                differ = sum(1 for a, b in zip(page, original) if a != b)
                rec = _page_record(pkt, k, byte=bit // 8, bit=bit % 8, bytes_changed=differ)
                rec["kind"] = "silent"
                pkt.replace_page(k, bytes(stream))
                return rec
            stream[bit // 8] ^= 1 << (bit % 8)
    return None


def inflates_past_page(pkt, target):
    """A real DEFLATE stream of two pages (the page's own bytes twice), shorter than a page."""
    for k in _pages(pkt, target, compressed=True):
        page = inflate_page(pkt.page_bytes(k), pkt.page_size)
        if page is None:
            continue
        two = deflate_raw(page + page)
        if len(two) >= pkt.page_size:
            continue
        rec = _page_record(pkt, k, new_length=len(two), inflates_to=2 * pkt.page_size)
        pkt.replace_page(k, two)
        return rec
    return None


def too_many_pages(pkt, target):
    """pages_alloc and normal_pages one above the pages a packet holds."""
    n = pkt.pages_alloc + 1
    rec = {"kind": "header", "field": "pages_alloc", "value": n, "max": pkt.pages_alloc,
           "old_normal_pages": pkt.normal_pages}
    pkt.set_field("pages_alloc", n)
    pkt.set_field("normal_pages", n)
    return rec


def huge_payload(pkt, target):
    """next_packet_size at its largest; the length array and pages are left as they were."""
    huge = 0xFFFFFFFF
    rec = {"kind": "packet", "next_packet_size": huge, "old_next_packet_size": pkt.next_packet_size,
           "sum": sum(pkt.lengths()), "announced": huge - 4 * pkt.normal_pages}
    pkt.set_field("next_packet_size", huge)
    return rec


def cut_payload(pkt, target):
    """The packet sent up to the middle of its pages' bytes, then the connection closed."""
    if pkt.normal_pages == 0:
        return None
    data_start = 4 * pkt.normal_pages
    pkt.cut_at = len(pkt.header) + data_start + (len(pkt.body) - data_start) // 2
    return {"kind": "cut", "sent": pkt.cut_at, "packet_bytes": len(pkt.header) + len(pkt.body)}


CORRUPTIONS = {
    "length-above-page": length_above_page,
    "lengths-mismatch": lengths_mismatch,
    "zero-length": zero_length,
    "truncated-stream": truncated_stream,
    "bit-flip": bit_flip,
    "inflates-past-page": inflates_past_page,
    "too-many-pages": too_many_pages,
    "huge-payload": huge_payload,
    "silent-flip": silent_flip,
    "cut-payload": cut_payload,
}


# ---------------------------------------------------------------- the relay

def _recv_exact(f, n):
    data = f.read(n)
    if data is None or len(data) < n:
        raise EOFError(len(data or b""))
    return data


class Relay:
    """Listens on 127.0.0.1 (self.port) and relays every connection to 127.0.0.1:target_port.

    corruption: one of CORRUPTIONS' functions, or None for a transparent relay.  It is tried
    on qpl packets with at least min_pages normal pages of RAMBlock `ramblock`, after `warmup`
    qpl packets with pages went by, until it returns a record once.  noop: the corruption
    picks its packet and records it, but the packet is sent on unchanged (to see the test
    fail when nothing is corrupted)."""

    def __init__(self, target_port, corruption=None, target=None, warmup=16, min_pages=32,
                 ramblock="ram0", noop=False, page_size=PAGE_SIZE, pages_per_packet=PAGES_PER_PACKET):
        self.target_port = target_port
        self.corruption, self.target = corruption, target or Target()
        self.warmup, self.min_pages, self.ramblock, self.noop = warmup, min_pages, ramblock, noop
        self.page_size, self.pages_per_packet = page_size, pages_per_packet
        self.header_len = RAM_FIXED + 8 * pages_per_packet
        self.lock = threading.Lock()
        self.record = None
        self.problems = []          # the stream did not parse as expected
        self.stats = {"connections": 0, "main_bytes": 0, "channels": {}}
        self.qpl_packets = 0
        self.socks, self.threads = [], []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        self._spawn(self._accept_loop)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self.threads.append(t)
        t.start()

    def _problem(self, msg):
        with self.lock:
            self.problems.append(msg)

    def _accept_loop(self):
        while True:
            try:
                src, _ = self.listener.accept()
            except OSError:
                return
            try:
                dst = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                dst.settimeout(None)
            except OSError as e:
                self._problem("could not connect to the destination on port %d: %s" % (self.target_port, e))
                src.close()
                continue
            for s in (src, dst):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.socks += [src, dst]
                self.stats["connections"] += 1
            self._spawn(self._connection, src, dst)

    @staticmethod
    def _abort(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pump(self, a, b, count=None):
        """a -> b until EOF or an error; then both sockets are shut, so that the other side
        sees the connection end as it would without the relay."""
        try:
            while True:
                data = a.recv(1 << 20)
                if not data:
                    break
                b.sendall(data)
                if count:
                    with self.lock:
                        self.stats[count] += len(data)
        except OSError:
            pass
        self._abort(a, b)

    def _connection(self, src, dst):
        """One relayed connection; when either direction ends, both sockets are shut and
        closed, so that each QEMU sees the connection end as it would without the relay (a
        source still writing gets a reset)."""
        back = threading.Thread(target=self._pump, args=(dst, src), daemon=True)
        try:
            head = src.recv(4, socket.MSG_WAITALL)
            if len(head) < 4:
                return
            back.start()
            if struct.unpack(">I", head)[0] != MULTIFD_MAGIC:
                dst.sendall(head)
                self._pump(src, dst, "main_bytes")
                return
            reader = src.makefile("rb", buffering=1 << 20)
            try:
                self._multifd(reader, head, dst)
            finally:
                reader.close()
        except (EOFError, OSError):
            pass
        except RelayError as e:
            self._problem(str(e))
        finally:
            self._abort(src, dst)
            if back.ident is not None:
                back.join(timeout=10)
            src.close()
            dst.close()

    def _multifd(self, reader, head, dst):
        init = head + _recv_exact(reader, INIT.size - 4)
        magic, version, _, channel = INIT.unpack(init)
        if version != MULTIFD_VERSION:
            raise RelayError("multifd initial packet version %d, expected %d" % (version, MULTIFD_VERSION))
        st = {"packets": 0, "qpl_packets": 0, "sync_packets": 0, "bytes": len(init)}
        with self.lock:
            self.stats["channels"][channel] = st
        dst.sendall(init)
        while True:
            try:
                hdr = reader.read(HDR.size)
            except OSError:
                return
            if not hdr:
                return                               # the source closed the channel
            if len(hdr) < HDR.size:
                raise EOFError()
            magic, version, flags = HDR.unpack(hdr)
            if magic != MULTIFD_MAGIC or version != MULTIFD_VERSION:
                raise RelayError("channel %d: packet %d starts with magic 0x%08x version %d"
                                 % (channel, st["packets"], magic, version))
            pkt = None
            if flags & FLAG_DEVICE_STATE:
                rest = _recv_exact(reader, DEVICE_STATE.size)
                size = DEVICE_STATE.unpack(rest)[2]
                out = hdr + rest + _recv_exact(reader, size)
            else:
                header = hdr + _recv_exact(reader, self.header_len - HDR.size)
                size = RAM.unpack_from(header, HDR.size)[2]
                pkt = RamPacket(channel, header, _recv_exact(reader, size), self.page_size)
                out = self._packet(pkt, st)
            dst.sendall(out)
            st["packets"] += 1
            st["bytes"] += len(out)
            if pkt is not None and pkt.cut_at is not None and not self.noop:
                return                              # cut_payload: end the connection here

    def _packet(self, pkt, st):
        if pkt.flags & FLAG_SYNC:
            st["sync_packets"] += 1
            return pkt.encode()
        if pkt.pages_alloc != self.pages_per_packet:
            raise RelayError("channel %d: packet %d has pages_alloc %d, expected %d (a page size "
                             "other than %d?)" % (pkt.channel, pkt.packet_num, pkt.pages_alloc,
                                                  self.pages_per_packet, self.page_size))
        if not pkt.is_qpl() or pkt.normal_pages == 0:
            return pkt.encode()
        st["qpl_packets"] += 1
        broken = pkt.check_qpl_body()
        if broken:
            raise RelayError("channel %d: qpl packet %d as sent by the source: %s"
                             % (pkt.channel, pkt.packet_num, broken))
        with self.lock:
            self.qpl_packets += 1
            if (self.corruption is None or self.record is not None or self.qpl_packets <= self.warmup
                    or pkt.normal_pages < self.min_pages or pkt.ramblock != self.ramblock):
                return pkt.encode()
            original = pkt.encode()
            rec = self.corruption(pkt, self.target)
            if rec is None:
                return original
            rec.update({"channel": pkt.channel, "packet_num": pkt.packet_num, "ramblock": pkt.ramblock,
                        "normal_pages": pkt.normal_pages, "qpl_packet_index": self.qpl_packets,
                        "noop": self.noop})
            self.record = rec
            return original if self.noop else pkt.encode()

    def close(self):
        """Stops listening and ends every relayed connection."""
        if self.closed:
            return
        self.closed = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)   # wakes accept()
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            socks = list(self.socks)
        self._abort(*socks)
        for t in self.threads:
            t.join(timeout=10)
