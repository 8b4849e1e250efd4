"""Checks a `leash report --html` page (tests/test_report_html.c) with nothing but the standard library.

    html_report_check.py PAGE.html REPORT.txt RUN_DIR...     the page of these runs
    html_report_check.py --png FILE.png                       a screenshot is a PNG with a drawn page on it

The page: every element closed in order (void elements aside) with html.parser; self-contained (no script,
link, iframe, img, object, embed or base element, no src/href other than an in-page #anchor, no url() or
@import in styles); the five plots present; every polyline, mapped back through its <svg>'s data-x and
data-y, equals the run's metrics.jsonl values at their steps (each run's measured points, all of them, within
the 0.005 px the page rounds to); each reward-hacking alarm marker at the first step metrics.jsonl says
it fired; the first/last table equal to `leash report`'s text output (REPORT.txt) cell by cell. Prints the
counts and the worst difference; exit 1 on any failure.
"""
import html.parser
import json
import math
import re
import struct
import sys
import zlib

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
SVG_VOID_OK = {"rect", "line", "polyline", "circle", "path"}  # written as <x .../> (self-closing)
FORBIDDEN = {"script", "link", "iframe", "img", "object", "embed", "base", "frame", "audio", "video"}
PLOTS = ["plot-reward", "plot-kl", "plot-beta", "plot-entropy", "plot-fluency"]


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.svgs, self.polylines, self.alarms = [], [], {}, [], []
        self.svg = None
        self.tables, self.table, self.row, self.cell = {}, None, None, None

    def error_at(self, msg):
        self.errors.append(f"line {self.getpos()[0]}: {msg}")

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in FORBIDDEN:
            self.error_at(f"<{tag}> makes the page load or run something")
        for k, v in attrs:
            if k in ("src", "href", "xlink:href") and not (v or "").startswith("#"):
                self.error_at(f"<{tag} {k}={v!r}> refers outside the page")
            if k.startswith("on"):
                self.error_at(f"<{tag} {k}=...>: an event handler (script)")
        if tag == "svg":
            self.svg = a.get("id")
            self.svgs[self.svg] = a
        if tag == "polyline":
            self.polylines.append((self.svg, a))
        if tag == "line" and "alarm" in a.get("class", ""):
            self.alarms.append((self.svg, a))
        if tag == "table":
            self.table = self.tables.setdefault(a.get("id"), [])
        if tag == "tr" and self.table is not None:
            self.row = []
            self.table.append(self.row)
        if tag in ("td", "th") and self.row is not None:
            self.cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        if tag not in SVG_VOID_OK and tag not in VOID:
            self.error_at(f"<{tag}/> self-closed")
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return self.error_at(f"</{tag}> closes a void element")
        if not self.stack or self.stack[-1] != tag:
            return self.error_at(f"</{tag}> while <{self.stack[-1] if self.stack else None}> is open")
        self.stack.pop()
        if tag == "svg":
            self.svg = None
        if tag in ("td", "th") and self.cell is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if self.stack and self.stack[-1] == "style" and re.search(r"url\(|@import", data):
            self.error_at("a style that loads something (url() or @import)")


