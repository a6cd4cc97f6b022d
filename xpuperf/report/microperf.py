"""The micro-benchmarks' report (pure): records of suite "micro" -> the rows of
report.html's micro-perf section, its roofline, and micro_perf.json, whose
per-case fields are xpu-perf's summary's (latency(us), mem_bw(GB/s),
calc_flops_power(tflops), algo_bw(GB/s), bus_bw(GB/s)) and xpuperf's own
(shares of peak, correctness, outcome).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from markupsafe import Markup

from xpuperf.report.plot import Ceiling, RoofPoint, roofline_svg, styles
from xpuperf.report.summary import fmt_num

SUMMARY_FIELDS = ("latency(us)", "mem_bw(GB/s)", "calc_flops_power(tflops)", "algo_bw(GB/s)",
                  "bus_bw(GB/s)")


@dataclass(frozen=True)
class MicroRow:
    record: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        return self.record.get(name)

    def get(self, key: str) -> Any:
        return self.record.get(key)

    def share(self, how: str) -> float | None:
        found = (self.record.get("share_of_peak") or {}).get(how) or {}
        return found.get("share")

    @property
    def args_text(self) -> str:
        args = self.record.get("args") or {}
        return " ".join(f"{k}={v}" for k, v in args.items() if k not in ("dtype", "arg_type"))

    @property
    def verdict(self) -> str:
        if self.record.get("suite") != "micro" or self.record.get("outcome") == "skipped":
            return "-"
        if "correctness" in self.record:
            c = self.record["correctness"]
            return f"RMSE {fmt_num(c.get('rmse'), 3)} <= {fmt_num(c.get('bound'), 3)}" \
                if c.get("passed") else f"WRONG: RMSE {fmt_num(c.get('rmse'), 3)} > " \
                                        f"{fmt_num(c.get('bound'), 3)}"
        if "wrong_elements" in self.record:
            return f"{self.record['wrong_elements']} wrong element(s)"
        return "-"


def micro_rows(records: Iterable[Mapping[str, Any]]) -> list[MicroRow]:
    """The micro-benchmark records, failures first, then by group, op and case."""
    rank = {"failed": 0, "error": 1, "passed": 3, "skipped": 4}
    mine = [r for r in records if r.get("suite") == "micro"]
    return [MicroRow(r) for r in sorted(mine, key=lambda r: (
        rank.get(str(r.get("outcome")), 2), str(r.get("group")), str(r.get("op")),
        str(r.get("case"))))]


def document(rows: Iterable[MicroRow], hardware: str) -> dict[str, Any]:
    """micro_perf.json: one entry per case, grouped by op as xpu-perf's summary."""
    ops: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        r = row.record
        ops.setdefault(str(r.get("op")), []).append({
            "case": r.get("case"), "group": r.get("group"), "dtype": r.get("precision"),
            "arguments": r.get("args"), "workload": r.get("workload"),
            **{k: r.get(k) for k in SUMMARY_FIELDS if r.get(k) is not None},
            **({"world_size": r["world_size"]} if "world_size" in r else {}),
            "arithmetic_intensity": r.get("arithmetic_intensity"),
            "share_of_peak": r.get("share_of_peak"), "correctness": r.get("correctness")
            if "correctness" in r else ({"wrong_elements": r["wrong_elements"]}
                                        if "wrong_elements" in r else None),
            "window_latency_us": r.get("window_latency_us"),
            "outcome": r.get("outcome"), "message": r.get("message") or ""})
    return {"hardware": hardware, "ops": ops}


def roofline(rows: Iterable[MicroRow]) -> Markup:
    """Achieved FLOP/s of every timed op against its arithmetic intensity, one
    colour per group, with each precision's measured compute ceiling."""
    rows = [r for r in rows if r.get("flops") and r.get("latency(us)")]
    style = styles(sorted({str(r.group) for r in rows}))
    points = [RoofPoint(f"{r.case}", style[str(r.group)], r.get("arithmetic_intensity") or 0.0,
                        r.get("flops") / (r.get("latency(us)") / 1e6), str(r.group))
              for r in rows]
    ceilings: dict[str, Ceiling] = {}
    per_precision = styles(sorted({str(r.precision) for r in rows}))
    for r in rows:
        peak = ((r.get("share_of_peak") or {}).get("measured") or {}).get("peak_flops")
        if peak and r.precision not in ceilings:
            ceilings[r.precision] = Ceiling(f"{r.precision} GEMM ceiling {fmt_num(peak, 3)}FLOP/s",
                                            per_precision[str(r.precision)], peak)
    return Markup(roofline_svg(points, list(ceilings.values())))
