"""qpl-demo's results as an SVG chart: three panels side by side (total time, CPU seconds of
source and destination, bytes on the wire), one bar per method, from the JSON document the
demo saves.  The SVG is written as text here; standard library only."""

import os
from xml.sax.saxutils import escape

from demo_report import fmt_bandwidth, header_bandwidths, method_name

FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
WIDTH = 1080
LABEL_W = 260           # method names, left of the first panel
GAP = 24                # between panels
ROW_H = 28
BAR_H = 17
TOP = 78                # title, subtitle, panel titles
BOTTOM = 62             # legend, verification, source note
# Fill colours by implementation, the same in every chart.
COLOURS = {"none": "#8c8c8c", "zlib": "#a6761d", "zstd": "#7570b3", "qpl-ours": "#1f77b4",
           "qpl-intel": "#e6730f", "qpl-mixed": "#2e9e4f"}


def row_label(row, many_channels, many_bw=False):
    """'qpl (this library)', 'qpl/turbo (this library)', 'qpl (Intel QPL)', 'qpl ours→intel-qpl',
    'zstd', ... (+ channels, + max-bandwidth)."""
    m, src, dst = row["compression"], row["src"], row["dst"]
    if m == "qpl" and src == dst == "ours":
        text = method_name(row) + " (this library)"
    elif m == "qpl" and src == dst == "intel-qpl":
        text = "qpl (Intel QPL 1.9)"
    elif src == dst == "ours":
        text = m
    else:
        text = "%s %s→%s" % (m, src, dst)
    if many_channels:
        text += ", %d ch" % row["channels"]
    if many_bw:
        text += ", " + ("uncapped" if not row.get("max_bandwidth") else fmt_bandwidth(row["max_bandwidth"]))
    return text


def row_colour(row):
    m, src, dst = row["compression"], row["src"], row["dst"]
    if m != "qpl":
        return COLOURS.get(m, "#555555")
    if src == dst == "ours":
        return COLOURS["qpl-ours"]
    if src == dst == "intel-qpl":
        return COLOURS["qpl-intel"]
    return COLOURS["qpl-mixed"]


def _num(v, digits):
    return ("%%.%df" % digits) % v


class Svg:
    def __init__(self):
        self.parts = []

    def add(self, fmt, *args):
        self.parts.append(fmt % args)

    def text(self, x, y, s, size=12, anchor="start", weight="normal", fill="#222222"):
        self.add('<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" font-weight="%s" fill="%s">%s</text>',
                 x, y, size, anchor, weight, fill, escape(s))

    def rect(self, x, y, w, h, fill, opacity=1.0):
        self.add('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.2f"/>',
                 x, y, max(w, 0.0), h, fill, opacity)

    def line(self, x1, y1, x2, y2, stroke="#999999"):
        self.add('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>',
                 x1, y1, x2, y2, stroke)


def render_svg(doc):
    """The chart of a results document (what --save writes) as SVG text."""
    h, rows = doc["header"], doc["rows"]
    if not rows:
        raise ValueError("the results hold no completed migration: nothing to draw")
    many_channels = len({r["channels"] for r in rows}) > 1
    many_bw = len({r.get("max_bandwidth") for r in rows}) > 1
    height = TOP + ROW_H * len(rows) + BOTTOM
    panel_w = (WIDTH - LABEL_W - 2 * GAP - 10) / 3.0
    svg = Svg()
    svg.add('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'font-family="%s">', WIDTH, height, WIDTH, height, FONT)
    svg.rect(0, 0, WIDTH, height, "#ffffff")

    mib = h["guest_ram"] >> 20
    size = "%d GiB" % (mib >> 10) if mib % 1024 == 0 else "%d MiB" % mib
    guest = "running guest" if h.get("guest") == "running" else "paused guest"
    versions = sorted({r.get(k + "_version", "").split(" ")[0] for r in rows for k in ("src", "dst")} - {""})
    svg.text(10, 22, "Live migration of a %s %s, QEMU %s, multifd over 127.0.0.1: less is better"
             % (size, guest, "/".join(versions) or "?"), size=15, weight="bold")
    runs = "median of %d runs" % h["repeat"] if h.get("repeat", 1) > 1 else "1 run per method"
    channels = sorted({r["channels"] for r in rows})
    svg.text(10, 40, "%s; %.0f %% real data; %s channel%s; max-bandwidth %s; %s; %s; load average %.1f at start"
             % (h["date"], h["fill"] * 100, ",".join(map(str, channels)), "" if channels == [1] else "s",
                " and ".join(fmt_bandwidth(b) for b in header_bandwidths(h)),
                runs, h.get("host", ""), h.get("load_average_at_start", 0.0)), size=11, fill="#555555")

    panels = [
        ("total time (s)", lambda r: [(r["total_ms"] / 1000.0, 1.0)]),
        ("CPU seconds, source + destination", lambda r: [(r["src_cpu_s"], 1.0), (r["dst_cpu_s"], 0.45)]),
        ("bytes on the wire (MiB)", lambda r: [(r["wire_bytes"] / 1048576.0, 1.0)]),
    ]
    value_room = [58, 100, 50]
    for i, (title, parts) in enumerate(panels):
        x0 = LABEL_W + i * (panel_w + GAP)
        svg.text(x0, TOP - 12, title, size=12, weight="bold")
        values = [[(v or 0.0, o) for v, o in parts(r)] for r in rows]
        top = max(sum(v for v, _ in vs) for vs in values) or 1.0
        digits = 0 if top >= 100 else 1 if top >= 10 else 2
        scale = (panel_w - value_room[i]) / top
        svg.line(x0, TOP - 4, x0, TOP + ROW_H * len(rows) - 4)
        for j, (r, vs) in enumerate(zip(rows, values)):
            y = TOP + j * ROW_H + (ROW_H - BAR_H) / 2.0 - 4
            x = x0
            for v, opacity in vs:
                svg.rect(x, y, v * scale, BAR_H, row_colour(r), opacity)
                x += v * scale
            label = " + ".join(_num(v, digits) for v, _ in vs)
            svg.text(x + 4, y + BAR_H - 4, label, size=11)
    for j, r in enumerate(rows):
        y = TOP + j * ROW_H + ROW_H / 2.0
        svg.text(LABEL_W - 8, y, row_label(r, many_channels, many_bw), size=12, anchor="end")

    # The CPU panel's legend, on one line under its bars.
    y = TOP + ROW_H * len(rows) + 2
    x = LABEL_W + panel_w + GAP
    svg.rect(x, y, 12, 10, "#555555", 1.0)
    svg.text(x + 16, y + 9, "source (guest vCPUs left out)", size=10)
    svg.rect(x + 170, y, 12, 10, "#555555", 0.45)
    svg.text(x + 186, y + 9, "destination", size=10)
    bad = [r for r in doc.get("runs", []) if not r.get("ram_equal")]
    verdict = ("destination RAM equal to the source's (SHA-256) in every run" if not bad else
               "RAM MISMATCH in %d run(s)" % len(bad))
    svg.text(10, height - 22, verdict + "; failures: %d" % len(doc.get("failures", [])), size=10,
             fill="#555555" if not bad else "#b00020")
    command = h.get("command", "")
    if len(command) > 120:
        command = command[:117] + "..."
    svg.text(10, height - 8, "drawn by tests/migration/qpl-demo.py (docs/demo.md); command: %s" % command,
             size=10, fill="#555555")
    svg.add("</svg>")
    return "\n".join(svg.parts) + "\n"


def write_chart(doc, path):
    """Writes the chart to path through a temporary file (a reader never sees half a chart)."""
    text = render_svg(doc)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
