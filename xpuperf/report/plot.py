"""Inline SVG charts (pure; no plotting library): small line panels, latency
ranges and a roofline.

The HTML pages embed these strings unescaped, so every piece of text that goes
into them (names come from zoo.yaml and from reports folders) is escaped here;
colours come only from PALETTE.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Callable, Sequence

from xpuperf.report.summary import fmt_num

# Tableau 10: distinguishable, and still told apart by most colour-blind readers
# together with the marker shapes, which cycle at a different period.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
MARKERS = ("circle", "square", "triangle", "diamond")

# A small-multiple panel: several fit side by side on a 1,400 px page.
PANEL_W, PANEL_H = 250, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 22, 30
# Tick labels closer than this (px) to the previous one are dropped, not overprinted.
MIN_TICK_GAP = 22
# Above this max/min ratio a linear axis squashes the small values onto zero.
AUTO_LOG_RATIO = 50.0
BAR_ROW = 14  # px per range in a latency panel
ROOF_W, ROOF_H = 640, 340


@dataclass(frozen=True)
class Style:
    """How one series is drawn, the same in every panel, so one legend serves all."""

    color: str
    marker: str


def styles(keys: Sequence[str]) -> dict[str, Style]:
    """A style per key, in order."""
    return {k: Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)])
            for i, k in enumerate(keys)}


def line_panel(title: str, series: Sequence[tuple[str, Style, Sequence[tuple[float, float]]]],
               y_label: str = "QPS", log_y: bool | None = None, x_label: str = "batch size",
               x_text: Callable[[float], str] = str) -> str:
    """One small chart of y against batch size (log2 x; or ``x_label``, its ticks
    written by ``x_text``): one line per series.

    ``log_y`` None picks a log y axis when the values span more than AUTO_LOG_RATIO.
    """
    series = [(label, style, [(x, y) for x, y in pts if x > 0 and math.isfinite(y)])
              for label, style, pts in series]
    series = [s for s in series if s[2]]
    width, height = LEFT + PANEL_W + RIGHT, TOP + PANEL_H + BOTTOM
    head = (f'<svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" class="panel" '
            f'aria-label="{escape(title)}: {escape(y_label)} against {escape(x_label)}">'
            f'<text x="4" y="14" class="title">{escape(title)}</text>')
    if not series:
        return head + f'<text x="{LEFT}" y="{TOP + 40}" class="none">not measured</text></svg>'
    xs = sorted({x for _, _, pts in series for x, _ in pts})
    ys = [y for _, _, pts in series for _, y in pts]
    sx = _log_scale(xs[0], xs[-1], LEFT, LEFT + PANEL_W, base=2)
    positive = [y for y in ys if y > 0]
    if log_y is None:
        log_y = len(positive) == len(ys) and max(positive) / min(positive) > AUTO_LOG_RATIO
    log_y = log_y and bool(positive)
    if log_y:
        y_ticks = _decades(min(positive), max(positive))
        sy = _log_scale(y_ticks[0], y_ticks[-1], TOP + PANEL_H, TOP)
    else:
        y_ticks = _linear_ticks(max(ys))
        sy = _linear_scale(0.0, y_ticks[-1], TOP + PANEL_H, TOP)
    out = [head, f'<rect x="{LEFT}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" class="frame"/>']
    out += _x_ticks(xs, sx, TOP, TOP + PANEL_H, x_text)
    out += _y_ticks(y_ticks, sy, LEFT, LEFT + PANEL_W)
    out.append(f'<text x="{LEFT + PANEL_W}" y="{height - 4}" class="axis-label e">{escape(x_label)}</text>')
    out.append(f'<text x="{LEFT + PANEL_W}" y="14" class="axis-label e">'
               f'{escape(y_label)}{" (log)" if log_y else ""}</text>')
    for label, style, pts in series:
        drawn = [(x, y, sx(x), sy(y)) for x, y in pts if y > 0 or not log_y]
        # One tooltip per line, its every point: a title per marker was a fifth of
        # the charts of a whole tier, and the combinations' tables hold each figure.
        at = [f"bs {x}" if x_label == "batch size" else f"{x_text(x)} {x_label}"
              for x, _, _, _ in drawn]
        tip = "; ".join(f"{a} {fmt_num(y)}" for a, (_, y, _, _) in zip(at, drawn))
        out.append(f'<g class="series"><title>{escape(f"{label}: {tip} {y_label}")}</title>')
        if len(drawn) > 1:
            coords = " ".join(f"{px:.0f},{py:.0f}" for _, _, px, py in drawn)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{style.color}" '
                       f'stroke-width="2"/>')
        for _, _, px, py in drawn:
            out.append(_marker(style, px, py))
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class Range:
    """One latency distribution: its percentiles in ms (any may be missing)."""

    label: str
    style: Style
    p50: float | None
    p90: float | None
    p99: float | None
    p999: float | None


def latency_panel(title: str, ranges: Sequence[Range], width: int = 440) -> str:
    """Latency percentiles, one row per range, on a log ms axis: a dot at p50, a
    thick bar to p90, a tick at p99, a thin whisker to p99.9."""
    label_w = 210
    rows = [r for r in ranges if r.p50 is not None and r.p50 > 0]
    height = TOP + BAR_ROW * max(len(rows), 1) + BOTTOM
    out = [f'<svg width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" class="panel latency" '
           f'aria-label="{escape(title)}: latency percentiles">'
           f'<text x="4" y="14" class="title">{escape(title)}</text>']
    if not rows:
        out.append(f'<text x="4" y="{TOP + 12}" class="none">not measured</text></svg>')
        return "".join(out)
    values = [v for r in rows for v in (r.p50, r.p90, r.p99, r.p999) if v and v > 0]
    ticks = _decades(min(values), max(values))
    x0, x1 = label_w, width - RIGHT
    sx = _log_scale(ticks[0], ticks[-1], x0, x1)
    bottom = TOP + BAR_ROW * len(rows)
    out += _x_ticks(ticks, sx, TOP, bottom, lambda t: fmt_num(t, 3))
    out.append(f'<text x="{x1}" y="{height - 4}" class="axis-label e">'
               f'ms (log)</text>')
    for i, r in enumerate(rows):
        y = TOP + BAR_ROW * i + BAR_ROW / 2
        c = r.style.color
        # The colour once on the group, the widths in report.css (.whisker, .box,
        # .p99), each stroke a short path: a page of every smoke combination stays small.
        # No tooltip: the figures are the combination's performance table's (p99.9
        # its result file's), and 400 of them were a tenth of a smoke run's page.
        out.append(f'<g class="range" stroke="{c}">'
                   f'<text x="{x0 - 6}" y="{y + 4:.0f}" class="tick e">'
                   f'{escape(r.label)}</text>')
        top = r.p999 or r.p99 or r.p90
        if top:
            out.append(f'<path d="M{sx(r.p50):.0f} {y:.0f}H{sx(top):.0f}" class="whisker"/>')
        if r.p90:
            out.append(f'<path d="M{sx(r.p50):.0f} {y:.0f}H{sx(r.p90):.0f}" class="box"/>')
        if r.p99:
            out.append(f'<path d="M{sx(r.p99):.0f} {y - 5:.0f}v10" class="p99"/>')
        out.append(f'<circle cx="{sx(r.p50):.0f}" cy="{y:.0f}" r="3.5"/></g>')
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class RoofPoint:
    label: str
    style: Style
    intensity: float  # FLOPs per byte moved
    flops: float  # achieved FLOP/s
    family: str = ""  # lets the page's family filter hide it


@dataclass(frozen=True)
class Ceiling:
    label: str
    style: Style
    flops: float  # peak FLOP/s


def roofline_svg(points: Sequence[RoofPoint], ceilings: Sequence[Ceiling]) -> str:
    """Achieved FLOP/s against arithmetic intensity (both log), with a dashed
    horizontal line per compute ceiling."""
    points = [p for p in points if p.intensity > 0 and p.flops > 0
              and math.isfinite(p.intensity) and math.isfinite(p.flops)]
    ceilings = [c for c in ceilings if c.flops > 0 and math.isfinite(c.flops)]
    left, label_w = 64, 240
    width, height = left + ROOF_W + label_w, TOP + ROOF_H + 40
    out = [f'<svg width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" class="roofline" '
           f'aria-label="roofline: achieved FLOP/s against arithmetic intensity">']
    if not points:
        out.append(f'<text x="{left}" y="{TOP + 20}" class="none">no FLOP counts with a '
                   f'measured QPS</text></svg>')
        return "".join(out)
    xs = [p.intensity for p in points]
    ys = [p.flops for p in points] + [c.flops for c in ceilings]
    x_ticks, y_ticks = _decades(min(xs), max(xs)), _decades(min(ys), max(ys))
    sx = _log_scale(x_ticks[0], x_ticks[-1], left, left + ROOF_W)
    sy = _log_scale(y_ticks[0], y_ticks[-1], TOP + ROOF_H, TOP)
    out.append(f'<rect x="{left}" y="{TOP}" width="{ROOF_W}" height="{ROOF_H}" class="frame"/>')
    out += _x_ticks(x_ticks, sx, TOP, TOP + ROOF_H, lambda t: fmt_num(t, 3))
    out += _y_ticks(y_ticks, sy, left, left + ROOF_W)
    out.append(f'<text x="{left + ROOF_W / 2}" y="{height - 6}" class="axis-label m">arithmetic intensity (FLOPs / byte, log)</text>')
    out.append(f'<text x="4" y="{TOP - 6}" class="axis-label">achieved FLOP/s (log)</text>')
    last = math.inf
    for c in sorted(ceilings, key=lambda c: c.flops):
        y = sy(c.flops)
        out.append(f'<line x1="{left}" y1="{y:.0f}" x2="{left + ROOF_W}" y2="{y:.0f}" '
                   f'stroke="{c.style.color}" stroke-width="1.5" stroke-dasharray="6 3">'
                   f'<title>{escape(c.label)}</title></line>')
        if last - y >= 12:  # a label closer to the last one would overprint it
            out.append(f'<text x="{left + ROOF_W + 6}" y="{y + 4:.0f}" class="tick">'
                       f'{escape(c.label)}</text>')
            last = y
    for p in points:
        tip = escape(f"{p.label}: {fmt_num(p.flops)} FLOP/s at {fmt_num(p.intensity, 3)} FLOPs/B")
        out.append(f'<g data-family="{escape(p.family)}">'
                   f'{_marker(p.style, sx(p.intensity), sy(p.flops), tip)}</g>')
    out.append("</svg>")
    return "".join(out)


def _log_scale(lo: float, hi: float, a: float, b: float,
               base: float = 10) -> Callable[[float], float]:
    l0, l1 = math.log(lo, base), math.log(hi, base)
    if l1 - l0 < 1e-9:
        l0, l1 = l0 - 1, l1 + 1
    return lambda v: a + (math.log(v, base) - l0) / (l1 - l0) * (b - a)


def _linear_scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


def _decades(lo: float, hi: float) -> list[float]:
    """Powers of ten enclosing [lo, hi], at least two."""
    k0 = math.floor(math.log10(lo))
    k1 = max(math.ceil(math.log10(hi)), k0 + 1)
    return [10.0 ** k for k in range(k0, k1 + 1)]


def _linear_ticks(top: float) -> list[float]:
    """0 and about four round steps (1, 2, 2.5 or 5 times a power of ten) reaching ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def _x_ticks(ticks: Sequence[float], sx: Callable[[float], float], top: float, bottom: float,
             text: Callable[[float], str]) -> list[str]:
    out, last = [], -math.inf
    for t in ticks:
        x = sx(t)
        out.append(f'<path d="M{x:.0f} {top}V{bottom}" class="grid"/>')
        if x - last >= MIN_TICK_GAP:
            out.append(f'<text x="{x:.0f}" y="{bottom + 13}" class="tick m">{text(t)}</text>')
            last = x
    return out


