"""The project's pinned inputs from Debian's registry (scripts/inputs.lock): fetch, verify, locate.

Everything goes through a private apt state under $QEMU_QPL_CACHE/apt/: its own source list
(built at run time from the archive URI of the system's apt sources, so no host name is
committed), its own index lists, archives, package cache and an empty dpkg status.  The
system's apt configuration and state are read, never written.

A pinned file is taken, in this order, from:
  1. $QEMU_QPL_CACHE/dl/ when it is there and matches its size and SHA-256;
  2. the offline mirror, $QEMU_QPL_SHARED/cache/ (default ../shared/cache beside the
     checkout), when present and matching;
  3. the registry, with `apt-get download` (binary packages) or `apt-get source
     --download-only` (source packages), then checked against the lock file.
A file that none of them can supply is an error naming the file, its SHA-256 and where to
put it by hand.  docs/inputs.md has the details.  Standard library only.
"""

import contextlib
import fcntl
import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK_FILE = os.path.join(REPO, "scripts", "inputs.lock")
SETS = ("qemu", "intel-qpl", "corpus-a")
# The reference build is x86_64 Linux; the private apt state asks for amd64 packages
# whatever the host's dpkg architecture.
ARCH = "amd64"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class InputError(Exception):
    """A failure an operator can act on; the message says what to do."""


def log(msg):
    sys.stderr.write("fetch-inputs: %s\n" % msg)
    sys.stderr.flush()


def cache_dir():
    return os.environ.get("QEMU_QPL_CACHE") or "/var/tmp/qemu-qpl"


def mirror_dir():
    """The offline mirror's directory, or None when there is none."""
    shared = os.environ.get("QEMU_QPL_SHARED") or os.path.join(REPO, "..", "shared")
    d = os.path.join(shared, "cache")
    return os.path.realpath(d) if os.path.isdir(d) else None


# ---------------------------------------------------------------- the lock file

class Pin:
    FIELDS = ("set", "kind", "suite", "component", "package", "version", "size", "sha256", "file")

    def __init__(self, fields, where):
        if len(fields) != len(self.FIELDS):
            raise InputError("%s: expected %d fields (%s), found %d"
                             % (where, len(self.FIELDS), " ".join(self.FIELDS), len(fields)))
        for name, value in zip(self.FIELDS, fields):
            setattr(self, name, value)
        if self.kind not in ("src", "deb"):
            raise InputError("%s: kind must be src or deb, not %r" % (where, self.kind))
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise InputError("%s: %r is not a SHA-256 in hex" % (where, self.sha256))
        try:
            self.size = int(self.size)
        except ValueError:
            raise InputError("%s: size %r is not a number" % (where, self.size))

    def describe(self):
        return "%s (%s %s %s, %s/%s, %d bytes, SHA-256 %s)" % (
            self.file, "source package" if self.kind == "src" else "package", self.package,
            self.version, self.suite, self.component, self.size, self.sha256)

    def apt_spec(self):
        """What apt is asked for: binary packages of an architecture say which one."""
        if self.kind == "deb" and self.file.endswith("_%s.deb" % ARCH):
            return "%s:%s=%s" % (self.package, ARCH, self.version)
        return "%s=%s" % (self.package, self.version)


def load_lock(path=LOCK_FILE):
    pins = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                pins.append(Pin(line.split(), "%s:%d" % (path, n)))
    names = [p.file for p in pins]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError("%s lists %s more than once" % (path, ", ".join(dup)))
    return pins


def select(pins, wanted):
    """Pins named by set names, 'all', file names or package names (all when wanted is empty)."""
    if not wanted or "all" in wanted:
        return list(pins)
    out = []
    for w in wanted:
        hit = [p for p in pins if w in (p.set, p.file, p.package)]
        if not hit:
            raise InputError("nothing pinned is called %r: use all, a set (%s), a file name or a "
                             "package name from %s" % (w, ", ".join(SETS), LOCK_FILE))
        out += [p for p in hit if p not in out]
    return out


# ---------------------------------------------------------------- checking files

