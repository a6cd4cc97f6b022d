"""Which charts a page shows, from its rows (pure): per model family, small
multiples of QPS against batch size and the latency percentiles of each
scenario; over everything, a roofline; per LLM workload swept (--llm-sweep),
the throughput-interactivity frontier.

A page hands in (series, row) pairs: report.html's series is the precision (one
line per precision in a model's panel), compare.html's the hardware (one line
per hardware in a combination's panel). A panel never holds more lines than
there are series, so the charts stay readable however many combinations ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from markupsafe import Markup

from xpuperf.report.plot import (Ceiling, Range, RoofPoint, Style, latency_panel, line_panel,
                                 roofline_svg, styles)
from xpuperf.report.summary import Row, fmt_num

SCENARIO_ORDER = ("offline", "single_stream", "multi_stream", "server", "multi_client")


@dataclass
class FamilyFigure:
    family: str
    panels: list[Markup]  # QPS against batch size, one per panel key
    latency: list[Markup]  # one per scenario measured


@dataclass
class Figures:
    legend: list[tuple[str, str]]  # (series, colour)
    families: list[FamilyFigure]
    roofline: Markup
    ceilings: list[str]  # the compute ceilings drawn, in words
    frontier: list[Markup]  # one panel per LLM workload swept


def figures(entries: Sequence[tuple[str, Row]], panel: Callable[[Row], str]) -> Figures:
    """The charts of ``entries`` ((series, row) pairs); ``panel`` names the panel a
    row is drawn in. Families, panels and series keep the order of ``entries``."""
    style = styles(list(dict.fromkeys(series for series, _ in entries)))
    by_family: dict[str, list[tuple[str, Row]]] = {}
    for series, row in entries:
        by_family.setdefault(row.family or row.model, []).append((series, row))
    families = [FamilyFigure(family, _qps_panels(group, panel, style),
                             _latency_panels(group, panel, style))
                for family, group in by_family.items()]
    roof, ceilings = _roofline(entries, panel, style)
    return Figures(legend=[(k, s.color) for k, s in style.items()], families=families,
                   roofline=roof, ceilings=ceilings, frontier=frontier_panels(entries))


def _qps_panels(group: Sequence[tuple[str, Row]], panel: Callable[[Row], str],
                style: dict[str, Style]) -> list[Markup]:
    panels: dict[str, list[tuple[str, Style, list[tuple[int, float]]]]] = {}
    for series, row in group:
        points = [(p.batch_size, p.qps) for p in row.throughput]
        scenario = row.throughput[0].scenario if row.throughput else "offline"
        label = series if scenario == "offline" else f"{series} ({scenario})"
        panels.setdefault(panel(row), []).append((label, style[series], points))
    return [Markup(line_panel(title, lines)) for title, lines in panels.items()]


def _latency_panels(group: Sequence[tuple[str, Row]], panel: Callable[[Row], str],
                    style: dict[str, Style]) -> list[Markup]:
    by_scenario: dict[str, list[Range]] = {}
    for series, row in group:
        for scenario in _scenarios(row):
            # One range per scenario and row: the batch size of its best throughput,
            # as the full zoo runs many and one panel must stay readable.
            p = max((p for p in row.perf if p.scenario == scenario and p.p50 is not None),
                    key=lambda p: p.qps or 0.0)
            by_scenario.setdefault(scenario, []).append(Range(
                f"{panel(row)} {series} bs{p.batch_size}", style[series],
                p.p50, p.p90, p.p99, p.p999))
    return [Markup(latency_panel(scenario.replace("_", " "), ranges))
            for scenario, ranges in sorted(by_scenario.items(), key=lambda kv: _order(kv[0]))]


def _scenarios(row: Row) -> list[str]:
    return sorted({p.scenario for p in row.perf if p.p50 is not None}, key=_order)


def _order(scenario: str) -> tuple[int, str]:
    rank = SCENARIO_ORDER.index(scenario) if scenario in SCENARIO_ORDER else len(SCENARIO_ORDER)
    return rank, scenario


def _roofline(entries: Sequence[tuple[str, Row]], panel: Callable[[Row], str],
              style: dict[str, Style]) -> tuple[Markup, list[str]]:
    points: list[RoofPoint] = []
    # (series, precision) -> its ceiling and where the figure comes from
    ceilings: dict[tuple[str, str], tuple[Ceiling, str]] = {}
    for series, row in entries:
        best = row.best
        if best and best.flops_per_sample and best.bytes_per_sample:
            points.append(RoofPoint(f"{panel(row)} {series} bs{best.batch_size}", style[series],
                                    best.flops_per_sample / best.bytes_per_sample,
                                    best.flops_per_sample * best.qps, row.family or row.model))
        for p in row.perf:
            if p.peak_flops and (series, row.precision) not in ceilings:
                name = series if series == row.precision else f"{series} {row.precision}"
                ceilings[series, row.precision] = (
                    Ceiling(f"{name} peak {fmt_num(p.peak_flops, 3)}FLOP/s", style[series],
                            p.peak_flops),
                    p.peak_flops_source or "source not recorded")
    return (Markup(roofline_svg(points, [c for c, _ in ceilings.values()])),
            [f"{c.label}: {source}" for c, source in ceilings.values()])


def generation_panels(row: Row) -> list[Markup]:
    """An LLM row's charts: output tokens/s against concurrency (offline), and the
    server search's TTFT and TPOT p99 against the offered request rate."""
    style = styles(["tokens/s", "TTFT p99", "TPOT p99"])
    offline = sorted((g["concurrency"], g["output_tokens_per_s"]) for g in row.generation
                     if g.get("scenario") == "offline" and g.get("concurrency")
                     and g.get("output_tokens_per_s") is not None)
    panels = []
    if offline:
        panels.append(line_panel(f"{row.combination} offline", [
            ("tokens/s", style["tokens/s"], offline)], y_label="tokens/s", x_label="concurrency"))
    trials = sorted((t for g in row.generation if g.get("scenario") == "server"
                     for t in g.get("search") or []), key=lambda t: t["rate"])
    for name, key in (("TTFT p99", "ttft_p99_ms"), ("TPOT p99", "tpot_p99_ms")):
        points = [(t["rate"], t[key]) for t in trials if t.get(key) is not None]
        if points:  # a panel each: one line, named by its title
            panels.append(line_panel(f"{row.combination} server: {name}", [
                (name, style[name], points)], y_label="ms", x_label="requests/s",
                x_text=lambda x: fmt_num(x, 3)))
    return [Markup(p) for p in panels]


