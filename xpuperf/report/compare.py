"""Several runs joined by combination, against a baseline (pure).

A Run is one reports folder read back (xpuperf.report.runs): other hardware, or
the same hardware before and after a change. Figures are set like against like:
a QPS ratio per scenario and batch size both runs measured (never the best of
one against the best of the other), the latencies (records.PERFORMANCE's compared
fields: p50 to p99) at the baseline's offered load, and a ratio within the noise
of the two figures is shown as no change.

Micro-benchmark items (micro_perf.json) are joined by case, and each run's
is judged against the baseline run's by their window latencies, with the speed
gate's statistics (xpuperf.gate.verdict): regressed, improved, unchanged or
inconclusive at a threshold (--max-regression, as the gate's).

Runs compare only when they ran the same tier of the same zoo: a smoke run's QPS beside a full
run's is a different workload, not a faster card, so a mix is refused unless
the caller allows it (and the page then says so).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from backends.base import PRECISIONS
from xpuperf.gate import verdict as v
from xpuperf.records import PERFORMANCE, Field, PerfPoint
from xpuperf.report.published import Published
from xpuperf.report.summary import Row, fmt_num

# Which status a group of rows shows, worst first; also the default table order.
STATUS_ORDER = ("failed", "error", "xfailed", "skipped", "passed")


# A ratio inside the noise of the figures it divides is no change. Where a run
# recorded neither the spread of its windows nor the spread it allowed, this is
# the noise assumed: loadgen's default max_spread.
DEFAULT_NOISE = 0.10
# Beyond the noise, a ratio's colour deepens at these factors (x1.25, x2): x0.936
# is not as red as x0.0187.
GRADES = (1.25, 2.0)
# Two server runs offered "the same" load when their targets agree this closely.
_SAME_LOAD = 0.01
# The latencies set against the baseline's at its load, in the table's order.
LATENCIES: tuple[Field, ...] = tuple(f for f in PERFORMANCE if f.compared)


class CompareError(ValueError):
    """The runs cannot be compared as asked."""


@dataclass
class Run:
    """One session, as its reports folder holds it, and the name it goes by."""

    hardware: str
    source: str  # the folder it was read from
    info: Mapping[str, Any]
    rows: list[Row]
    label: str = ""  # how the page names it: --label, else the folder's name
    # Its micro-benchmark cases, by case id: micro_perf.json's entries.
    micro: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = self.label or Path(self.source).name or self.hardware

    @property
    def tier(self) -> str:
        return str(self.info.get("tier") or "unknown")

    @property
    def zoo_version(self) -> str:
        return str(self.info.get("zoo_version") or "unknown")


@dataclass(frozen=True)
class Ratio:
    """One figure of a run over the baseline's same figure (same scenario, batch
    size and, for a server run, offered load), and the noise of the two."""

    scenario: str
    batch_size: int | None
    value: float
    noise: float  # a change within this fraction is no change
    lower_is_better: bool = False  # latency: a ratio below 1 is the better one
    concurrency: int | None = None  # an LLM run's requests in flight (its batch size is none)

    @property
    def grade(self) -> str:
        """'same' within the noise, else 'better-N' / 'worse-N' (N: 1 to 3, deeper
        beyond each of GRADES)."""
        factor = max(self.value, 1 / self.value) if self.value > 0 else math.inf
        if factor <= 1 + self.noise:
            return "same"
        better = (self.value < 1) == self.lower_is_better
        level = 1 + sum(factor > g for g in GRADES)
        return f"{'better' if better else 'worse'}-{level}"

    @property
    def point(self) -> str:
        return " ".join(x for x in (self.scenario.replace("_", " "),
                                    f"bs{self.batch_size}" if self.batch_size else "",
                                    f"c{self.concurrency}" if self.concurrency else "") if x)


@dataclass
class Cell:
    """One run's figures for one combination, and their ratios to the baseline's."""

    label: str
    hardware: str
    row: Row | None  # None: the combination is not in that run
    # QPS over the baseline's at each scenario and batch size both measured.
    qps_ratios: list[Ratio] = field(default_factory=list)
    loaded: PerfPoint | None = None  # the latencies shown: at the baseline's load where measured
    # Each latency of LATENCIES (by attribute) over the baseline's at its load.
    latency_ratios: dict[str, Ratio] = field(default_factory=dict)
    latency_note: str = ""  # why the latencies are not compared
    # An LLM row's TTFT and TPOT p99 (ms) of the run its summary shows, each with
    # its ratio to the baseline's same run, if any.
    llm_latencies: list[tuple[str, float, Ratio | None]] = field(default_factory=list)

    @property
    def latencies(self) -> list[tuple[Field, float, Ratio | None]]:
        """The shown point's LATENCIES that it measured, each with its ratio, if any."""
        if self.loaded is None:
            return []
        return [(f, value, self.latency_ratios.get(f.attr)) for f in LATENCIES
                if (value := getattr(self.loaded, f.attr)) is not None]

    @property
    def status(self) -> str:
        return self.row.status if self.row else "not run"

    @property
    def worst_ratio(self) -> float | None:
        """The lowest QPS ratio: what a table sorted on regressions sorts by."""
        return min((r.value for r in self.qps_ratios), default=None)


