"""qpl-demo's report: the table of results (medians over repeated runs), its footnotes, the
comparison of our qpl rows with Intel QPL's, and the per-run RAM verification lines, all from
the JSON document the demo saves.  Standard library only."""

import statistics

from demo_common import fmt_mib, fmt_size


def fmt_bandwidth(bw):
    """max-bandwidth as people say it: 'unlimited', '125 MB/s' (decimal: 1 Gbit/s = 125 MB/s)."""
    if not bw:
        return "unlimited"
    return "%g MB/s" % (bw / 1e6)


def method_name(row):
    """'qpl/auto', 'qpl/turbo' (our qpl at the source's multifd-qpl-level, set or QEMU's
    default), 'qpl' (a QEMU without the parameter), 'zstd', ..."""
    level = row.get("qpl_level") or row.get("src_qpl_level")
    return row["compression"] + ("/" + level if level else "")


def header_bandwidths(h):
    """The header's max-bandwidth: a list since bandwidth lists; one value in older documents."""
    bw = h.get("max_bandwidth")
    return bw if isinstance(bw, list) else [bw]


COLUMNS = [
    ("method", "method", "l"), ("src→dst", None, "l"), ("ch", "channels", "r"),
    ("total ms", "total_ms", "r"), ("downtime ms", "downtime_ms", "r"),
    ("throughput mbps", "mbps", "r"), ("pages/s", "pages_per_second", "r"),
    ("QEMU pages/s", "qemu_pages_per_second", "r"),
    ("wire MiB", "wire_bytes", "r"), ("wire/RAM", "wire_ratio", "r"),
    ("src CPU %", "src_cpu_pct", "r"), ("dst CPU %", "dst_cpu_pct", "r"),
    ("src CPU s", "src_cpu_s", "r"), ("dst CPU s", "dst_cpu_s", "r"),
    ("other CPU %", "other_cpu_pct", "r"), ("RAM", None, "l"),
]
# Shown when the guest ran during the migration, before the RAM column.
LIVE_COLUMNS = [("passes", "dirty_syncs", "r"), ("resent pages", "resent_pages", "r"),
                ("guest ops", "guest_ops", "r")]


def columns_for(rows):
    cols = list(COLUMNS)
    if len({r.get("max_bandwidth") for r in rows}) > 1:
        cols.insert(3, ("max-bw", "max_bandwidth", "r"))
    if any(r.get("guest_mode") == "running" for r in rows):
        cols = cols[:-1] + LIVE_COLUMNS + cols[-1:]
    return cols


def cell(row, key, title):
    if title == "method":
        return method_name(row)
    if title == "max-bw":
        return fmt_bandwidth(row.get("max_bandwidth"))
    if title == "src→dst":
        return "%s→%s" % (row["src"], row["dst"])
    if title == "RAM":
        return "equal" if row.get("ram_equal") else "DIFFERS"
    v = row.get(key)
    if v is None:
        return "-"
    if key == "wire_bytes":
        return fmt_mib(v)
    if key == "wire_ratio":
        return "%.3f" % v
    if key in ("src_cpu_s", "dst_cpu_s"):
        return "%.2f" % v
    if key in ("mbps",):
        return "%.0f" % v
    if isinstance(v, float):
        return "%.0f" % v
    return str(v)


def render_table(rows):
    cols = columns_for(rows)
    head = [c[0] for c in cols]
    body = [[cell(r, k, t) for t, k, _ in cols] for r in rows]
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(len(head))]

    def line(vals):
        out = []
        for i, v in enumerate(vals):
            out.append(v.ljust(widths[i]) if cols[i][2] == "l" else v.rjust(widths[i]))
        return "| " + " | ".join(out) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if cols[i][2] == "r" else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), sep] + [line(b) for b in body])


FOOTNOTE = (
    "wire = query-migrate ram.transferred: every byte QEMU wrote to the migration streams (main channel + "
    "multifd channels, packet headers and device state included; TCP/IP overhead not). throughput = QEMU's "
    "ram.mbps at completion: wire megabits/s over the transfer time (total - setup). pages/s = guest pages "
    "(normal + zero) / transfer time; QEMU pages/s = query-migrate ram.pages-per-second, QEMU's last "
    "100 ms sample (what upstream's tables show). CPU % = process CPU seconds (utime+stime, all threads, from "
    "/proc/PID/stat) / total time, % of one core. other CPU % = what every other process on the machine "
    "used meanwhile (from /proc/stat), % of one core: well above 0 means the figures are disturbed.")
LIVE_FOOTNOTE = (
    "Running guest: passes = query-migrate ram.dirty-sync-count at completion (QEMU's dirty-bitmap syncs: "
    "the first pass over all RAM, each resend pass, the final stop-and-copy; a paused guest completes at "
    "3). resent pages = pages sent (normal + zero) - pages of RAM: what the guest dirtied and QEMU sent "
    "again. guest ops = RAM operations the guest program did between migrate and completion (its "
    "heartbeat x ops per tick). downtime = how long the guest really stood still.")


NUMERIC = ["total_ms", "downtime_ms", "setup_ms", "mbps", "pages_per_second", "qemu_pages_per_second",
           "wire_bytes", "ram_bytes", "wire_ratio", "src_cpu_s", "dst_cpu_s", "src_cpu_pct",
           "dst_cpu_pct", "wall_s", "other_cpu_s", "other_cpu_pct", "dirty_syncs", "resent_pages",
           "guest_ops", "pages_changed_from_image"]


