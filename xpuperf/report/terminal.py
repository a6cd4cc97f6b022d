"""The fixed-width summary table pytest prints at the end of a session, and the
table of LLM sweep points `xpuperf compare` prints (pure)."""
from __future__ import annotations

from typing import Sequence

from xpuperf.conformance.numerics import NONFINITE_KEYS
from xpuperf.report.summary import Row, fmt_num

HEADERS = ("combination", "status", "metric (drop)", "max_abs", "cosine",
           "compile s", "cov %", "QPS @ bs", "p99 ms @ load", "MFU %", "mem MB", "audits")
SWEEP_HEADERS = ("run", "workload", "point", "SLOs", "TTFT p99 ms", "TPOT p99 ms", "ITL p99 ms",
                 "tokens/s", "/device", "/user", "goodput")
# Reasons are cut here so that one failing row stays one terminal line.
MESSAGE_WIDTH = 110
# What the columns mean, printed under the table (report.html says it in tooltips).
LEGEND = (
    "QPS @ bs: samples/s offline per batch size (LLM rows: output tokens/s, best run); "
    "p99 ms @ load: server at its offered QPS, else single stream, else the largest "
    "batch size offline, as report.html shows it (LLM rows: TTFT / TPOT p99)",
    "max_abs, cosine: the worst output against the CPU fp32 reference; cov %: graph nodes "
    "run natively; MFU %: best FLOPs x QPS / peak; mem MB: peak (dev: the device's); "
    "audits: passed / run",
    "! a failure's first reason (all of it in report.html); ~ an expected failure and "
    "why (the backend's expected_failures.txt)")


def table(rows: Sequence[Row]) -> str:
    """One line per combination, each failing one followed by its first failure
    reasons, each expected failure by its known reason; the legend last."""
    cells = [_cells(row) for row in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(HEADERS)]
    lines = [_line(HEADERS, widths), "  ".join("-" * w for w in widths)]
    for row, row_cells in zip(rows, cells):
        lines.append(_line(row_cells, widths))
        if row.failed:
            for suite, res in row.suites.items():
                if res.outcome in ("failed", "error") and res.messages:
                    lines.append(f"    ! {suite}: {_one_line(res.messages[0])}")
        lines.extend(f"    ~ expected: {_one_line(reason)}" for reason in row.expected_reasons)
    return "\n".join(lines + [""] + [f"  {line}" for line in LEGEND])


def sweep_table(entries: Sequence[tuple[str, Row]]) -> str:
    """Every LLM sweep point of these (run label, row) pairs, a line each, by
    workload; "" when none swept."""
    cells = []
    for label, row in sorted(entries, key=lambda e: e[1].combination):
        for g in row.generation:
            if g.get("scenario") != "sweep":
                continue
            sweep = g.get("sweep") or {}
            v = sweep.get("variable")
            for p in sweep.get("points") or []:
                ttft, tpot, itl = (p.get(k) or {} for k in ("ttft_ms", "tpot_ms", "itl_ms"))
                cells.append((label, row.combination, f"{v} {fmt_num(p.get(v), 4)}",
                              "met" if p.get("passed") else "missed",
                              *(fmt_num(x.get("p99"), 3) for x in (ttft, tpot, itl)),
                              *(fmt_num(p.get(k), 4) for k in (
                                  "output_tokens_per_s", "output_tokens_per_s_per_device",
                                  "tokens_per_s_per_user")),
                              f"{100 * p['goodput']:.0f} %" if p.get("goodput") is not None
                              else "-"))
    if not cells:
        return ""
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(SWEEP_HEADERS)]
    return "\n".join([_line(SWEEP_HEADERS, widths), "  ".join("-" * w for w in widths)]
                     + [_line(c, widths) for c in cells])


def _cells(row: Row) -> tuple[str, ...]:
    points = row.throughput
    return (
        row.combination,
        row.status.upper() if row.failed else row.status,
        _metric(row),
        _max_abs(row),
        fmt_num(row.diff.get("cosine"), 7),
        fmt_num(row.compile_seconds, 3),
        "-" if row.coverage is None else f"{100 * row.coverage:.1f}",
        " ".join(f"{p.batch_size}:{fmt_num(p.qps, 3)}" for p in points) or _tokens(row),
        _p99(row),
        "-" if row.best_mfu is None else fmt_num(100 * row.best_mfu, 3),
        _memory(row),
        row.audits_passed,
    )


def _p99(row: Row) -> str:
    point = row.latency_point
    if point is not None:
        load = (f"{fmt_num(point.target_qps, 3)} QPS" if point.scenario == "server"
                and point.target_qps else point.scenario.replace("_", " "))
        return f"{fmt_num(point.p99, 3)} @{point.batch_size} {load}"
    g = row.llm_latency
    if g is None:
        return "-"
    ttft, tpot = g.get("ttft_ms") or {}, g.get("tpot_ms") or {}
    return f"{fmt_num(ttft.get('p99'), 3)} / {fmt_num(tpot.get('p99'), 3)} {g.get('scenario')}"


def _tokens(row: Row) -> str:
    g = row.llm_throughput
    if g is None:
        return "-"
    at = f" c{g['concurrency']}" if g.get("concurrency") else ""
    return f"{fmt_num(g['output_tokens_per_s'], 3)} tok/s {g.get('scenario')}{at}"


def _memory(row: Row) -> str:
    """The device's memory peak where the backend can say, else the host's RSS."""
    if row.device_memory_peak_mb is not None:
        return f"{fmt_num(row.device_memory_peak_mb, 4)} dev"
    return fmt_num(row.peak_rss_mb, 4)


def _max_abs(row: Row) -> str:
    text = fmt_num(row.diff.get("max_abs"), 3)
    bad = {k: int(row.diff.get(k, 0)) for k in NONFINITE_KEYS}
    return " ".join([text] + [f"+{n} {k}" for k, n in bad.items() if n])


def _metric(row: Row) -> str:
    if row.metric is None:
        res = row.suites.get("metric")
        return res.outcome if res else "-"
    text = f"{row.primary} {fmt_num(row.metric)}"
    if row.drop is not None:
        text += f" ({fmt_num(row.drop, 3)})"
    return text + (" seeded" if row.seeded_weights else "")


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def _one_line(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= MESSAGE_WIDTH else flat[:MESSAGE_WIDTH - 3] + "..."