def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def mismatch(pin, path):
    """None when the file at path is the pinned one, else what is wrong with it."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        return "cannot read it: %s" % e.strerror
    if size != pin.size:
        return "it has %d bytes, the pin says %d" % (size, pin.size)
    got = sha256_of(path)
    if got != pin.sha256:
        return "its SHA-256 is %s, the pin says %s" % (got, pin.sha256)
    return None


# ---------------------------------------------------------------- the system's apt sources

def _deb822_stanzas(text):
    stanza, key = {}, None
    for raw in text.splitlines() + [""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
        elif raw[0] in " \t" and key:
            stanza[key] += " " + raw.strip()
        elif ":" in raw:
            key, value = raw.split(":", 1)
            key = key.strip().lower()
            stanza[key] = value.strip()


def _os_codename():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("VERSION_CODENAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def debian_archive():
    """(URI, keyring) of the Debian archive in the system's apt sources.

    QEMU_QPL_DEBIAN_URI overrides the URI.  Otherwise the first `deb` source whose suites
    include the system's release (not its -security or -updates suites), from
    /etc/apt/sources.list.d/debian.sources first, then the other sources files."""
    keyring = DEFAULT_KEYRING
    if os.environ.get("QEMU_QPL_DEBIAN_URI"):
        return os.environ["QEMU_QPL_DEBIAN_URI"].rstrip("/"), keyring
    release = _os_codename()
    files = ["/etc/apt/sources.list.d/debian.sources"]
    files += sorted(f for f in glob.glob("/etc/apt/sources.list.d/*.sources") if f not in files)
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for s in _deb822_stanzas(text):
            if "deb" not in s.get("types", "").split() or s.get("enabled", "yes") == "no":
                continue
            suites = s.get("suites", "").split()
            if release and release not in suites:
                continue
            uris = s.get("uris", "").split()
            if uris:
                signed = s.get("signed-by", "")
                if signed.startswith("/") and os.path.exists(signed):
                    keyring = signed
                return uris[0].rstrip("/"), keyring
    one_line = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in one_line:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            tok = line.split("#", 1)[0].split()
            if len(tok) >= 3 and tok[0] == "deb":
                rest = tok[1:]
                if rest[0].startswith("["):
                    while rest and not rest[0].endswith("]"):
                        rest = rest[1:]
                    rest = rest[1:]
                if len(rest) >= 2 and (not release or rest[1] == release):
                    return rest[0].rstrip("/"), keyring
    raise InputError("no Debian archive found in the system's apt sources (/etc/apt/sources.list.d/"
                     "debian.sources, *.sources, sources.list): set QEMU_QPL_DEBIAN_URI to the "
                     "archive's URI (the one you would put in a `deb` line)")


# ---------------------------------------------------------------- the private apt state

class PrivateApt:
    """apt-get with its own sources, lists, archives and status under `root`."""

    def __init__(self, root, pins):
        self.root = root
        self.updated = False
        self.uri, self.keyring = debian_archive()
        suites = {}
        for p in pins:
            types = suites.setdefault(p.suite, {})
            types.setdefault("deb-src" if p.kind == "src" else "deb", set()).add(p.component)
        lines = []
        for suite in sorted(suites):
            for typ in sorted(suites[suite]):
                lines.append("%s [signed-by=%s] %s %s %s" % (
                    typ, self.keyring, self.uri, suite, " ".join(sorted(suites[suite][typ]))))
        self.sources = "\n".join(lines) + "\n"
        self.conf = os.path.join(root, "apt.conf")

    def _write_config(self):
        for d in ("lists/partial", "archives/partial", "cache", "sources.list.d", "preferences.d"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        status = os.path.join(self.root, "status")
        if not os.path.exists(status):
            open(status, "w").close()
        with open(os.path.join(self.root, "sources.list"), "w") as f:
            f.write(self.sources)
        r = self.root
        conf = [
            'Dir::Etc::SourceList "%s/sources.list";' % r,
            'Dir::Etc::SourceParts "%s/sources.list.d";' % r,
            'Dir::Etc::Preferences "%s/preferences";' % r,
            'Dir::Etc::PreferencesParts "%s/preferences.d";' % r,
            'Dir::State::Lists "%s/lists";' % r,
            'Dir::State::Status "%s/status";' % r,
            'Dir::State::extended_states "%s/extended_states";' % r,
            'Dir::Cache "%s/cache";' % r,
            'Dir::Cache::Archives "%s/archives";' % r,
            'Dir::Cache::pkgcache "%s/cache/pkgcache.bin";' % r,
            'Dir::Cache::srcpkgcache "%s/cache/srcpkgcache.bin";' % r,
            'APT::Architecture "%s";' % ARCH,
            "#clear APT::Architectures;",
            'APT::Architectures { "%s"; };' % ARCH,
            'Acquire::Languages "none";',
            # The system's update hooks (appstream, PackageKit) are about its own state.
            "#clear APT::Update::Pre-Invoke;",
            "#clear APT::Update::Post-Invoke;",
            "#clear APT::Update::Post-Invoke-Success;",
        ]
        # Only the package and source indexes: no DEP-11 metadata, icons or Contents.
        try:
            dump = subprocess.run(["apt-config", "dump"], stdout=subprocess.PIPE,
                                  universal_newlines=True).stdout
        except FileNotFoundError:
            raise InputError("apt-config not found: the inputs are fetched with Debian's apt")
        for typ, target in _index_targets(dump):
            if (typ, target) not in (("deb", "Packages"), ("deb-src", "Sources")):
                conf.append('Acquire::IndexTargets::%s::%s::DefaultEnabled "false";' % (typ, target))
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")

    def run(self, args, cwd=None, check=True):
        cmd = ["apt-get", "-c", self.conf, "-q"] + args
        env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        try:
            r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True)
        except FileNotFoundError:
            raise InputError("apt-get not found: the inputs are fetched with Debian's apt")
        if check and r.returncode != 0:
            raise InputError("%s failed (exit %d):\n%s" % (" ".join(cmd), r.returncode,
                                                           _indent(r.stderr or r.stdout)))
        return r

    def ensure_lists(self, force=False):
        """Index lists for the pinned suites; `apt-get update` when missing, stale or forced."""
        self._write_config()
        stamp = os.path.join(self.root, "lists", ".qemu-qpl-sources")
        try:
            with open(stamp) as f:
                current = f.read() == self.sources
        except OSError:
            current = False
        if current and not force:
            return
        if force and self.updated:
            return
        log("apt-get update of the private apt state %s (suites: %s)"
            % (self.root, ", ".join(sorted({l.split()[3] for l in self.sources.splitlines()}))))
        t0 = time.monotonic()
        r = self.run(["update"], check=False)
        # apt-get update exits 0 even when an index could not be fetched: its W:/E: lines say so.
        problems = [l for l in (r.stderr + r.stdout).splitlines() if l.startswith(("E:", "W:", "Err:"))]
        if r.returncode != 0 or any(l.startswith(("E:", "Err:")) for l in problems):
            raise InputError("apt-get update of %s failed (exit %d); is the archive %s reachable?\n%s"
                             % (self.conf, r.returncode, self.uri, _indent("\n".join(problems) or r.stderr)))
        for l in problems:
            log("  " + l)
        with open(stamp, "w") as f:
            f.write(self.sources)
        self.updated = True
        log("  index lists updated in %.0f s" % (time.monotonic() - t0))

    def print_uris(self, pins):
        """{file: (uri, apt's local name, size, sha256)} for these pins; those missing from the
        index are absent, with apt's reason in the second return value."""
        found, reasons = {}, {}
        groups = {}
        for p in pins:
            groups.setdefault((p.kind, p.apt_spec()), []).append(p)
        debs = [spec for kind, spec in groups if kind == "deb"]
        if len(debs) > 1:
            # One call for all binary packages; apt refuses the lot when one is missing, and
            # then each is asked for alone below to find which.
            r = self.run(["download", "--print-uris"] + debs, check=False)
            if r.returncode == 0:
                listed = _parse_print_uris(r.stdout)
                for p in pins:
                    if p.kind == "deb" and p.file in listed:
                        found[p.file] = listed[p.file]
                groups = {k: g for k, g in groups.items()
                          if k[0] != "deb" or any(p.file not in found for p in g)}
        for (kind, spec), group in groups.items():
            args = ["download", "--print-uris", spec] if kind == "deb" else \
                ["source", "--print-uris", spec]
            r = self.run(args, check=False)
            listed = _parse_print_uris(r.stdout)
            for p in group:
                if p.file in listed:
                    found[p.file] = listed[p.file]
                else:
                    reasons[p.file] = _apt_reason(r) if r.returncode != 0 else \
                        "the index lists %s without a file of this name" % spec
        return found, reasons


def _index_targets(dump):
    """(type, target) of every index target in `apt-config dump` output."""
    seen = []
    for line in dump.splitlines():
        parts = line.split("::")
        if len(parts) >= 4 and parts[0] == "Acquire" and parts[1] == "IndexTargets":
            key = (parts[2], parts[3].split(" ", 1)[0])
            if key not in seen:
                seen.append(key)
    return seen


def _parse_print_uris(text):
    out = {}
    for line in text.splitlines():
        tok = line.split()
        if len(tok) >= 4 and tok[0].startswith("'") and tok[0].endswith("'"):
            uri = tok[0].strip("'")
            pool_name = urllib.parse.unquote(uri.rsplit("/", 1)[-1])
            algo, _, digest = tok[3].partition(":")
            out[pool_name] = (uri, tok[1], int(tok[2]), digest if algo.upper() == "SHA256" else None)
    return out


def _apt_reason(r):
    lines = [l for l in (r.stderr + r.stdout).splitlines() if l.startswith("E:")]
    return "apt says: " + " / ".join(lines) if lines else "apt-get exited with %d" % r.returncode


def _indent(text):
    return "\n".join("    " + l for l in text.strip().splitlines())


# ---------------------------------------------------------------- fetching

@contextlib.contextmanager
def locked(cache):
    """One fetch at a time per cache: apt's lists and dl/ are shared by parallel builds."""
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".fetch-inputs.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another fetch is running on %s: waiting for it" % cache)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _apt_writable_tmp(parent):
    """A scratch directory apt's download sandbox user (_apt) can write into."""
    d = tempfile.mkdtemp(prefix=".apt-", dir=parent)
    if os.geteuid() == 0:
        try:
            os.chown(d, pwd.getpwnam("_apt").pw_uid, -1)
        except KeyError:
            pass
    return d


def _place(src, dest):
    """Copies src to dest through a temporary name, so dest is only ever complete."""
    tmp = "%s.part.%d" % (dest, os.getpid())
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def fetch(pins, cache=None, quiet=False):
    """Makes every pin present and verified in CACHE/dl/; returns {file: path}.

    Raises InputError listing every file it could not supply."""
    cache = cache or cache_dir()
    dl = os.path.join(cache, "dl")
    os.makedirs(dl, exist_ok=True)
    with locked(cache):
        return _fetch_locked(pins, cache, dl, quiet)


def _fetch_locked(pins, cache, dl, quiet):
    paths, wanted = {}, []
    mirror = mirror_dir()
    for p in pins:
        dest = os.path.join(dl, p.file)
        if os.path.exists(dest):
            bad = mismatch(p, dest)
            if bad is None:
                paths[p.file] = dest
                if not quiet:
                    log("%s: in %s, verified" % (p.file, dl))
                continue
            log("%s in %s is not the pinned file (%s): fetching it again" % (p.file, dl, bad))
            os.unlink(dest)
        if mirror and os.path.exists(os.path.join(mirror, p.file)):
            bad = mismatch(p, os.path.join(mirror, p.file))
            if bad is None:
                _place(os.path.join(mirror, p.file), dest)
                paths[p.file] = dest
                log("%s: from the offline mirror %s, verified" % (p.file, mirror))
                continue
            log("%s in the offline mirror %s is not the pinned file (%s): trying the registry"
                % (p.file, mirror, bad))
        wanted.append(p)
    if not wanted:
        return paths

    failures = []
    try:
        apt = PrivateApt(os.path.join(cache, "apt"), load_lock() + wanted)
        apt.ensure_lists()
        found, reasons = apt.print_uris(wanted)
        if reasons:
            # The lists may predate the pinned version: one fresh update, then ask again.
            apt.ensure_lists(force=True)
            found, reasons = apt.print_uris(wanted)
    except InputError as e:
        found, reasons = {}, {p.file: str(e) for p in wanted}
    for p in wanted:
        if p.file in reasons:
            failures.append((p, "the registry does not serve it: " + reasons[p.file]))
            continue
        _, _, size, sha = found[p.file]
        if size != p.size or (sha and sha != p.sha256):
            failures.append((p, "the registry's index lists it with %d bytes and SHA-256 %s, not "
                                "the pinned file" % (size, sha)))
    ok = [p for p in wanted if p.file in found and p not in [f[0] for f in failures]]
    if ok:
        total = sum(p.size for p in ok)
        log("downloading %d file%s (%.1f MB) from %s with apt-get"
            % (len(ok), "" if len(ok) == 1 else "s", total / 1e6, apt.uri))
        t0 = time.monotonic()
        failures += _download(apt, ok, found, dl, paths)
        log("  downloaded in %.0f s" % (time.monotonic() - t0))
    if failures:
        raise InputError(_failure_text(failures, dl, mirror))
    return paths


def _download(apt, pins, found, dl, paths):
    failures = []
    tmp = _apt_writable_tmp(dl)
    try:
        debs = [p for p in pins if p.kind == "deb"]
        sources = sorted({p.apt_spec() for p in pins if p.kind == "src"})
        jobs = ([["download"] + [p.apt_spec() for p in debs]] if debs else []) + \
            [["source", "--download-only", s] for s in sources]
        for args in jobs:
            r = apt.run(args, cwd=tmp, check=False)
            if r.returncode != 0:
                log("apt-get %s failed: %s" % (" ".join(args), _apt_reason(r)))
        for p in pins:
            got = os.path.join(tmp, found[p.file][1])
            if not os.path.exists(got):
                failures.append((p, "apt-get did not download it (see the messages above)"))
                continue
            bad = mismatch(p, got)
            if bad:
                failures.append((p, "the registry served a different file: " + bad))
                continue
            dest = os.path.join(dl, p.file)
            os.replace(got, dest)
            paths[p.file] = dest
            log("%s: from the registry, verified" % p.file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return failures


def _failure_text(failures, dl, mirror):
    out = ["cannot supply %d pinned file%s:" % (len(failures), "" if len(failures) == 1 else "s")]
    for p, why in failures:
        out.append("  %s\n    %s" % (p.describe(), why))
    out.append("Put each missing file, exactly as named, in %s/ by hand (from any Debian mirror or "
               "snapshot archive that still has it; it is checked against the SHA-256 above)%s, then "
               "run this again." % (dl, " or in the offline mirror " + mirror if mirror else
                                    " or in an offline mirror, $QEMU_QPL_SHARED/cache/"))
    return "\n".join(out)


def check_index(pins, cache=None):
    """Asks the registry's index (fresh lists) for every pin, downloading nothing; returns the
    list of problems, empty when every pinned file is listed with its pinned size and SHA-256."""
    cache = cache or cache_dir()
    with locked(cache):
        apt = PrivateApt(os.path.join(cache, "apt"), load_lock() + pins)
        apt.ensure_lists(force=True)
        found, reasons = apt.print_uris(pins)
    problems = []
    for p in pins:
        if p.file in reasons:
            problems.append("%s: not in the index: %s" % (p.describe(), reasons[p.file]))
            continue
        uri, _, size, sha = found[p.file]
        if size != p.size or sha != p.sha256:
            problems.append("%s: the index lists %d bytes, SHA-256 %s" % (p.describe(), size, sha))
        else:
            log("%-60s %9d  %s  listed as pinned" % (p.file, size, sha[:16]))
    return problems