@dataclass
class PublishedRow:
    """A published figure beside a line, and why it does not match the measured rows."""

    figure: Published
    warnings: list[str] = field(default_factory=list)


@dataclass
class Line:
    """One combination across every run, with the published figures of its model."""

    combination: str
    model: str
    family: str
    domain: str
    dataset: str
    precision: str
    cells: list[Cell]
    published: list[PublishedRow] = field(default_factory=list)

    @property
    def statuses(self) -> list[str]:
        return sorted({c.status for c in self.cells})

    @property
    def status(self) -> str:
        """The worst status of any run."""
        return min(self.statuses, key=status_rank)


@dataclass(frozen=True)
class MicroCell:
    """One run's figure for a micro-benchmark case, and its verdict against the
    baseline run's (None: this is the baseline, or either lacks the case's windows)."""

    label: str
    entry: Mapping[str, Any] | None  # None: the case is not in that run
    verdict: v.Verdict | None = None


@dataclass(frozen=True)
class MicroLine:
    case: str
    op: str
    precision: str
    cells: list[MicroCell]


@dataclass
class Comparison:
    runs: list[Run]
    baseline: str  # the baseline run's label
    lines: list[Line]
    # Set when the runs differ in tier or zoo and the caller allowed it: the page says so.
    mixed: list[str] = field(default_factory=list)
    micro: list[MicroLine] = field(default_factory=list)
    micro_threshold_pct: float = v.DEFAULT_THRESHOLD_PCT

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.runs]

    def values(self, attr: str) -> list[str]:
        """The distinct values of a Line attribute, for the page's filters."""
        return sorted({str(getattr(line, attr)) for line in self.lines})


def compare(runs: Sequence[Run], baseline: str | None = None,
            published: Iterable[Published] = (), allow_mixed: bool = False,
            threshold_pct: float = v.DEFAULT_THRESHOLD_PCT) -> Comparison:
    """Join ``runs`` by combination; ratios are to the run ``baseline`` names (its
    label, or a hardware only one run has; default: the first run). Runs of the
    same hardware compare (before / after); two runs with one label are told
    apart by their folders' parents, else refused. Lines are ordered failures
    first, then by model and precision; each published figure goes with its
    model's line of the same precision, else with the model's first line.
    Micro-benchmark cases are judged against the baseline's at ``threshold_pct``."""
    if not runs:
        raise CompareError("no runs to compare: give one or more reports folders")
    runs = _labelled(runs)
    base_run = _baseline(runs, baseline)
    mixed = _mixed(runs)
    if mixed and not allow_mixed:
        raise CompareError("; ".join(mixed) + ": their figures do not compare (other shapes "
                           "or models); rerun them alike, or pass --allow-mixed to compare anyway")
    base = {r.combination: r for r in base_run.rows}
    by_run = [{r.combination: r for r in run.rows} for run in runs]
    combos: dict[str, Row] = {}
    for rows in by_run:
        for combo, row in rows.items():
            combos.setdefault(combo, row)
    lines = [Line(combination=combo, model=row.model, family=row.family or row.model,
                  domain=row.domain, dataset=row.dataset, precision=row.precision,
                  cells=[_cell(run, rows.get(combo), base.get(combo))
                         for run, rows in zip(runs, by_run)])
             for combo, row in combos.items()]
    lines.sort(key=lambda ln: (status_rank(ln.status), ln.model, _precision_rank(ln.precision),
                               ln.precision, ln.dataset))
    _attach(lines, published, {r.label: r.tier for r in runs})
    return Comparison(runs=list(runs), baseline=base_run.label, lines=lines, mixed=mixed,
                      micro=_micro_lines(runs, base_run, threshold_pct),
                      micro_threshold_pct=threshold_pct)


