"""Session reports: one ByteMLPerf result file per combination, ops.json for the
per-op conformance cases, and one HTML page.

Everything here is I/O around pure parts: summary (records -> rows), ops (op
records -> pass rates per op), bytemlperf (row <-> result document), figures
(rows -> charts, drawn by plot), compare (several runs -> one comparison, with
published.py's vendor figures), terminal (rows -> text). runs reads a reports
folder back; cli is the `xpuperf compare` command.
Reports are written after failures too, so nothing in this path may assume a
measured value exists.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from xpuperf.report.bytemlperf import metric_name, model_name, result_json
from xpuperf.report.microperf import MicroRow, document, micro_rows, roofline
from xpuperf.report.ops import OpTable, op_table
from xpuperf.report.compare import (DEFAULT_NOISE, GRADES, Comparison, load_point,
                                    status_rank)
from xpuperf.report.figures import figures, generation_panels
from xpuperf.conformance.numerics import exceeds_tolerance
from xpuperf.records import APART, PERFORMANCE, Field, PerfPoint, measured
from xpuperf.report.summary import Row, fmt_bytes, fmt_num, row_key, summarize
# write_text: whole files or none, a full disk cuts none
from xpuperf.report_folder import MICRO_JSON, write_text

# The templates are package data (pyproject.toml), so an installed wheel, and a
# session rooted anywhere, writes its reports all the same.
TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"
COMPARE_TEMPLATE = "compare.html.j2"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_INDENT = re.compile(r"\n[ \t]+<")
_SPACES = re.compile(r"> {2,}<")  # between two tags, one space reads the same


def write_reports(records: list[dict], out_dir: Path, hardware: str, info: dict,
                  templates_dir: Path) -> list[Path]:
    """Write out_dir/report.html, out_dir/<model>/result-<precision>.json (a
    second row of one model and precision, another dataset, in
    result-<precision>-<dataset>.json) and, when op cases ran, out_dir/ops.json.

    ``info`` describes the session (host, backend info, stack versions); its
    "tier" and "date" keys, when present, head the page. Micro-benchmark
    records (suites/micro_perf) go to out_dir/micro_perf.json. Returns the paths
    written, the HTML page first.
    """
    rows = summarize(r for r in records if r.get("suite") not in APART)
    ops = op_table(records)
    micro = micro_rows(records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "report.html"
    write_text(html_path, render_html(rows, hardware, info, Path(templates_dir), ops, micro))
    written = [html_path]
    if micro:
        written.append(out_dir / MICRO_JSON)
        write_text(written[-1], json.dumps(document(micro, hardware), indent=2,
                                           allow_nan=False, default=str) + "\n")
    if ops.rows:
        written.append(out_dir / "ops.json")
        write_text(written[-1], json.dumps({"hardware": hardware, **ops.as_dict()}, indent=2,
                                           allow_nan=False) + "\n")
    for row in rows:
        path = out_dir / _safe(row.model) / f"result-{_safe(row.precision)}.json"
        if path in written:  # a model's items and its LLM workload: one file each
            path = path.with_name(f"result-{_safe(row.precision)}-{_safe(row.dataset)}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        # default=str: backend info may hold versions or paths as objects.
        text = json.dumps(result_json(row, hardware, info), indent=2, allow_nan=False,
                          default=str)
        write_text(path, text + "\n")
        written.append(path)
    return written


def render_html(rows: Sequence[Row], hardware: str, info: Mapping[str, Any],
                templates_dir: Path, ops: OpTable | None = None,
                micro: Sequence[MicroRow] = ()) -> str:
    """The report page of these rows, autoescaped; the charts are the trusted fragments."""
    date = info.get("date") or _now()
    return _compact(_environment(templates_dir).get_template(TEMPLATE).render(
        rows=rows, hardware=hardware, info=info, tier=info.get("tier") or "-",
        zoo=info.get("zoo_version") or "-", date=date, ops=ops or OpTable([]),
        micro=micro, micro_roofline=roofline(micro) if micro else "",
        # The table shows failures first; the sections below keep the model order.
        table_rows=sorted(rows, key=lambda r: status_rank(r.status)),
        statuses=_distinct(r.status for r in rows), families=_distinct(r.family for r in rows),
        precisions=_distinct(r.precision for r in rows),
        usual_gaps={attr: usual_gap(rows, attr) for attr in GAPS}, gaps=GAPS,
        usual_note=usual([r.metric_note for r in rows]),
        figures=figures([(r.precision, r) for r in rows], panel=lambda r: r.model)))


def render_compare(comparison: Comparison, templates_dir: Path, date: str | None = None) -> str:
    """The comparison page of ``comparison``, autoescaped like the report page."""
    lines = comparison.lines
    # The charts follow the model order (the table's is failures first), each
    # combination's hardware side by side in the runs' order.
    cells = sorted(((c.label, c.row) for ln in lines for c in ln.cells if c.row is not None),
                   key=lambda cell: row_key(cell[1]))
    published = dict.fromkeys(f"{p.figure.hardware} (published)" for ln in lines
                              for p in ln.published)
    return _compact(_environment(templates_dir).get_template(COMPARE_TEMPLATE).render(
        cmp=comparison, date=date or _now(), hardware=comparison.labels + list(published),
        statuses=_distinct(c.status for ln in lines for c in ln.cells),
        families=comparison.values("family"), precisions=comparison.values("precision"),
        default_noise=DEFAULT_NOISE, grades=GRADES,
        figures=figures(cells, panel=lambda r: f"{r.model} {r.precision}")))


def _compact(html: str) -> str:
    """``html`` without the templates' indentation between tags (a tenth of a large
    page). Text inside <pre> is escaped, so it holds no tag to match."""
    return _SPACES.sub("> <", _INDENT.sub("\n<", html))


def _environment(templates_dir: Path) -> Environment:
    env = Environment(loader=FileSystemLoader(str(templates_dir)), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=fmt_num, bytes=fmt_bytes, pct=_pct, gbps=_gbps, pretty=_pretty,
                       metric_name=metric_name, model_name=model_name, load_point=load_point,
                       status_counts=_status_counts, first_line=_first_line)
    env.tests.update(nan=lambda v: isinstance(v, float) and math.isnan(v))
    env.globals.update(exceeds=exceeds_tolerance, status_rank=status_rank, show=show,
                       perf_columns=perf_columns,
                       sort_value=_sort_value, generation_panels=generation_panels)
    return env


def _first_line(message: str, width: int = 240) -> str:
    """A reason's first line, cut to ``width``: what a summary lists (a traceback or
    a crash dump is in the combination's section, folded)."""
    line = message.split("\n", 1)[0]
    return line if len(line) <= width else line[:width - 3] + "..."


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# Why a combination has no figures of a kind: PerfPoint's reason attribute -> what
# the page calls the figures missing.
GAPS = {"resident_skipped": "device-resident", "energy_unavailable": "energy"}