def frontier_panels(entries: Sequence[tuple[str, Row]]) -> list[Markup]:
    """InferenceX's chart, a panel per LLM workload: output tokens/s per device
    against tokens/s per user, one line per hardware and server (and series: a
    precision, a run), through the Pareto frontier of its sweep's points."""
    lines: dict[str, dict[str, list[tuple[float, float]]]] = {}  # workload -> label -> points
    for series, row in entries:
        for g in row.generation:
            if g.get("scenario") != "sweep":
                continue
            label = " \u00b7 ".join(dict.fromkeys(
                x for x in (row.hardware, series, g.get("serving")) if x and x != "endpoint"))
            points = [(p["tokens_per_s_per_user"], p["output_tokens_per_s_per_device"])
                      for p in (g.get("sweep") or {}).get("points") or []
                      if p.get("tokens_per_s_per_user") and p.get("output_tokens_per_s_per_device")]
            lines.setdefault(row.model, {})[label] = pareto(points)
    style = styles(list(dict.fromkeys(label for by in lines.values() for label in by)))
    # The panel is titled by its workload: the section's heading names the axes.
    return [Markup(line_panel(workload, [(label, style[label], pts) for label, pts in by.items()],
                              y_label="tokens/s/device", x_label="tokens/s per user",
                              x_text=lambda x: fmt_num(x, 3)))
            for workload, by in lines.items()]


def pareto(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other beats on both axes (more interactivity and more
    throughput), by interactivity."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front[::-1]
