#!/usr/bin/env python3
"""Builds corpus A: 256 MiB of real files from pinned Debian 12 packages, byte for byte the same
on every machine, and prints its path.

    scripts/corpus.py               $QEMU_QPL_CACHE/corpus/corpusA.bin, built once
    scripts/corpus.py --force       build it again
    scripts/corpus.py --out FILE    build into FILE instead (no cache stamp)

Corpus A imitates the mix of the Silesia corpus (text, executables, a medical image, databases,
source code, a star catalogue, dictionaries, XML, raster images) with files from the packages of
the `corpus-a` set of scripts/inputs.lock, fetched and verified by scripts/inputs.py.  Nothing
is installed: each package is unpacked with dpkg-deb into a scratch directory.  Every segment is
cut to whole 4 KiB pages and checked against its pinned SHA-256, then the whole corpus against
its own; docs/inputs.md describes the segments.  Standard library only (plus dpkg-deb).
"""

import argparse
import fcntl
import gzip
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from fnmatch import fnmatchcase

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inputs  # noqa: E402

PAGE = 4096
MIB = 1 << 20
TOTAL = 256 * MIB
CHUNK = 1 << 20
CORPUS_SHA256 = "725fc4b3f18cbba76dbbf2ca3a4c895091a934b7ed7de6ad5589762a3ea4b905"

# In corpus order (the alphabetical order of the Silesia files each one stands for): name, size
# in MiB (0: the segment that takes what the others leave of 256 MiB), the Silesia file it
# imitates, and its SHA-256.
SEGMENTS = [
    ("english", 12, "dickens", "1e91bc19a6bbac486cce1d194378befefea94dc53df98b8038198bce279d17c6"),
    ("exec", 0, "mozilla", "c808aed19888072c2d6be4cdfe1f2d8fcf15f4df364fdcc4d7f9889e2f794247"),
    ("mri", 12, "mr", "e6ca21afea0f9e16313ad680e31fcfccbe4c56255231a36da50701db58ce1efe"),
    ("textdb", 40, "nci", "827a3cf105109e0555a0f8fbe588cf9a683ceac64a4f3b91c467f81b94b67b9f"),
    ("lib", 7, "ooffice", "68e0a3316922b6ae515b8323c442dc8ef328b4c6120f7d07424ea01637704781"),
    ("bindb", 12, "osdb", "904053dde508f5735df394a7b3fc6a08319fb0c11cacfca1fb12f99e8c221e2e"),
    ("nonenglish", 8, "reymont", "0edb6e3535bd80dcca5bd1c546305318f7962e3d10b035a494c219f1b35a0c96"),
    ("source", 26, "samba", "ee7ebf009dbaaee88a576562c6ecd080fabb4b5c5fa0f76758162494bc12675e"),
    ("star", 9, "sao", "1a08f4dae717cf0974e9686492d2cee345a63875172c68a0cc84dcf3cb20cb60"),
    ("dict", 50, "webster", "90a8e3067d3c1579b6387f1ea62e8b69d5bb1ad46d373236ea060b61d066308a"),
    ("xml", 7, "xml", "c6f5be5a0340d57a3918b64cedd67a4b993a9a46e0eeb23107b963d8aa890cd8"),
    ("raster", 10, "x-ray", "a984f3364ffc47791dd796fe365358dbd0b4a160e0b66cf2ce9cf54aaa96a90a"),
]


class CorpusError(Exception):
    pass


