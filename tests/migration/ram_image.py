"""The demo's guest RAM image: corpus A, then this system's files, then zeros."""

import hashlib
import json
import os
import stat
import subprocess
import sys
import time

from demo_common import CACHE, PAGE, REPO, DemoError, fmt_size, log

CORPUS_A = os.path.join(CACHE, "corpus", "corpusA.bin")
SYSTEM_ROOTS = ["/usr/lib", "/usr/share", "/usr/bin", "/usr/sbin", "/usr/libexec", "/usr/include"]
MAX_FILE_PART = 16 << 20  # at most 16 MiB from any one system file, so no file dominates
IMAGE_FORMAT = 1          # bump when the image layout changes (part of the cache key)


def ensure_corpus():
    if os.path.exists(CORPUS_A) and os.path.exists(CORPUS_A + ".ok"):
        return CORPUS_A
    script = os.path.join(REPO, "scripts", "corpus.py")
    log("corpus A missing; building it with %s (downloads pinned Debian packages once)" % script)
    r = subprocess.run([sys.executable, script], stdout=subprocess.PIPE, timeout=3600)
    if r.returncode != 0 or not os.path.exists(CORPUS_A):
        raise DemoError("could not build corpus A with %s (exit %d)" % (script, r.returncode))
    return CORPUS_A


def system_files():
    """Regular files under SYSTEM_ROOTS, each inode once, in a deterministic
    order that mixes kinds of file: sorted by SHA-256 of the path."""
    seen, out = set(), []
    for root in SYSTEM_ROOTS:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                out.append((hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest(), path))
    out.sort()
    return [p for _, p in out]


def image_paths(size, fill):
    d = os.path.join(CACHE, "demo")
    base = os.path.join(d, "guest-ram-v%d-%s-fill%03d" % (IMAGE_FORMAT, fmt_size(size), round(fill * 1000)))
    return d, base + ".img", base + ".json", base + ".manifest"


def prepare_image(size, fill, rebuild=False):
    """Returns (path, info) of the cached guest RAM image, building it if needed."""
    d, img, meta, manifest = image_paths(size, fill)
    if not rebuild and os.path.exists(img) and os.path.exists(meta):
        with open(meta) as f:
            info = json.load(f)
        if info.get("size") == size and os.path.getsize(img) == size:
            return img, info
    os.makedirs(d, exist_ok=True)
    corpus = ensure_corpus()
    data_len = int(size * fill) // PAGE * PAGE
    log("building guest RAM image %s: %s, %.1f %% real data (%d MiB), the rest zero"
        % (img, fmt_size(size), fill * 100, data_len >> 20))
    h = hashlib.sha256()
    tmp = "%s.tmp.%d" % (img, os.getpid())  # two builders at once must not share a file
    mtmp = "%s.tmp.%d" % (manifest, os.getpid())
    written, nfiles = 0, 0
    chunk = 4 << 20
    done = False
    try:
        with open(tmp, "wb") as out, open(mtmp, "w") as man:
            def put(path, limit):
                nonlocal written
                start = written
                try:
                    with open(path, "rb") as f:
                        while written < data_len and written - start < limit:
                            buf = f.read(min(chunk, data_len - written, limit - (written - start)))
                            if not buf:
                                break
                            out.write(buf)
                            h.update(buf)
                            written += len(buf)
                except OSError:
                    pass
                if written > start:
                    man.write("%d\t%d\t%s\n" % (start, written - start, path))
                    return True
                return False

            put(corpus, data_len)
            nfiles += 1
            if written < data_len:
                files = system_files()
                if not files:
                    raise DemoError("no readable files under %s to fill the image" % " ".join(SYSTEM_ROOTS))
                rounds = 0
                while written < data_len:
                    before = written
                    for p in files:
                        if written >= data_len:
                            break
                        if put(p, MAX_FILE_PART):
                            nfiles += 1
                    rounds += 1
                    if written == before:
                        raise DemoError("could not read enough system files to fill the image")
                if rounds > 1:
                    log("note: the system files were used %d times over to fill the image" % rounds)
            zeros = bytes(1 << 20)
            left = size - written
            while left:
                n = min(left, len(zeros))
                h.update(zeros[:n])
                left -= n
            out.truncate(size)  # zero tail, sparse
        done = True
    finally:
        if not done:
            for t in (tmp, mtmp):
                try:
                    os.unlink(t)
                except OSError:
                    pass
    info = {"size": size, "fill": fill, "data_bytes": written, "files": nfiles,
            "sha256": h.hexdigest(), "layout": "corpus A, then files from %s sorted by "
            "SHA-256 of their path (at most %d MiB each), then zeros"
            % (", ".join(SYSTEM_ROOTS), MAX_FILE_PART >> 20),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.replace(mtmp, manifest)
    os.replace(tmp, img)
    with open(meta, "w") as f:
        json.dump(info, f, indent=1)
    log("image ready: %d files, sha256 %s" % (nfiles, info["sha256"]))
    return img, info
