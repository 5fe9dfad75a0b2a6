#!/usr/bin/env python3
"""Sums the IAA model's statistics files (IAA_MODEL_STATS=DIR, one
<pid>.json per process) and checks that hardware descriptors did the work.

  stats.py DIR [--min-compress N] [--min-decompress N] [--max-faults N]
               [--max-errors N] [--shapes]

Exits 1, naming the figure, when a bound is not met."""
import argparse
import glob
import json
import os
import sys

FIELDS = ("compress_ok", "decompress_ok", "noop_ok", "drain_ok", "page_faults", "errors",
          "output_overflow", "faults_resolved", "submitted", "refused", "dropped")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--min-compress", type=int, default=0)
    parser.add_argument("--min-decompress", type=int, default=0)
    parser.add_argument("--max-faults", type=int, default=None)
    parser.add_argument("--max-errors", type=int, default=None,
                        help="errors other than output overflow (pages that do not compress)")
    parser.add_argument("--shapes", action="store_true", help="print the descriptor shapes")
    args = parser.parse_args()

    files = sorted(glob.glob(os.path.join(args.dir, "*.json")))
    if not files:
        sys.exit(f"stats.py: no statistics in {args.dir}: was the process on the model (make -s iaa-model-env)?")
    total = dict.fromkeys(FIELDS, 0)
    shapes = {}
    for path in files:
        with open(path) as f:
            doc = json.load(f)
        for key in FIELDS:
            total[key] += doc.get(key, 0)
        if doc.get("submitted"):
            print(f"  pid {doc['pid']}: " + ", ".join(f"{k} {doc[k]}" for k in FIELDS if doc.get(k)))
        for shape in doc.get("shapes", []):
            key = (shape["opcode"], shape["flags"], shape["op_flags"], shape["src2_size"])
            entry = shapes.setdefault(key, [0, shape.get("first_aecs", "")])
            entry[0] += shape["count"]
    print(f"  {len(files)} processes: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    if args.shapes:
        names = {0x42: "DECOMPRESS", 0x43: "COMPRESS", 0x00: "NOOP", 0x02: "DRAIN"}
        for (opcode, flags, op_flags, src2), (count, aecs) in sorted(shapes.items()):
            print(f"  {names.get(opcode, hex(opcode))}: flags {flags}, operation flags {op_flags}, "
                  f"src2 size {src2}: {count} descriptors" + (f"; first AECS: {aecs}" if aecs else ""))

    failures = []
    if total["compress_ok"] < args.min_compress:
        failures.append(f"compress_ok {total['compress_ok']} < {args.min_compress}")
    if total["decompress_ok"] < args.min_decompress:
        failures.append(f"decompress_ok {total['decompress_ok']} < {args.min_decompress}")
    if args.max_faults is not None and total["page_faults"] > args.max_faults:
        failures.append(f"page_faults {total['page_faults']} > {args.max_faults}")
    other_errors = total["errors"] - total["output_overflow"]
    if args.max_errors is not None and other_errors > args.max_errors:
        failures.append(f"errors other than output overflow {other_errors} > {args.max_errors}")
    if failures:
        sys.exit("stats.py: " + "; ".join(failures))


if __name__ == "__main__":
    main()
