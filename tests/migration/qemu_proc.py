"""QEMU processes for qpl-demo: start and stop them, talk QMP, set up migration."""

import ctypes
import hashlib
import json
import os
import signal
import socket
import subprocess
import time

from demo_common import DemoError, QMPError

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


class QMP:
    def __init__(self, path, timeout=30.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self._read()
        if "QMP" not in self.greeting:
            raise DemoError("unexpected QMP greeting on %s: %r" % (path, self.greeting))
        self.cmd("qmp_capabilities")

    def _read(self, deadline=None):
        while b"\n" not in self.buf:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise DemoError("QEMU closed its QMP socket %s (did it exit?)" % self.path)
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, timeout=30.0, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            try:
                resp = self._read(deadline)
            except socket.timeout:
                raise DemoError("QMP %s: no answer within %.0f s" % (name, timeout))
            if "event" in resp:
                self.events.append(resp)
                continue
            if "error" in resp:
                raise QMPError(name, resp["error"].get("class"), resp["error"].get("desc"))
            return resp.get("return")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- QEMU processes

_children = []


def _die_with_parent():
    # If this script is killed outright, the kernel kills its QEMUs too.
    try:
        if _libc is not None:
            _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def kill_all():
    for p in list(_children):
        if p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass
    deadline = time.monotonic() + 5
    for p in list(_children):
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        _children.remove(p)


def tail(path, n=25):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    | " + l for l in lines[-n:]) or "    | (empty)"


class Qemu:
    def __init__(self, role, binary, args, workdir):
        self.role, self.binary = role, binary
        self.sock = os.path.join(workdir, role + ".qmp")
        self.logpath = os.path.join(workdir, role + ".log")
        self.cmdline = [binary] + args + ["-qmp", "unix:%s,server=on,wait=off" % self.sock]
        self.logf = open(self.logpath, "wb")
        try:
            self.proc = subprocess.Popen(self.cmdline, stdin=subprocess.DEVNULL, stdout=self.logf,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                         start_new_session=True)  # Ctrl-C reaches only us; we stop them
        except OSError as e:
            raise DemoError("cannot start %s QEMU %s: %s" % (role, binary, e))
        _children.append(self.proc)
        self.pid = self.proc.pid
        self.qmp = None

    def connect(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DemoError("%s QEMU exited with status %d while starting.\n  command: %s\n"
                                "  its output:\n%s" % (self.role, self.proc.returncode,
                                                      " ".join(self.cmdline), tail(self.logpath)))
            if os.path.exists(self.sock):
                try:
                    self.qmp = QMP(self.sock)
                    return self
                except (ConnectionRefusedError, FileNotFoundError):
                    pass
            if time.monotonic() > deadline:
                raise DemoError("%s QEMU did not open its QMP socket within %.0f s.\n  its output:\n%s"
                                % (self.role, timeout, tail(self.logpath)))
            time.sleep(0.05)

    def alive(self):
        return self.proc.poll() is None

    def died_msg(self):
        return ("%s QEMU (pid %d) exited with status %s.\n  its output:\n%s"
                % (self.role, self.pid, self.proc.returncode, tail(self.logpath)))

    def cpu_seconds(self, tid=None):
        """utime+stime in seconds of the whole process (all threads), or of its thread tid."""
        path = "/proc/%d/stat" % self.pid if tid is None else "/proc/%d/task/%d/stat" % (self.pid, tid)
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))

    def vcpu_threads(self):
        return [c["thread-id"] for c in self.qmp.cmd("query-cpus-fast")]

    def vcpu_seconds(self, tids):
        return sum(self.cpu_seconds(t) for t in tids)

    def stop(self):
        if self.qmp:
            try:
                self.qmp.cmd("quit", timeout=5)
            except Exception:
                pass
            self.qmp.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc in _children:
            _children.remove(self.proc)
        self.logf.close()


def qpl_libraries(pid):
    """Shared libraries with 'qpl' in their name mapped by a process, with a short hash:
    which build of the library a run really used."""
    libs = set()
    try:
        with open("/proc/%d/maps" % pid) as f:
            for line in f:
                parts = line.split(None, 5)
                path = parts[5].strip() if len(parts) > 5 else ""
                if "qpl" in os.path.basename(path) and ".so" in os.path.basename(path):
                    libs.add(path)
    except OSError:
        return []
    out = []
    for path in sorted(libs):
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:12]
            out.append("%s (sha256 %s, %s)" % (path, digest, time.strftime(
                "%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(path)))))
        except OSError:
            out.append(path)
    return out


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, "/dev/kvm: %s" % e.strerror
    os.close(fd)
    return True, ""


def multifd_methods(qmp):
    """The multifd-compression values this QEMU accepts, from its QMP schema."""
    schema = qmp.cmd("query-qmp-schema")
    by_name = {e["name"]: e for e in schema}
    for e in schema:
        if e.get("meta-type") == "command" and e["name"] == "migrate-set-parameters":
            args = by_name.get(e["arg-type"], {})
            for m in args.get("members", []):
                if m["name"] == "multifd-compression":
                    t = by_name.get(m["type"], {})
                    return list(t.get("values", []))
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_incoming(dst, port_opt, exit_on_error=False):
    """migrate-incoming on 127.0.0.1; returns the port. Retries on a taken port.

    By default the destination stays up after a failed migration, to report the error over
    QMP; exit_on_error=True keeps QEMU's own default: print the error and exit."""
    tries = 1 if port_opt else 5
    keep_up = not exit_on_error
    last = None
    for _ in range(tries):
        port = port_opt or free_port()
        uri = "tcp:127.0.0.1:%d" % port
        args = {"uri": uri}
        if keep_up:
            args["exit-on-error"] = False  # keep the destination up to report errors
        try:
            dst.qmp.cmd("migrate-incoming", **args)
            return port
        except QMPError as e:
            if keep_up and "exit-on-error" in (e.desc or ""):
                keep_up = False  # older QEMU
                try:
                    del args["exit-on-error"]
                    dst.qmp.cmd("migrate-incoming", **args)
                    return port
                except QMPError as e2:
                    e = e2
            last = e
            if "in use" not in (e.desc or "") and "bind" not in (e.desc or "").lower():
                raise DemoError("destination could not listen on %s: %s" % (uri, e.desc))
    if port_opt:
        raise DemoError("port %d on 127.0.0.1 is in use (%s); pick another with --port or leave "
                        "--port out to choose a free one" % (port_opt, last.desc))
    raise DemoError("could not find a free port on 127.0.0.1 after %d tries: %s" % (tries, last.desc))