def _micro_lines(runs: Sequence[Run], base_run: Run, threshold_pct: float) -> list[MicroLine]:
    """Every micro case of any run, in case order, each run's entry judged
    against the baseline run's."""
    first: dict[str, Mapping[str, Any]] = {}
    for run in runs:
        for case, entry in run.micro.items():
            first.setdefault(case, entry)
    return [MicroLine(case, str(entry.get("op", "")), str(entry.get("dtype", "")),
                      [MicroCell(run.label, run.micro.get(case),
                                 None if run is base_run else
                                 _micro_verdict(base_run.micro.get(case), run.micro.get(case),
                                                threshold_pct))
                       for run in runs])
            for case, entry in sorted(first.items())]


def _micro_verdict(base: Mapping[str, Any] | None, entry: Mapping[str, Any] | None,
                   threshold_pct: float) -> v.Verdict | None:
    windows = [v.from_latencies((e or {}).get("window_latency_us") or []) for e in (base, entry)]
    if not all(windows):
        return None
    return v.unpaired(windows[0][:v.MAX_SAMPLES], windows[1][:v.MAX_SAMPLES], threshold_pct)


def _labelled(runs: Sequence[Run]) -> list[Run]:
    """``runs`` with distinct labels: a label two runs share (two folders named CPU)
    becomes the folder's parent and name ('before/CPU')."""
    out = list(runs)
    for attempt in ("parent", "refuse"):
        labels = [r.label for r in out]
        dupes = {n for n in labels if labels.count(n) > 1}
        if not dupes:
            return out
        if attempt == "refuse":
            raise CompareError(f"more than one run labelled {', '.join(sorted(dupes))} "
                               f"({', '.join(r.source for r in out if r.label in dupes)}): "
                               "give each folder its own --label")
        out = [replace(r, label="/".join(Path(r.source).parts[-2:])) if r.label in dupes else r
               for r in out]
    return out


def _baseline(runs: Sequence[Run], name: str | None) -> Run:
    if name is None:
        return runs[0]
    by_label = [r for r in runs if r.label == name]
    by_hardware = [r for r in runs if r.hardware == name]
    if by_label or len(by_hardware) == 1:
        return (by_label or by_hardware)[0]
    raise CompareError(f"baseline {name!r} is none of the runs' labels "
                       f"({', '.join(r.label for r in runs)})"
                       + (" and more than one run is of that hardware" if by_hardware else "")
                       + "; pass --baseline with one of the labels")


def _mixed(runs: Sequence[Run]) -> list[str]:
    out = []
    for what, attr in (("tier", "tier"), ("zoo version", "zoo_version")):
        values: dict[str, list[str]] = {}
        for run in runs:
            values.setdefault(getattr(run, attr), []).append(run.label)
        if len(values) > 1:
            out.append(f"the runs differ in {what}: " + ", ".join(
                f"{v} ({', '.join(hw)})" for v, hw in values.items()))
    return out


def noise(point: PerfPoint) -> float:
    """How far this point's QPS may move by noise alone: the spread of its windows
    as measured, else the spread its run allowed, else DEFAULT_NOISE."""
    for value in (point.spread, point.max_spread):
        if value is not None and math.isfinite(value) and value >= 0:
            return value
    return DEFAULT_NOISE


def _cell(run: Run, row: Row | None, base: Row | None) -> Cell:
    cell = Cell(run.label, run.hardware, row)
    if row is None:
        return cell
    cell.loaded = row.loaded
    _compare_llm(cell, row, base)
    if base is None:
        return cell
    # Like against like: each scenario and batch size both measured. A server run's
    # QPS is the load it was offered, not a figure of the hardware: no ratio.
    base_points = {(p.scenario, p.batch_size): p for p in base.perf
                   if _positive(p.qps) and p.scenario != "server"}
    for p in row.perf:
        b = base_points.get((p.scenario, p.batch_size))
        if b is not None and p.qps is not None and math.isfinite(p.qps):
            cell.qps_ratios.append(Ratio(p.scenario, p.batch_size, p.qps / b.qps,
                                         max(noise(p), noise(b))))
    cell.qps_ratios.sort(key=lambda r: (r.scenario != "offline", r.scenario,
                                        r.batch_size or r.concurrency or 0))
    _compare_latencies(cell, row, base)
    return cell


