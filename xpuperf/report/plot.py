"""QPS against batch size as an inline SVG string (pure; no plotting library).

The HTML report embeds the string unescaped, so every piece of text that goes
into it (combination names come from zoo.yaml) is escaped here.
"""
from __future__ import annotations

import math
from html import escape
from typing import Callable, Sequence

from xpuperf.report.summary import Row, fmt_num

# Tableau 10: distinguishable, and still tell apart for most colour-blind readers
# together with the marker shapes, which cycle at a different period.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
MARKERS = ("circle", "square", "triangle", "diamond")

PLOT_W, PLOT_H = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 20, 56
LEGEND_W, LEGEND_ROW = 300, 18
# Tick labels closer than this (px) to the previous one are dropped, not overprinted.
MIN_TICK_GAP = 22
# Above this max/min ratio a linear axis squashes the slow combinations onto zero.
AUTO_LOG_RATIO = 50.0


def qps_svg(rows: Sequence[Row], log_y: bool | None = None) -> str:
    """QPS (y) against batch size (x, log2): one line and marker set per combination.

    ``log_y`` None picks a log y axis when the QPS span more than AUTO_LOG_RATIO.
    """
    series = [(_label(row), [(p.batch_size, p.qps) for p in row.throughput
                             if p.batch_size > 0 and math.isfinite(p.qps)])
              for row in rows]
    series = [(label, pts) for label, pts in series if pts]
    width = LEFT + PLOT_W + RIGHT + LEGEND_W
    if not series:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" '
                f'role="img" aria-label="QPS plot"><text x="{LEFT}" y="34" '
                f'>no performance measured</text></svg>')

    bss = sorted({bs for _, pts in series for bs, _ in pts})
    qpss = [q for _, pts in series for _, q in pts]
    positive = [q for q in qpss if q > 0]
    if log_y is None:
        log_y = bool(positive) and len(positive) == len(qpss) and \
            max(positive) / min(positive) > AUTO_LOG_RATIO
    log_y = log_y and bool(positive)
    x_lo, x_hi = math.log2(bss[0]), math.log2(bss[-1])
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if log_y:
        y_lo = math.floor(math.log10(min(positive)))
        y_hi = max(math.ceil(math.log10(max(positive))), y_lo + 1)
        y_ticks = [10.0 ** k for k in range(y_lo, y_hi + 1)]
    else:
        y_ticks = _linear_ticks(max(qpss))
        y_lo, y_hi = 0.0, y_ticks[-1]

    def sx(bs: float) -> float:
        return LEFT + (math.log2(bs) - x_lo) / (x_hi - x_lo) * PLOT_W

    def sy(q: float) -> float:
        v = math.log10(q) if log_y else q
        return TOP + PLOT_H - (v - y_lo) / (y_hi - y_lo) * PLOT_H

    height = max(TOP + PLOT_H + BOTTOM, TOP + LEGEND_ROW * (len(series) + 1))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="QPS against batch size" class="qps-plot">',
           f'<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" '
           f'fill="none" stroke="#888"/>']
    out += _x_axis(bss, sx)
    out += _y_axis(y_ticks, sy)
    out.append(f'<text x="{LEFT + PLOT_W / 2:.1f}" y="{TOP + PLOT_H + 42}" '
               f'text-anchor="middle" class="axis-label">batch size (log2)</text>')
    y_mid = TOP + PLOT_H / 2
    out.append(f'<text x="16" y="{y_mid:.1f}" text-anchor="middle" class="axis-label" '
               f'transform="rotate(-90 16 {y_mid:.1f})">QPS{" (log)" if log_y else ""}</text>')

    for i, (label, pts) in enumerate(series):
        color, marker = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
        drawn = [(bs, q, sx(bs), sy(q)) for bs, q in pts if q > 0 or not log_y]
        out.append(f'<g class="series"><title>{escape(label)}</title>')
        if len(drawn) > 1:
            coords = " ".join(f"{x:.1f},{y:.1f}" for _, _, x, y in drawn)
            out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" '
                       f'stroke-width="2"/>')
        for bs, q, x, y in drawn:
            tip = escape(f"{label}: bs {bs}, {fmt_num(q)} QPS")
            out.append(_marker(marker, x, y, color, tip))
        out.append("</g>")
        lx, ly = LEFT + PLOT_W + RIGHT, TOP + LEGEND_ROW * i + 6
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 16}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="2"/>')
        out.append(_marker(marker, lx + 8, ly, color, escape(label)))
        out.append(f'<text x="{lx + 24}" y="{ly + 4}" class="legend">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _label(row: Row) -> str:
    points = row.throughput
    scenario = points[0].scenario if points else ""
    return row.combination if scenario in ("", "offline") else f"{row.combination} ({scenario})"


def _linear_ticks(top: float) -> list[float]:
    """0 and about five round steps (1, 2, 2.5 or 5 times a power of ten) reaching ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def _x_axis(bss: list[int], sx: Callable[[float], float]) -> list[str]:
    out, last = [], -math.inf
    for bs in bss:
        x = sx(bs)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + PLOT_H}" '
                   f'class="grid"/>')
        if x - last >= MIN_TICK_GAP:
            out.append(f'<text x="{x:.1f}" y="{TOP + PLOT_H + 18}" text-anchor="middle" '
                       f'class="tick">{bs}</text>')
            last = x
    return out


def _y_axis(ticks: list[float], sy: Callable[[float], float]) -> list[str]:
    out = []
    for t in ticks:
        y = sy(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + PLOT_W}" y2="{y:.1f}" '
                   f'class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'class="tick">{fmt_num(t, 3)}</text>')
    return out


def _marker(shape: str, x: float, y: float, color: str, tip: str) -> str:
    title = f"<title>{tip}</title>"
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}">{title}</circle>'
    if shape == "square":
        return (f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" '
                f'fill="{color}">{title}</rect>')
    if shape == "triangle":
        d = f"M{x:.1f},{y - 5:.1f} L{x + 4.5:.1f},{y + 3.5:.1f} L{x - 4.5:.1f},{y + 3.5:.1f} Z"
    else:
        d = f"M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y:.1f} L{x:.1f},{y + 5:.1f} L{x - 5:.1f},{y:.1f} Z"
    return f'<path d="{d}" fill="{color}">{title}</path>'
