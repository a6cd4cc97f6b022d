"""Judging this run's items: a performance item's speed against a stored
baseline (--baseline) or against a baseline measured beside it in this session
(A/B), and a metric item's task metric against the baseline's.

A speed comparison measures again, within a budget, until the verdict
(xpuperf.gate.verdict) is decided: an inconclusive verdict (noise wider than
the threshold) and an unsteady run (its windows disagreed beyond the tier's
max_spread) are never judged as they are. What is still undecided when the
budget is spent stays inconclusive, and --gate-inconclusive says whether that
passes or fails the item. No pytest here: the measurements come in as callables.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from xpuperf.cases import MICRO_SUITE
from xpuperf.gate import verdict as v
from xpuperf.gate.baseline import Baseline
from xpuperf.report.bytemlperf import metric_name

INCONCLUSIVE_EFFECTS = ("fail", "pass")
# zoo.yaml tiers.<tier>.gate: what a tier may set of GateSettings.
TIER_KEYS = ("remeasure", "ab_rounds", "ab_block_s")


@dataclass(frozen=True)
class GateSettings:
    """``threshold_pct``: --max-regression. ``remeasure``: how many more
    measurements an undecided item gets. ``ab_rounds`` pairs of ``ab_block_s``
    blocks make one A/B measurement. ``inconclusive``: what an undecided item
    does to the run, "fail" (the default: a gate that cannot tell must not let
    a change through unseen) or "pass" (it passes, said in its record and the
    terminal)."""

    threshold_pct: float = 10.0
    remeasure: int = 2
    ab_rounds: int = 10
    ab_block_s: float = 0.3
    inconclusive: str = "fail"

    def with_tier(self, tier: Mapping[str, Any]) -> "GateSettings":
        return replace(self, **{k: type(getattr(self, k))(tier[k]) for k in TIER_KEYS if k in tier})


@dataclass(frozen=True)
class SpeedComparison:
    """A performance item's speed verdict, the measurements it took, and the
    figures to keep in the item's record (``record``)."""

    verdict: v.Verdict
    runs: int
    record: dict[str, Any]

    def problem(self, effect: str) -> str:
        """The message that fails the item, or "" when it passes."""
        if self.verdict.verdict == v.REGRESSED:
            return f"speed gate: {self.verdict.describe()}"
        if self.verdict.verdict == v.INCONCLUSIVE and effect == "fail":
            return (f"speed gate: {self.verdict.describe()}; undecided after {self.runs} "
                    "measurement(s) (--gate-inconclusive=pass lets such an item through)")
        return ""


def item_key(record: Mapping[str, Any]) -> str:
    """An item's id without the test name: a micro item's case, a performance
    item's combination-bsN-scenario."""
    if record.get("suite") == MICRO_SUITE:
        return str(record.get("case"))
    return f"{record.get('combination')}-bs{record.get('batch_size')}-{record.get('scenario')}"


def against_baseline(key: str, record: Mapping[str, Any], baseline: Baseline,
                     settings: GateSettings, remeasure: Callable[[], Mapping[str, Any]]
                     ) -> SpeedComparison | None:
    """Item ``key``'s window throughputs (``record``: its run's figures) against
    the stored baseline's (None when the baseline lacks the item). An unsteady
    run of this item is measured again; the steady runs' windows are pooled
    while the verdict is undecided."""
    old = baseline.perf.get(key)
    if old is None:
        return None
    figures = {"source": baseline.source, "qps": old.qps, "p99_ms": old.p99_ms}
    method = "stored baseline's windows, Mann-Whitney / Hodges-Lehmann"
    if not old.samples or old.stable is False:
        why = ("the baseline keeps no throughput samples (it was written before xpuperf "
               "kept them): record it again" if not old.samples else
               "the baseline's run was unsteady (its windows disagreed): record it again")
        return _result(undecided(why, settings, method, len(old.samples), 0), 0, figures)
    pool: list[float] = []
    unsteady, runs, run = 0, 0, record
    while True:
        runs += 1
        if run.get("stable") is False:
            unsteady += 1
        else:
            pool += [float(q) for q in run.get("window_qps") or []]
        if pool:
            found = v.unpaired(old.samples, pool[-v.MAX_SAMPLES:], settings.threshold_pct)
            if found.verdict != v.INCONCLUSIVE:
                break
        if runs > settings.remeasure:
            break
        run = remeasure()
    if not pool:
        found = undecided(f"this item's run was unsteady {unsteady} time(s) out of {runs}",
                          settings, method, len(old.samples), 0)
    return _result(found, runs, {**figures, "unsteady_runs": unsteady})


def ab(measure: Callable[[int], tuple[Sequence[float], Sequence[float]]],
       settings: GateSettings) -> SpeedComparison:
    """Baseline and candidate measured in interleaved blocks: ``measure(rounds)``
    gives ``rounds`` pairs of block throughputs (baseline's, candidate's), each
    pair taken next to each other. Undecided, it measures more pairs."""
    base: list[float] = []
    cand: list[float] = []
    runs = 0
    while True:
        runs += 1
        b, c = measure(settings.ab_rounds)
        base += b
        cand += c
        found = v.paired(base[-v.MAX_SAMPLES:], cand[-v.MAX_SAMPLES:], settings.threshold_pct)
        if found.verdict != v.INCONCLUSIVE or runs > settings.remeasure:
            break
    return _result(found, runs, {"source": "A/B in this session", "qps": float(np.median(base)),
                                 "ab_baseline_qps": base, "ab_candidate_qps": cand})


def undecided(why: str, settings: GateSettings, method: str, n_base: int,
              n_cand: int) -> v.Verdict:
    return v.Verdict(v.INCONCLUSIVE, None, None, None, settings.threshold_pct, v.CONFIDENCE,
                     method, n_base, n_cand, why)


def _result(found: v.Verdict, runs: int, figures: dict[str, Any]) -> SpeedComparison:
    # qps_regression_pct: the name the reports read the change by.
    return SpeedComparison(found, runs, {**figures, **found.as_record(), "runs": runs,
                                         "qps_regression_pct": found.change_pct,
                                         "max_regression_pct": found.threshold_pct})


def check_metric(record: Mapping[str, Any], baseline: Baseline) -> tuple[list[str], dict[str, Any]]:
    """(problems, comparison) of a metric item against the baseline: it fails when
    its task metric dropped by more than the zoo's max_drop for the precision."""
    if record.get("suite") != "metric":
        return [], {}
    old = baseline.metrics.get(str(record.get("combination")))
    primary = record.get("primary")
    metrics = record.get("metrics") if isinstance(record.get("metrics"), Mapping) else {}
    new = metrics.get(primary) if isinstance(primary, str) else None
    if old is None or not isinstance(new, (int, float)) or old[0] != metric_name(primary):
        return [], {}
    drop = old[1] - new
    max_drop = record.get("max_drop")
    max_drop = max_drop if isinstance(max_drop, (int, float)) else None
    comparison = {"source": baseline.source, "metric": old[1], "drop": drop, "max_drop": max_drop}
    if max_drop is None or drop <= max_drop:
        return [], comparison
    return [f"{primary} dropped {drop:.3f} points against the baseline: {old[1]:.3f} -> {new:.3f}, "
            f"more than the {max_drop:g} tolerated for {record.get('precision')}"], comparison

