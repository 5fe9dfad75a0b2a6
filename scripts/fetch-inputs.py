#!/usr/bin/env python3
"""Fetches the project's pinned inputs from Debian's registry and verifies them.

    scripts/fetch-inputs.py [WHAT...]              into $QEMU_QPL_CACHE/dl/ (default: all)
    scripts/fetch-inputs.py --check-index [WHAT...]  is every pinned file still in the registry's
                                                   index, with its pinned size and SHA-256?

WHAT is `all`, a set of scripts/inputs.lock (qemu, intel-qpl, corpus-a), a file name or a
package name.  Exit status: 0 done, 1 a file could not be supplied or the index disagrees
(the message says which file and what to do), 2 a usage error.  See docs/inputs.md.
"""

import argparse
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inputs  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", nargs="*", help="all (default), qemu, intel-qpl, corpus-a, a file or a package")
    ap.add_argument("--check-index", action="store_true",
                    help="compare the registry's index with the pins (fresh lists); download nothing")
    ap.add_argument("--cache", help="the cache directory (default: $QEMU_QPL_CACHE or /var/tmp/qemu-qpl)")
    ap.add_argument("--lock", default=inputs.LOCK_FILE, help="the lock file (default: scripts/inputs.lock)")
    ap.add_argument("--print-paths", action="store_true", help="print the verified files' paths on stdout")
    ap.add_argument("-q", "--quiet", action="store_true", help="say nothing about files already verified")
    opts = ap.parse_args(argv)
    if opts.cache:
        os.environ["QEMU_QPL_CACHE"] = os.path.abspath(opts.cache)
    try:
        pins = inputs.select(inputs.load_lock(opts.lock), opts.what)
        if opts.check_index:
            problems = inputs.check_index(pins)
            if problems:
                inputs.log("the registry's index disagrees with %s:\n%s"
                           % (opts.lock, "\n".join("  " + p for p in problems)))
                return 1
            inputs.log("all %d pinned files are listed in the index with their pinned size and "
                       "SHA-256" % len(pins))
            return 0
        paths = inputs.fetch(pins, quiet=opts.quiet)
    except inputs.InputError as e:
        inputs.log("ERROR: %s" % e)
        return 1
    except KeyboardInterrupt:
        return 130
    if opts.print_paths:
        for p in pins:
            print(paths[p.file])
    return 0


if __name__ == "__main__":
    sys.exit(main())