def _compare_llm(cell: Cell, row: Row, base: Row | None) -> None:
    """LLM serving runs against the baseline's of the same scenario and
    concurrency: output tokens/s (in ``qps_ratios``: the row's throughput), and
    the TTFT and TPOT p99 of the run its summary shows (one request at a time
    where measured). A server run is offered the rate its search chose, not a
    load both runs share: no ratio, as for a server's QPS. LLM records carry no
    window spreads: the noise is DEFAULT_NOISE."""
    def point(g: Mapping[str, Any]) -> tuple[Any, Any]:
        return g.get("scenario"), g.get("concurrency")

    theirs = {point(g): g for g in (base.generation if base else ())
              if g.get("scenario") not in (None, "server", "sweep")}
    for g in row.generation:
        b, mine = theirs.get(point(g)), g.get("output_tokens_per_s")
        if b is not None and _positive(b.get("output_tokens_per_s")) and mine is not None:
            cell.qps_ratios.append(Ratio(g["scenario"], None, mine / b["output_tokens_per_s"],
                                         DEFAULT_NOISE, concurrency=g.get("concurrency")))
    shown = row.llm_latency
    if shown is None:
        return
    b = theirs.get(point(shown)) or {}
    for key, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT")):
        mine, ref = (shown.get(key) or {}).get("p99"), (b.get(key) or {}).get("p99")
        if mine is not None:
            cell.llm_latencies.append((name, mine, Ratio(
                shown["scenario"], None, mine / ref, DEFAULT_NOISE, lower_is_better=True,
                concurrency=shown.get("concurrency")) if _positive(ref) else None))


def _compare_latencies(cell: Cell, row: Row, base: Row) -> None:
    """The latencies at the baseline's load: the same scenario and batch size and,
    for a server run, the same offered QPS; latencies at other loads are not
    compared. The points are those with a p99, the latency every summary shows."""
    b = base.loaded
    if b is None or not _positive(b.p99):
        return
    same = [p for p in row.perf if p.scenario == b.scenario and p.batch_size == b.batch_size
            and p.p99 is not None and math.isfinite(p.p99)]
    if not same:
        cell.latency_note = f"not measured at the baseline's load ({load_point(b)})"
        return
    if b.scenario == "server":
        at = [p for p in same if p.target_qps and b.target_qps
              and abs(p.target_qps / b.target_qps - 1) <= _SAME_LOAD]
        if not at:
            cell.loaded = same[0]
            cell.latency_note = (f"offered {fmt_num(same[0].target_qps, 4)} QPS where the "
                                 f"baseline's was {fmt_num(b.target_qps, 4)}: latencies at "
                                 "other loads do not compare")
            return
        same = at
    point = cell.loaded = same[0]
    for f in LATENCIES:
        mine, theirs = getattr(point, f.attr), getattr(b, f.attr)
        if _positive(theirs) and mine is not None and math.isfinite(mine):
            cell.latency_ratios[f.attr] = Ratio(b.scenario, b.batch_size, mine / theirs,
                                                max(noise(point), noise(b)),
                                                lower_is_better=True)


def _positive(value: float | None) -> bool:
    """A figure a ratio can divide by: measured, finite and above zero."""
    return value is not None and math.isfinite(value) and value > 0


def _attach(lines: list[Line], published: Iterable[Published], tiers: Mapping[str, str]) -> None:
    for fig in published:
        same_model = [ln for ln in lines if ln.model == fig.model]
        if not same_model:
            continue
        same = [ln for ln in same_model if ln.precision.lower() == fig.precision.lower()]
        line = (same or sorted(same_model, key=lambda ln: _precision_rank(ln.precision)))[0]
        line.published.append(PublishedRow(fig, _published_warnings(line, fig, tiers)))


def _published_warnings(line: Line, fig: Published, tiers: Mapping[str, str]) -> list[str]:
    """Where a published figure differs from the measured rows beside it."""
    out = []
    measured = [c for c in line.cells if c.row is not None]
    small = sorted({tiers[c.label] for c in measured if tiers.get(c.label) != "full"})
    if small:
        out.append(f"measured at the {', '.join(small)} tier's shapes; published at the "
                   "full zoo's: not comparable")
    sizes = sorted({p.batch_size for c in measured for p in c.row.perf
                    if p.batch_size is not None})
    if fig.batch_size is not None and sizes and fig.batch_size not in sizes:
        out.append(f"published at bs {fig.batch_size}; measured at bs "
                   f"{', '.join(map(str, sizes))}")
    # "INT8/BF16" and "not stated (fp32 workload)" name the measured precision.
    if line.precision.lower() not in fig.precision.lower():
        out.append(f"published precision {fig.precision}; measured {line.precision}")
    return out


def load_point(point: PerfPoint) -> str:
    """What load a latency was measured under, in words."""
    if point.scenario == "server" and point.target_qps:
        return f"{point.target_qps:.4g} QPS offered (server, bs {point.batch_size})"
    return f"one query at a time ({point.scenario.replace('_', ' ')}, bs {point.batch_size})"


def status_rank(status: str) -> int:
    """Worst first: where ``status`` goes in a failures-first order."""
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _precision_rank(precision: str) -> int:
    return PRECISIONS.index(precision) if precision in PRECISIONS else len(PRECISIONS)