def usual_gap(rows: Sequence[Row], attr: str) -> str | None:
    """The reason most combinations give for no figures of one kind (a GAPS attr).

    On one machine it is mostly one sentence for all of them (CPU offers no
    device-resident path; no RAPL zone): the page says it once, above the
    combinations, and beside a combination only a different one.
    """
    return usual([next((getattr(p, attr) for p in row.perf if getattr(p, attr)), None)
                  for row in rows])


def usual(texts: Iterable[str | None]) -> str | None:
    """The commonest of these texts (None and empty ones aside), or None."""
    texts = [t for t in texts if t]
    return max(set(texts), key=texts.count) if texts else None


def _distinct(values: Iterable[str]) -> list[str]:
    return sorted(set(values), key=lambda v: (status_rank(v), v))


def _status_counts(rows: Iterable[Row]) -> str:
    """'2 failed, 8 passed': how many rows have each status, worst first."""
    statuses = [r.status for r in rows]
    return ", ".join(f"{statuses.count(s)} {s}" for s in _distinct(statuses))


def _sort_value(value: float | None) -> Markup:
    """A cell's data-v attribute (what the page sorts on), or nothing when missing."""
    if value is None or not math.isfinite(value):
        return Markup("")
    # Six significant digits order the cells as well as seventeen, at a third of the bytes.
    return Markup(' data-v="%s"') % f"{float(value):.6g}"


def zoo_version(path: Path) -> str:
    """The zoo file's name and content hash: runs of different zoos do not compare."""
    return f"{Path(path).name} sha256:{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]}"


def _safe(name: str) -> str:
    """A path component that cannot climb out of out_dir, whatever zoo.yaml named."""
    return _UNSAFE.sub("_", name).strip(".") or "unnamed"


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f} %"


def _gbps(bytes_per_s: float | None) -> str:
    return "-" if bytes_per_s is None else fmt_num(bytes_per_s / 1e9, 3)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


# How the page shows a figure: the names xpuperf.records.Field.fmt takes.
FORMATS = {"num": fmt_num, "num3": lambda v: fmt_num(v, 3), "num4": lambda v: fmt_num(v, 4),
           "pct": _pct, "gbps": _gbps, "int": _count}


def show(value: Any, fmt: str) -> str:
    """A figure as the page shows it, by its field's format."""
    return FORMATS[fmt](value)


def perf_columns(points: Sequence[PerfPoint]) -> list[Field]:
    """The figure columns of a combination's performance table: the fields with a
    column that any of its points measured."""
    return [f for f in PERFORMANCE if f.column is not None
            and any(measured(getattr(p, f.attr)) for p in points)]


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return " \u00b7 ".join(f"{k}: {_pretty(v)}" for k, v in value.items())
    return json.dumps(value, default=str)
