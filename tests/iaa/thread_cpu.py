#!/usr/bin/env python3
"""Samples the CPU time of every thread of process PID until it exits and keeps the last
value seen for each thread (threads that end keep theirs): `thread_cpu.py PID OUT.json`.
Started by tests/iaa/measure.py's wrappers just before they exec QEMU (same PID)."""
import json
import os
import sys
import time


def sample(pid, seen):
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return False
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
        seconds = (int(fields[11]) + int(fields[12])) / tick
        seen[tid] = (comm, max(seconds, seen.get(tid, ("", 0.0))[1]))
    return True


def main():
    pid, out = int(sys.argv[1]), sys.argv[2]
    seen = {}
    while sample(pid, seen):
        with open(out + ".tmp", "w") as f:
            json.dump({tid: {"comm": c, "cpu_s": s} for tid, (c, s) in seen.items()}, f)
        os.replace(out + ".tmp", out)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