def _y_ticks(ticks: Sequence[float], sy: Callable[[float], float], left: float,
             right: float) -> list[str]:
    out = []
    for t in ticks:
        y = sy(t)
        out.append(f'<path d="M{left} {y:.0f}H{right}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y + 4:.0f}" class="tick e">'
                   f'{fmt_num(t, 3)}</text>')
    return out


def _marker(style: Style, x: float, y: float, tip: str = "") -> str:
    title, color = f"<title>{tip}</title>" if tip else "", style.color
    if style.marker == "circle":
        return f'<circle cx="{x:.0f}" cy="{y:.0f}" r="4" fill="{color}">{title}</circle>'
    if style.marker == "square":
        return (f'<rect x="{x - 3.5:.0f}" y="{y - 3.5:.0f}" width="7" height="7" '
                f'fill="{color}">{title}</rect>')
    if style.marker == "triangle":
        d = f"M{x:.0f},{y - 5:.0f} L{x + 4.5:.0f},{y + 3.5:.0f} L{x - 4.5:.0f},{y + 3.5:.0f} Z"
    else:
        d = f"M{x:.0f},{y - 5:.0f} L{x + 5:.0f},{y:.0f} L{x:.0f},{y + 5:.0f} L{x - 5:.0f},{y:.0f} Z"
    return f'<path d="{d}" fill="{color}">{title}</path>'
