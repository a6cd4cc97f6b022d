"""The fixed-width summary table pytest prints at the end of a session (pure)."""
from __future__ import annotations

from typing import Sequence

from xpuperf.report.summary import NONFINITE_KEYS, Row, fmt_num

HEADERS = ("combination", "status", "metric (drop)", "max_abs", "cosine",
           "compile s", "cov %", "QPS @ bs", "p99 ms @ bs", "MFU %", "mem MB", "audits")
# Reasons are cut here so that one failing row stays one terminal line.
MESSAGE_WIDTH = 110


def table(rows: Sequence[Row]) -> str:
    """One line per combination, each failing one followed by its first failure reasons."""
    cells = [_cells(row) for row in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(HEADERS)]
    lines = [_line(HEADERS, widths), "  ".join("-" * w for w in widths)]
    for row, row_cells in zip(rows, cells):
        lines.append(_line(row_cells, widths))
        if row.failed:
            for suite, res in row.suites.items():
                if res.outcome in ("failed", "error") and res.messages:
                    lines.append(f"    ! {suite}: {_one_line(res.messages[0])}")
    return "\n".join(lines)


def _cells(row: Row) -> tuple[str, ...]:
    points = row.throughput
    largest = points[-1] if points else None
    return (
        row.combination,
        row.status.upper() if row.failed else row.status,
        _metric(row),
        _max_abs(row),
        fmt_num(row.diff.get("cosine"), 7),
        fmt_num(row.compile_seconds, 3),
        "-" if row.coverage is None else f"{100 * row.coverage:.1f}",
        " ".join(f"{p.batch_size}:{fmt_num(p.qps, 3)}" for p in points) or "-",
        f"{fmt_num(largest.p99, 3)} @{largest.batch_size}" if largest else "-",
        "-" if row.best_mfu is None else fmt_num(100 * row.best_mfu, 3),
        _memory(row),
        row.audits_passed,
    )


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