def log(msg):
    sys.stderr.write("corpus: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------- the packages' files

class Packages:
    """The corpus-a packages: verified .deb files, unpacked on first use."""

    def __init__(self, debs, work):
        self.debs = debs            # package name -> path of the verified .deb
        self.work = work

    def deb(self, package):
        return self.debs[package]

    def tree(self, package):
        d = os.path.join(self.work, package)
        if not os.path.isdir(d):
            tmp = d + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            r = subprocess.run(["dpkg-deb", "-x", self.deb(package), tmp], stderr=subprocess.PIPE,
                               universal_newlines=True)
            if r.returncode != 0:
                raise CorpusError("dpkg-deb -x %s failed: %s" % (self.deb(package), r.stderr.strip()))
            os.rename(tmp, d)
        return d

    def path(self, package, rel):
        p = os.path.join(self.tree(package), rel)
        if not os.path.isfile(p):
            raise CorpusError("%s has no file %s" % (self.deb(package), rel))
        return p


def regular_files(top, include=("*",), exclude=()):
    """Regular files (not symlinks) under top whose names match include and not exclude, in
    the byte order of their paths below top."""
    found = []
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            if any(fnmatchcase(name, p) for p in include) and not any(fnmatchcase(name, p) for p in exclude):
                found.append(os.path.relpath(path, top).encode("utf-8", "surrogateescape"))
    return [os.path.join(top, rel.decode("utf-8", "surrogateescape")) for rel in sorted(found)]


# ---------------------------------------------------------------- byte streams

def raw(path):
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


def gunzip(path):
    """gzip and dictzip (.dz) files, every member."""
    with gzip.open(path, "rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


def unxz(path):
    with lzma.open(path, "rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


def contents(path):
    """A file's bytes, decompressed when it is gzip or dictzip."""
    return gunzip(path) if path.endswith((".gz", ".dz")) else raw(path)


def data_tar(deb):
    """The package's file system as a tar stream (dpkg-deb --fsys-tarfile)."""
    p = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    finished = False
    try:
        yield from iter(lambda: p.stdout.read(CHUNK), b"")
        finished = True
    finally:
        p.stdout.close()
        if finished:
            if p.wait() != 0:
                raise CorpusError("dpkg-deb --fsys-tarfile %s failed (exit %d)" % (deb, p.returncode))
        else:
            p.kill()  # the segment was full before the tar ended
            p.wait()


def r_strings(rdb):
    """The text of an R lazy-load database of character vectors (Rdata.rdb): every string of
    every vector, in file order, one per line.

    The file is a sequence of records, each a big-endian u32 length and a zlib stream of that
    many bytes of R's XDR serialization: "X\\n", three ints (format version, writer's and
    reader's R versions), for format 3 a length-prefixed native encoding, then the vector: an
    int whose low byte is the type (16, STRSXP), an int count, and per element an int whose low
    byte is 9 (CHARSXP) and an int byte length (-1 for NA) followed by the bytes."""
    with open(rdb, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        z = zlib.decompressobj()
        obj = z.decompress(data[pos + 4:])
        if len(obj) != length:
            raise CorpusError("%s: a record at %d inflates to %d bytes, its header says %d"
                              % (rdb, pos, len(obj), length))
        pos = len(data) - len(z.unused_data)
        if obj[:2] != b"X\n":
            raise CorpusError("%s: a record at %d is not in R's XDR format" % (rdb, pos))
        (version,) = struct.unpack_from(">i", obj, 2)
        at = 2 + 12
        if version == 3:
            (enc_len,) = struct.unpack_from(">i", obj, at)
            at += 4 + enc_len
        kind, count = struct.unpack_from(">ii", obj, at)
        at += 8
        if kind & 0xFF != 16:
            raise CorpusError("%s: a record is of R type %d, not a character vector" % (rdb, kind & 0xFF))
        lines = []
        for _ in range(count):
            kind, n = struct.unpack_from(">ii", obj, at)
            at += 8
            if kind & 0xFF != 9:
                raise CorpusError("%s: a vector element is of R type %d, not a string" % (rdb, kind & 0xFF))
            if n > 0:
                lines.append(obj[at:at + n])
                at += n
            lines.append(b"\n")
        yield b"".join(lines)


def chain(*streams):
    for s in streams:
        yield from s


def each(paths):
    for p in paths:
        yield from contents(p)


# ---------------------------------------------------------------- the segments

def seg_english(pk):
    """Jane Austen's six novels, fortune cookies, English man pages (troff, decompressed)."""
    return chain(
        r_strings(pk.path("r-cran-janeaustenr", "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")),
        each(regular_files(os.path.join(pk.tree("fortunes"), "usr/share/games/fortunes"), exclude=("*.dat",))),
        each(regular_files(os.path.join(pk.tree("manpages"), "usr/share/man"), ("*.gz",))),
        each(regular_files(os.path.join(pk.tree("manpages-dev"), "usr/share/man"), ("*.gz",))))


def seg_exec(pk):
    """The installed files of three applications, as their packages' data tar: ELF executables,
    shared libraries, plugins and resources."""
    return chain(*(data_tar(pk.deb(p)) for p in ("darktable", "gnucash", "hugin")))


def seg_mri(pk):
    """An MRI volume (MRIcron's ch2better template), decompressed NIfTI."""
    return gunzip(pk.path("mricron-data", "usr/share/mricron/templates/ch2better.nii.gz"))


def seg_textdb(pk):
    """NWChem's basis-set library, a text database, as the package's data tar."""
    return data_tar(pk.deb("nwchem-data"))


def seg_lib(pk):
    """One large GUI-toolkit shared library."""
    return raw(pk.path("libwxgtk3.2-1", "usr/lib/x86_64-linux-gnu/libwx_gtk3u_core-3.2.so.0.2.0"))


def seg_bindb(pk):
    """Binary databases: two SQLite files and two GeoIP databases."""
    return chain(raw(pk.path("proj-data", "usr/share/proj/proj.db")),
                 raw(pk.path("ibus-table-cangjie5", "usr/share/ibus-table/tables/cangjie5.db")),
                 raw(pk.path("geoip-database", "usr/share/GeoIP/GeoIP.dat")),
                 raw(pk.path("geoip-database", "usr/share/GeoIP/GeoIPv6.dat")))


def seg_nonenglish(pk):
    """Polish and French man pages (troff, decompressed)."""
    return chain(*(each(regular_files(os.path.join(pk.tree(p), "usr/share/man"), ("*.gz",)))
                   for p in ("manpages-pl", "manpages-pl-dev", "manpages-fr")))


def seg_source(pk):
    """The binutils 2.40 source tarball, decompressed."""
    return unxz(pk.path("binutils-source", "usr/src/binutils/binutils-2.40.tar.xz"))


def seg_star(pk):
    """Two Tycho-2 star catalogue index files (FITS binary tables)."""
    d = "usr/share/astrometry"
    p = "astrometry-data-tycho2-10-19-littleendian"
    return chain(raw(pk.path(p, d + "/index-tycho2-11.littleendian.fits")),
                 raw(pk.path(p, d + "/index-tycho2-12.littleendian.fits")))


def seg_dict(pk):
    """Dictionaries (GCIDE, FOLDOC, the Devil's), decompressed dictd files and their indexes,
    then a large English word list."""
    parts = []
    for package, name in (("dict-gcide", "gcide"), ("dict-foldoc", "foldoc"), ("dict-devil", "devil")):
        parts += [gunzip(pk.path(package, "usr/share/dictd/%s.dict.dz" % name)),
                  raw(pk.path(package, "usr/share/dictd/%s.index" % name))]
    parts.append(raw(pk.path("wamerican-insane", "usr/share/dict/american-english-insane")))
    return chain(*parts)


def seg_xml(pk):
    """Unicode CLDR 41's XML data, as the package's data tar."""
    return data_tar(pk.deb("unicode-cldr-core"))


def seg_raster(pk):
    """Uncompressed raster images: GIMP patterns and brushes, OpenGFX sprite files."""
    return chain(
        each(regular_files(os.path.join(pk.tree("gimp-data-extras"), "usr/share/gimp/2.0"), ("*.pat", "*.gbr"))),
        each(regular_files(os.path.join(pk.tree("openttd-opengfx"), "usr/share/games/openttd/baseset/opengfx"),
                           ("*.grf",))))


def cut(stream, limit, path):
    """Writes the first `limit` bytes of the stream to path, cut down to whole pages; returns
    (bytes written, SHA-256, whether the stream had fewer than limit bytes)."""
    n = 0
    with open(path, "wb") as f:
        try:
            for chunk in stream:
                take = chunk[:limit - n]
                f.write(take)
                n += len(take)
                if n >= limit:
                    break
        finally:
            stream.close()
        short = n < limit
        n = n // PAGE * PAGE
        f.truncate(n)
    return n, inputs.sha256_of(path), short


def build(out, work, keep_segments=None):
    """Builds corpus A into `out`; raises CorpusError on any checksum mismatch."""
    t0 = time.monotonic()
    pins = inputs.select(inputs.load_lock(), ["corpus-a"])
    paths = inputs.fetch(pins, quiet=True)
    pk = Packages({p.package: paths[p.file] for p in pins}, os.path.join(work, "unpacked"))
    producers = {name: globals()["seg_" + name] for name, _, _, _ in SEGMENTS}
    # The fixed-size segments first: the filler gets what they leave.
    results, used = {}, 0
    order = [s for s in SEGMENTS if s[1]] + [s for s in SEGMENTS if not s[1]]
    for name, mib, _silesia, _sha in order:
        limit = mib * MIB if mib else TOTAL - used
        seg = os.path.join(work, "seg-" + name)
        results[name] = cut(producers[name](pk), limit, seg)
        used += results[name][0]
    log("%-11s %10s %6s  %-64s" % ("segment", "bytes", "pages", "sha256"))
    bad = []
    for name, mib, silesia, want in SEGMENTS:
        n, got, short = results[name]
        note = "" if got == want else "  MISMATCH, expected " + want
        if short and mib:
            note += "  (the packages gave only %d of %d bytes)" % (n, mib * MIB)
        log("%-11s %10d %6d  %s%s" % (name, n, n // PAGE, got, note))
        if got != want:
            bad.append(name)
    h = hashlib.sha256()
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        for name, _, _, _ in SEGMENTS:
            seg = os.path.join(work, "seg-" + name)
            for chunk in raw(seg):
                h.update(chunk)
                f.write(chunk)
            if keep_segments:
                os.makedirs(keep_segments, exist_ok=True)
                shutil.copyfile(seg, os.path.join(keep_segments, name))
    size = os.path.getsize(tmp)
    log("corpus A: %d bytes, sha256 %s (%.0f s)" % (size, h.hexdigest(), time.monotonic() - t0))
    if bad or size != TOTAL or h.hexdigest() != CORPUS_SHA256:
        os.unlink(tmp)
        raise CorpusError("corpus A does not match its pins (segments %s; %d bytes, expected %d; sha256 %s, "
                          "expected %s). The packages were verified, so the recipe in scripts/corpus.py or "
                          "a tool it uses (dpkg-deb, Python's gzip/lzma) behaves differently here"
                          % (", ".join(bad) or "all equal", size, TOTAL, h.hexdigest(), CORPUS_SHA256))
    os.replace(tmp, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="build it again even if it is there")
    ap.add_argument("--out", help="build into this file instead of the cache (always builds)")
    ap.add_argument("--keep-segments", metavar="DIR", help="also keep each segment as DIR/NAME")
    opts = ap.parse_args(argv)
    cache = inputs.cache_dir()
    d = os.path.join(cache, "corpus")
    os.makedirs(d, exist_ok=True)
    out = os.path.abspath(opts.out) if opts.out else os.path.join(d, "corpusA.bin")
    stamp = out + ".ok"
    try:
        with open(os.path.join(d, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second caller waits and reuses it
            if not opts.out and not opts.force:
                if _stamped(out, stamp):
                    print(out)
                    return 0
                if os.path.exists(out) and os.path.getsize(out) == TOTAL:
                    if inputs.sha256_of(out) == CORPUS_SHA256:
                        _write_stamp(stamp)
                        print(out)
                        return 0
            work = os.path.join(d, "work")
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            try:
                log("building corpus A into %s" % out)
                build(out, work, opts.keep_segments)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if not opts.out:
                _write_stamp(stamp)
    except (inputs.InputError, CorpusError) as e:
        log("ERROR: %s" % e)
        return 1
    except KeyboardInterrupt:
        return 130
    print(out)
    return 0


def _stamped(out, stamp):
    try:
        with open(stamp) as f:
            return f.read().strip() == CORPUS_SHA256 and os.path.getsize(out) == TOTAL
    except OSError:
        return False


def _write_stamp(stamp):
    with open(stamp, "w") as f:
        f.write(CORPUS_SHA256 + "\n")


if __name__ == "__main__":
    sys.exit(main())
