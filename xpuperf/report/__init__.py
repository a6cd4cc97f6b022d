"""Session reports: one ByteMLPerf result file per combination, ops.json for the
per-op conformance cases, and one HTML page.

Everything here is I/O around pure parts: summary (records -> rows), ops (op
records -> pass rates per op), bytemlperf (row -> result document), plot (rows
-> SVG), terminal (rows -> text).
Reports are written after failures too, so nothing in this path may assume a
measured value exists.
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from xpuperf.report.bytemlperf import metric_name, model_name, result_json
from xpuperf.report.ops import OpTable, op_table
from xpuperf.report.plot import qps_svg
from xpuperf.report.summary import Row, exceeds_tolerance, fmt_bytes, fmt_num, summarize

TEMPLATE = "report.html.j2"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_reports(records: list[dict], out_dir: Path, hardware: str, info: dict,
                  templates_dir: Path) -> list[Path]:
    """Write out_dir/report.html, out_dir/<model>/result-<precision>.json and,
    when op cases ran, out_dir/ops.json.

    ``info`` describes the session (host, backend info, stack versions); its
    "tier" and "date" keys, when present, head the page. Returns the paths
    written, the HTML page first.
    """
    rows = summarize(r for r in records if r.get("suite") != "op")
    ops = op_table(records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(rows, hardware, info, Path(templates_dir), ops),
                         encoding="utf-8")
    written = [html_path]
    if ops.rows:
        written.append(out_dir / "ops.json")
        written[-1].write_text(json.dumps({"hardware": hardware, **ops.as_dict()}, indent=2,
                                          allow_nan=False) + "\n", encoding="utf-8")
    for row in rows:
        path = out_dir / _safe(row.model) / f"result-{_safe(row.precision)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        # default=str: backend info may hold versions or paths as objects.
        text = json.dumps(result_json(row, hardware, info), indent=2, allow_nan=False,
                          default=str)
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written


def render_html(rows: Sequence[Row], hardware: str, info: Mapping[str, Any],
                templates_dir: Path, ops: OpTable | None = None) -> str:
    """The report page of these rows, autoescaped; the plot is the one trusted fragment."""
    env = Environment(loader=FileSystemLoader(str(templates_dir)), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=fmt_num, bytes=fmt_bytes, pct=_pct, pretty=_pretty,
                       metric_name=metric_name, model_name=model_name)
    env.tests.update(nan=lambda v: isinstance(v, float) and math.isnan(v))
    env.globals.update(exceeds=exceeds_tolerance)
    date = info.get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return env.get_template(TEMPLATE).render(
        rows=rows, hardware=hardware, info=info, tier=info.get("tier") or "-",
        date=date, plot=Markup(qps_svg(rows)), ops=ops or OpTable([]))


def _safe(name: str) -> str:
    """A path component that cannot climb out of out_dir, whatever zoo.yaml named."""
    return _UNSAFE.sub("_", name).strip(".") or "unnamed"


def _pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f} %"


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return " \u00b7 ".join(f"{k}: {_pretty(v)}" for k, v in value.items())
    return json.dumps(value, default=str)
