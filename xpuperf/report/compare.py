"""Several hardware's runs joined by combination, against a baseline (pure).

A Run is one reports folder read back (xpuperf.report.runs). Runs compare only
when they ran the same tier of the same zoo: a smoke run's QPS beside a full
run's is a different workload, not a faster card, so a mix is refused unless
the caller allows it (and the page then says so).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from backends.base import PRECISIONS
from xpuperf.report.published import Published
from xpuperf.report.summary import PerfPoint, Row

# Which status a group of rows shows, worst first; also the default table order.
STATUS_ORDER = ("failed", "error", "xfailed", "skipped", "passed")


class CompareError(ValueError):
    """The runs cannot be compared as asked."""


@dataclass
class Run:
    """One hardware's session, as its reports folder holds it."""

    hardware: str
    source: str  # the folder it was read from
    info: Mapping[str, Any]
    rows: list[Row]

    @property
    def tier(self) -> str:
        return str(self.info.get("tier") or "unknown")

    @property
    def zoo_version(self) -> str:
        return str(self.info.get("zoo_version") or "unknown")


@dataclass
class Cell:
    """One hardware's figures for one combination, and their ratio to the baseline's."""

    hardware: str
    row: Row | None  # None: the combination is not in that run
    qps_ratio: float | None = None  # best QPS / the baseline's best QPS
    p99_ratio: float | None = None  # p99 under load / the baseline's, same scenario

    @property
    def status(self) -> str:
        return self.row.status if self.row else "not run"


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
    published: list[Published] = field(default_factory=list)

    @property
    def statuses(self) -> list[str]:
        return sorted({c.status for c in self.cells})

    @property
    def status(self) -> str:
        """The worst status of any hardware."""
        return min(self.statuses, key=status_rank)


@dataclass
class Comparison:
    runs: list[Run]
    baseline: str
    lines: list[Line]
    # Set when the runs differ in tier or zoo and the caller allowed it: the page says so.
    mixed: list[str] = field(default_factory=list)

    @property
    def hardware(self) -> list[str]:
        return [r.hardware for r in self.runs]

    def values(self, attr: str) -> list[str]:
        """The distinct values of a Line attribute, for the page's filters."""
        return sorted({str(getattr(line, attr)) for line in self.lines})


def compare(runs: Sequence[Run], baseline: str | None = None,
            published: Iterable[Published] = (), allow_mixed: bool = False) -> Comparison:
    """Join ``runs`` by combination; ratios are to the run of hardware ``baseline``
    (default: the first run). Lines are ordered failures first, then by model and
    precision; each published figure goes with its model's line of the same
    precision, else with the model's first line."""
    if not runs:
        raise CompareError("no runs to compare: give one or more reports folders")
    names = [r.hardware for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CompareError(f"more than one run of hardware {', '.join(dupes)} "
                           f"({', '.join(r.source for r in runs if r.hardware in dupes)}): "
                           "compare one run per hardware")
    baseline = baseline or names[0]
    if baseline not in names:
        raise CompareError(f"baseline {baseline!r} is none of the runs' hardware "
                           f"({', '.join(names)}); pass --baseline with one of them")
    mixed = _mixed(runs)
    if mixed and not allow_mixed:
        raise CompareError("; ".join(mixed) + ": their figures do not compare (other shapes "
                           "or models); rerun them alike, or pass --allow-mixed to compare anyway")
    base = {r.combination: r for r in next(run for run in runs if run.hardware == baseline).rows}
    by_run = [{r.combination: r for r in run.rows} for run in runs]
    combos: dict[str, Row] = {}
    for rows in by_run:
        for combo, row in rows.items():
            combos.setdefault(combo, row)
    lines = [Line(combination=combo, model=row.model, family=row.family or row.model,
                  domain=row.domain, dataset=row.dataset, precision=row.precision,
                  cells=[_cell(run.hardware, rows.get(combo), base.get(combo))
                         for run, rows in zip(runs, by_run)])
             for combo, row in combos.items()]
    lines.sort(key=lambda ln: (status_rank(ln.status), ln.model, _precision_rank(ln.precision),
                               ln.precision, ln.dataset))
    _attach(lines, published)
    return Comparison(runs=list(runs), baseline=baseline, lines=lines, mixed=mixed)


def _mixed(runs: Sequence[Run]) -> list[str]:
    out = []
    for what, attr in (("tier", "tier"), ("zoo version", "zoo_version")):
        values: dict[str, list[str]] = {}
        for run in runs:
            values.setdefault(getattr(run, attr), []).append(run.hardware)
        if len(values) > 1:
            out.append(f"the runs differ in {what}: " + ", ".join(
                f"{v} ({', '.join(hw)})" for v, hw in values.items()))
    return out


def _cell(hardware: str, row: Row | None, base: Row | None) -> Cell:
    cell = Cell(hardware, row)
    if row is None or base is None:
        return cell
    best, base_best = row.best, base.best
    if best and base_best and base_best.qps:
        cell.qps_ratio = best.qps / base_best.qps
    loaded, base_loaded = row.loaded, base.loaded
    if loaded and base_loaded and loaded.scenario == base_loaded.scenario and base_loaded.p99:
        cell.p99_ratio = loaded.p99 / base_loaded.p99
    return cell


def _attach(lines: list[Line], published: Iterable[Published]) -> None:
    for fig in published:
        same_model = [ln for ln in lines if ln.model == fig.model]
        if not same_model:
            continue
        same = [ln for ln in same_model if ln.precision.lower() == fig.precision.lower()]
        (same or sorted(same_model, key=lambda ln: _precision_rank(ln.precision)))[0] \
            .published.append(fig)


def load_point(point: PerfPoint) -> str:
    """What load a p99 was measured under, in words."""
    if point.scenario == "server" and point.target_qps:
        return f"{point.target_qps:.4g} QPS offered (server, bs {point.batch_size})"
    return f"one query at a time ({point.scenario.replace('_', ' ')}, bs {point.batch_size})"


def status_rank(status: str) -> int:
    """Worst first: where ``status`` goes in a failures-first order."""
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _precision_rank(precision: str) -> int:
    return PRECISIONS.index(precision) if precision in PRECISIONS else len(PRECISIONS)