def median_row(runs):
    row = dict(runs[0])
    for k in NUMERIC:
        vals = [r[k] for r in runs if r.get(k) is not None]
        row[k] = statistics.median(vals) if vals else None
    row["ram_equal"] = all(r.get("ram_equal") for r in runs)
    row["runs"] = len(runs)
    return row


def is_intel(row):
    return row["compression"] == "qpl" and row["src"] == row["dst"] == "intel-qpl"


def is_ours(row):
    return row["compression"] == "qpl" and row["src"] == row["dst"] == "ours"


def comparison(rows):
    """Each of our qpl rows against Intel QPL's row of the same channels and max-bandwidth:
    total time, CPU seconds (source + destination) and wire bytes as ratios (below 1: ours is
    less).  Empty when no Intel QPL row completed."""
    out = []
    for ref in [r for r in rows if is_intel(r)]:
        group = [r for r in rows if is_ours(r) and r["channels"] == ref["channels"]
                 and r.get("max_bandwidth") == ref.get("max_bandwidth")]
        if not group:
            continue
        out.append("ours / Intel QPL, %d channels, max-bandwidth %s (Intel: %.1f s, %.2f CPU s, %s MiB):"
                   % (ref["channels"], fmt_bandwidth(ref.get("max_bandwidth")), ref["total_ms"] / 1000.0,
                      ref["src_cpu_s"] + ref["dst_cpu_s"], fmt_mib(ref["wire_bytes"])))
        for r in group:
            out.append("  %-10s total time %.2fx   CPU s (src+dst) %.2fx   wire %.2fx"
                       % (method_name(r), r["total_ms"] / float(ref["total_ms"]),
                          (r["src_cpu_s"] + r["dst_cpu_s"]) / max(ref["src_cpu_s"] + ref["dst_cpu_s"], 1e-9),
                          r["wire_bytes"] / float(ref["wire_bytes"])))
    return out


def format_report(doc):
    """The table and the verification lines, from the document --json/--save write."""
    h, rows = doc["header"], doc["rows"]
    out = ["qpl-demo %s — %s guest RAM, %.0f %% real data (%d MiB), %s, multifd over "
           "127.0.0.1, accel %s, max-bandwidth %s, %s"
           % (h["date"], fmt_size(h["guest_ram"]), h["fill"] * 100, h["image_data_bytes"] >> 20,
              h.get("guest_desc", "paused guest"), h.get("accel_note", h["accel"]),
              " and ".join(fmt_bandwidth(b) for b in header_bandwidths(h)),
              ("median of %d runs" % h["repeat"]) if h["repeat"] > 1 else "1 run each")]
    if h.get("guest", "paused") == "running":
        out[-1] += (", switch-over only after a pass with no dirty page until pass %d, then "
                    "downtime-limit %d ms" % (h["live_syncs"], h["converge_ms"]))
    elif h.get("downtime_limit") is not None:
        out[-1] += ", downtime-limit %d ms" % h["downtime_limit"]
    versions = sorted({"%s = %s" % (r["src"], r["src_version"]) for r in rows} |
                      {"%s = %s" % (r["dst"], r["dst_version"]) for r in rows})
    if versions:
        out.append("QEMU: " + "; ".join(versions) + ". Host: " + h["host"] +
                   ", load average %.1f at start." % h["load_average_at_start"])
    libs = sorted({l for r in rows for k in ("src_qpl_libraries", "dst_qpl_libraries") for l in r.get(k, [])})
    if libs:
        out.append("qpl library loaded by ours: " + "; ".join(libs))
    out.append("command: " + h["command"])
    out.append("")
    if not rows:
        out.append("(no migration completed)")
    else:
        cmp = comparison(rows)
        out += [render_table(rows), ""] + (cmp + [""] if cmp else []) + [FOOTNOTE] + (
            [LIVE_FOOTNOTE] if any(r.get("guest_mode") == "running" for r in rows) else []) + ["",
                "RAM verification: SHA-256 of each side's guest RAM, read from /proc/PID/mem after "
                "the migration (image: %s)" % h["image_sha256"]]
    for r in doc["runs"]:
        head = "  %-5s ch=%d %s%s→%s run %d: " % (
            method_name(r), r["channels"],
            ("max-bw %s " % fmt_bandwidth(r.get("max_bandwidth"))) if len(header_bandwidths(h)) > 1 else "",
            r["src"], r["dst"], r["run"])
        if r["ram_equal"] and r.get("guest_mode") == "running":
            line = head + ("equal, sha256 src = dst = %s; the guest ran %d ticks x %d ops during the "
                           "migration, %d passes, %d pages resent; %d pages now differ from the image" % (
                               r["dst_sha256"], r["guest_bursts"], r["guest"]["ops_per_tick"],
                               r["dirty_syncs"], r["resent_pages"], r.get("pages_changed_from_image", -1)))
        elif r["ram_equal"]:
            line = head + "equal, sha256 src = dst = %s%s" % (
                r["dst_sha256"], " = image" if r["src_equals_image"]
                else " (note: the source's RAM differs from the image file)")
        else:
            line = head + "MISMATCH: sha256 src %s, dst %s; %d pages differ, first at %s" % (
                r["src_sha256"], r["dst_sha256"], r["differing_pages"], ", ".join(r["first_differing_offsets"]))
            if r.get("first_differing_bytes"):
                line += "; bytes " + ", ".join(r["first_differing_bytes"])
        out.append(line)
    out += ["note: " + n for n in doc["notes"]]
    out += ["unsupported: " + u for u in doc["unsupported"]]
    out += ["FAILED: " + f for f in doc["failures"]]
    return "\n".join(out)