def metrics(run):
    rows = []
    with open(f"{run}/metrics.jsonl") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def check_page(page, report, runs):
    p = Page()
    with open(page, encoding="utf-8") as f:  # strict: the page must be UTF-8
        p.feed(f.read())
    p.close()
    errors = list(p.errors)
    if p.stack:
        errors.append(f"unclosed at the end: {p.stack}")
    for plot in PLOTS:
        if plot not in p.svgs:
            errors.append(f"no <svg id={plot}>")
    data = [metrics(r) for r in runs]

    # the curves: each polyline's points mapped back to (step, value) through its svg's linear maps
    points, worst_px, seen = 0, 0.0, {}
    for svg, a in p.polylines:
        x0, x1, px0, px1 = map(float, p.svgs[svg]["data-x"].split())
        y0, y1, py0, py1 = map(float, p.svgs[svg]["data-y"].split())
        r, key = int(a["data-run"]), a["data-key"]
        pts = [tuple(map(float, xy.split(","))) for xy in a["points"].split()]
        got = seen.setdefault((svg, r, key), [])
        for px, py in pts:
            got.append((x0 + (px - px0) * (x1 - x0) / (px1 - px0), y0 + (py - py0) * (y1 - y0) / (py1 - py0),
                        (x1 - x0) / (px1 - px0), (y1 - y0) / (py1 - py0)))
        points += len(pts)
    for (svg, r, key), got in seen.items():
        want = [(row["step"], row[key]) for row in data[r] if isinstance(row.get(key), (int, float))]
        if len(got) != len(want):
            errors.append(f"{svg}: run {r} {key}: {len(got)} points drawn, {len(want)} measured")
            continue
        for (gx, gy, sx, sy), (wx, wy) in zip(got, want):
            worst_px = max(worst_px, abs(gx - wx) / abs(sx), abs(gy - wy) / abs(sy))
    for svg in PLOTS:
        for r, rows in enumerate(data):
            keys = {"plot-reward": ["objective/scores", "gold/reward"], "plot-kl": ["objective/kl", "objective/kl_exact"],
                    "plot-beta": ["beta"], "plot-entropy": ["objective/entropy"], "plot-fluency": ["fluency/ref_nll"]}[svg]
            for key in keys:
                if any(isinstance(row.get(key), (int, float)) for row in rows) and (svg, r, key) not in seen:
                    errors.append(f"{svg}: run {r} measured {key} but the plot has no curve of it")
    if worst_px > 0.0051:
        errors.append(f"a curve is {worst_px:.4f} px off its metrics (at most 0.005 expected from rounding)")

    # the alarm markers: at the first step whose alarm/reward_hacking is on, in every plot
    alarms = 0
    for r, rows in enumerate(data):
        fired = [row["step"] for row in rows if row.get("alarm/reward_hacking")]
        marks = {(svg, a["data-step"]) for svg, a in p.alarms if int(a["data-run"]) == r}
        if fired and marks != {(svg, str(fired[0])) for svg in p.svgs if "data-x" in p.svgs[svg]}:
            errors.append(f"run {r}: the alarm fired at step {fired[0]}; marked {sorted(marks)}")
        if not fired and marks:
            errors.append(f"run {r}: the alarm never fired; marked {sorted(marks)}")
        alarms += len(marks)

    # the first/last table against `leash report`'s text
    table = {row[0]: row[1:] for row in p.tables.get("metrics", [])[1:]}
    compared = 0
    with open(report, encoding="utf-8", errors="replace") as f:  # leash report prints samples byte for byte
        for line in f:
            cells = [c.strip() for c in line.split("|")]
            if len(cells) != len(runs) + 1 or cells[0] not in table or cells[0].startswith("first"):
                continue
            html_cells = [c.replace("\u2192", "->") for c in table[cells[0]]]
            for t, h in zip(cells[1:], html_cells):
                if t.split() != h.split():
                    errors.append(f"table row {cells[0]!r}: leash report says {t!r}, the page {h!r}")
                compared += 1
    if compared != len(runs) * 11:
        errors.append(f"{compared} table cells matched leash report's rows, expected {len(runs) * 11}")

    print(f"html_report_check: {len(p.svgs)} plots, {len(p.polylines)} polylines with {points} points (worst "
          f"{worst_px:.4f} px from metrics.jsonl), {alarms} alarm markers, {compared} table cells equal to leash "
          f"report; {len(errors)} problems")
    for e in errors[:20]:
        print("  " + e)
    return not errors


def png_pixels(path):
    """(width, height, rows of bytes per pixel) of an 8-bit non-interlaced RGB or RGBA PNG."""
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    at, idat, hdr = 8, b"", None
    while at < len(b):
        n, kind = struct.unpack(">I4s", b[at:at + 8])
        body = b[at + 8:at + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + n
    w, h, depth, color, _, _, interlace = hdr
    if depth != 8 or color not in (2, 6) or interlace:
        sys.exit(f"{path}: PNG of depth {depth}, colour type {color}, interlace {interlace}: not read here")
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            c = prev[i - bpp] if i >= bpp else 0
            pb = prev[i]
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + pb) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + pb) // 2) & 255
            elif ft == 4:
                pa, pp, pc = abs(pb - c), abs(a - c), abs(a + pb - 2 * c)
                line[i] = (line[i] + (a if pa <= pp and pa <= pc else pb if pp <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, bpp, rows


def check_png(path):
    w, h, bpp, rows = png_pixels(path)
    inked = sum(1 for row in rows for i in range(0, w * bpp, bpp) if min(row[i:i + 3]) < 200)
    colours = len({bytes(row[i:i + 3]) for row in rows[::7] for i in range(0, w * bpp, bpp * 7)})
    print(f"html_report_check: {path}: {w}x{h}, {inked} dark pixels ({100.0 * inked / (w * h):.2f}%), "
          f"{colours} colours sampled")
    return inked > 0.005 * w * h and colours > 10


if __name__ == "__main__":
    if sys.argv[1] == "--png":
        sys.exit(0 if check_png(sys.argv[2]) else 1)
    sys.exit(0 if check_page(sys.argv[1], sys.argv[2], sys.argv[3:]) else 1)
