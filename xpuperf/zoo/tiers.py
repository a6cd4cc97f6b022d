"""How zoo.yaml says to run its models: the tiers' run control (perf settings,
scenario picks, integrity audits, the peak-FLOP/s GEMM) and each model's
performance scenarios. xpuperf.zoo validates the rest of the file and calls in here.

Pure, as xpuperf.zoo: the validator passed in raises the file:line errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xpuperf.zoo.validator import PICKS, Validator

TIERS = ("smoke", "gate", "full")
# Tiers that run the models' small shapes (each entry's `smoke:` override): the
# gate tier is a selection of the smoke tier's items, measured for a speed gate.
SMALL_SHAPE_TIERS = ("smoke", "gate")
# tiers.<tier>.gate: the speed gate's measurement (xpuperf.gate.judge.GateSettings):
# re-measurements of an undecided item, pairs of A/B blocks and a block's seconds.
GATE_KEYS = {"remeasure": "int", "ab_rounds": "int", "ab_block_s": "num"}
# MLPerf LoadGen's scenarios, spelled as in item ids (-k words have no hyphens).
SCENARIOS = ("offline", "single_stream", "multi_stream", "server", "multi_client")
# Run control of every performance item (xpuperf.measure.loadgen.RunSettings): minimum
# duration and query count, warm-up queries, steady-state windows and their spread.
PERF_KEYS = ("min_time_s", "min_rounds", "warmup_rounds", "windows", "max_spread")
# The integrity audits' run control: rounds of two alternating blocks (one per
# side) and the queries in a block; xpuperf.measure.audits judges on a sign test over the
# rounds at 99 % confidence, which fewer than 8 rounds cannot reach (0.5 ** 7 > 1 %).
AUDIT_KEYS = ("rounds", "block")
MIN_AUDIT_ROUNDS = 8

TIER_FIELDS: dict[str, tuple[bool, str]] = {
    "perf": (False, "map"),
    "scenarios": (False, "map"),
    "audits": (False, "map"),
    "peak_gemm": (False, "int"),
    "timeout_s": (False, "num"),
    "models": (False, "list"),  # a selection of the zoo's models (default: all)
    "precisions": (False, "list"),  # run at these of each selected model's precisions
    "gate": (False, "map"),
}
# A scenario entry: {scenario: server, batch_sizes: max, ...} or just its name.
SCENARIO_FIELDS: dict[str, tuple[bool, str]] = {
    "scenario": (True, "str"),
    "batch_sizes": (False, "pick"),
    "latency_bound_ms": (False, "num"),
    "load": (False, "num"),
    "clients": (False, "int"),
    "samples_per_query": (False, "int"),
}
# Settings that belong to one scenario, and those it cannot run without.
SCENARIO_ONLY = {"latency_bound_ms": "server", "load": "server", "clients": "multi_client",
                 "samples_per_query": "multi_stream"}
SCENARIO_NEEDS = {"server": ("latency_bound_ms", "load"), "multi_client": ("clients",)}
# Without tiers.<tier>.peak_gemm: a GEMM big enough to keep a CPU busy for a few ms.
DEFAULT_PEAK_GEMM = 1024
# Without tiers.<tier>.timeout_s: the time limit of one model item, in seconds (past
# it the backend's worker is ended and the item fails saying so).
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class ScenarioSpec:
    """One scenario of a model, its batch sizes resolved against the model's.

    server: queries arrive as a Poisson process at ``load`` x the offline
    throughput at the same batch size; valid when p99 <= ``latency_bound_ms``.
    multi_client: ``clients`` submitters. multi_stream: the batch size is the
    samples per query.
    """

    name: str
    batch_sizes: tuple[int, ...]
    latency_bound_ms: float | None = None
    load: float | None = None
    clients: int | None = None


def pick_batch_sizes(batch_sizes: tuple[int, ...], pick: str) -> tuple[int, ...]:
    if pick == "min":
        return (min(batch_sizes),)
    if pick == "max":
        return (max(batch_sizes),)
    return batch_sizes


def tier_settings(v: Validator, tiers: Any, tier: str) -> dict[str, Any]:
    """The run control of ``tier`` from the top-level ``tiers`` mapping, as
    keyword arguments of xpuperf.zoo.Zoo. Every tier is validated, so that a
    mistake shows in either run."""
    tiers = tiers or {}
    v.fields("tiers", tiers, {t: (False, "map") for t in TIERS})
    for name, settings in tiers.items():
        _tier(v, f"tiers.{name}", settings or {})
    this = tiers.get(tier) or {}
    return {"perf": dict(this.get("perf") or {}),
            "scenarios": dict(this["scenarios"]) if "scenarios" in this else None,
            "audits": dict(this["audits"]) if "audits" in this else None,
            "peak_gemm": int(this.get("peak_gemm", DEFAULT_PEAK_GEMM)),
            "timeout_s": float(this.get("timeout_s", DEFAULT_TIMEOUT_S)),
            "gate": dict(this.get("gate") or {})}


def small_shapes(tier: str) -> bool:
    """Whether ``tier`` takes the models' `smoke:` overrides."""
    return tier in SMALL_SHAPE_TIERS


def selected(v: Validator, tiers: Any, tier: str, models: tuple, generation: tuple
             ) -> tuple[tuple, tuple]:
    """(models, LLM workloads) narrowed to tiers.<tier>.models (names of either)
    and .precisions, when the tier has them."""
    from dataclasses import replace

    this = (tiers or {}).get(tier) or {}
    names, precisions = this.get("models"), this.get("precisions")
    known = tuple(sorted({m.name for m in models} | {g.name for g in generation}))
    for name in names or ():
        v.one_of(f"tiers.{tier}.models", name, known, "model")

    def keep(entries: tuple) -> tuple:
        picked = [e for e in entries if names is None or e.name in names]
        if precisions is not None:
            picked = [replace(e, precisions=tuple(p for p in e.precisions if p in precisions))
                      for e in picked]
        return tuple(e for e in picked if e.precisions)
    return keep(models), keep(generation)


def _tier(v: Validator, where: str, raw: Any) -> None:
    v.fields(where, raw, TIER_FIELDS)
    perf = raw.get("perf") or {}
    v.fields(f"{where}.perf", perf, {k: (False, "num") for k in PERF_KEYS})
    for key in ("min_time_s", "max_spread"):
        if key in perf and perf[key] < 0:
            v.fail(f"{where}.perf.{key}", f"must be >= 0, got {perf[key]!r}")
    for key in ("min_rounds", "windows"):
        if key in perf and not (isinstance(perf[key], int) and perf[key] >= 1):
            v.fail(f"{where}.perf.{key}", f"must be a positive integer, got {perf[key]!r}")
    if "warmup_rounds" in perf and not (isinstance(perf["warmup_rounds"], int)
                                        and perf["warmup_rounds"] >= 0):
        v.fail(f"{where}.perf.warmup_rounds",
               f"must be a non-negative integer, got {perf['warmup_rounds']!r}")
    for name, pick in (raw.get("scenarios") or {}).items():
        v.one_of(f"{where}.scenarios", name, SCENARIOS, "scenario")
        v.one_of(f"{where}.scenarios.{name}", pick, PICKS, "batch size pick")
    audits = raw.get("audits")
    if audits is not None:
        v.fields(f"{where}.audits", audits, {k: (True, "int") for k in AUDIT_KEYS})
        if audits["rounds"] < MIN_AUDIT_ROUNDS:
            v.fail(f"{where}.audits.rounds", f"must be at least {MIN_AUDIT_ROUNDS} (fewer cannot "
                   f"show a difference at 99% confidence), got {audits['rounds']!r}")
        if audits["block"] < 1:
            v.fail(f"{where}.audits.block", f"must be a positive integer, got {audits['block']!r}")
    if "timeout_s" in raw and not raw["timeout_s"] > 0:
        v.fail(f"{where}.timeout_s", f"is the time limit of one item in seconds: must be > 0, "
               f"got {raw['timeout_s']!r}")
    gate = raw.get("gate") or {}
    v.fields(f"{where}.gate", gate, {k: (False, kind) for k, kind in GATE_KEYS.items()})
    for key, value in gate.items():
        if not value > 0 and not (key == "remeasure" and value == 0):
            v.fail(f"{where}.gate.{key}", f"must be > 0, got {value!r}")
    if "peak_gemm" in raw and raw["peak_gemm"] < 1:
        v.fail(f"{where}.peak_gemm", f"must be a positive integer, got {raw['peak_gemm']!r}")


def model_scenarios(v: Validator, where: str, entries: list | None, model: str,
                    batch_sizes: tuple[int, ...]) -> tuple[ScenarioSpec, ...]:
    """A model's scenario entries (``where`` names the list; offline alone when
    it gives none), each resolved against the model's batch sizes."""
    return tuple(_scenario(v, f"{where}[{i}]", s, model, batch_sizes)
                 for i, s in enumerate(entries or ["offline"]))


def _scenario(v: Validator, where: str, raw: Any, model: str,
              batch_sizes: tuple[int, ...]) -> ScenarioSpec:
    if isinstance(raw, str):
        raw = {"scenario": raw}
    v.fields(where, raw, SCENARIO_FIELDS)
    name = raw["scenario"]
    v.one_of(f"{where}.scenario", name, SCENARIOS, "scenario")
    for key, owner in SCENARIO_ONLY.items():
        if key in raw and name != owner:
            v.fail(f"{where}.{key}", f"applies to the {owner} scenario only, not {name}")
    for key in SCENARIO_NEEDS.get(name, ()):
        if key not in raw:
            v.fail(where, f"the {name} scenario needs {key!r}")
    if raw.get("latency_bound_ms", 1) <= 0:
        v.fail(f"{where}.latency_bound_ms", f"must be > 0, got {raw['latency_bound_ms']!r}")
    if not 0 < raw.get("load", 1) <= 1:
        v.fail(f"{where}.load", "is the target rate as a fraction of the offline throughput: "
               f"must be in (0, 1], got {raw['load']!r}")
    if raw.get("clients", 1) < 1:
        v.fail(f"{where}.clients", f"must be a positive integer, got {raw['clients']!r}")
    pick = raw.get("batch_sizes", "all")
    if "samples_per_query" in raw:
        if "batch_sizes" in raw:
            v.fail(f"{where}.samples_per_query", "is the batch size of a multi_stream query: "
                   "give it or batch_sizes, not both")
        pick = [raw["samples_per_query"]]
    if isinstance(pick, str):
        v.one_of(f"{where}.batch_sizes", pick, PICKS, "batch size pick")
        chosen = pick_batch_sizes(batch_sizes, pick)
    else:
        field_name = "samples_per_query" if "samples_per_query" in raw else "batch_sizes"
        for i, bs in enumerate(pick):
            if bs not in batch_sizes:
                v.fail(f"{where}.{field_name}" + ("" if "samples_per_query" in raw else f"[{i}]"),
                       f"{bs!r} is not a batch size of models.{model} "
                       f"({', '.join(map(str, batch_sizes))})")
        chosen = tuple(dict.fromkeys(pick))
    return ScenarioSpec(name=name, batch_sizes=chosen,
                        latency_bound_ms=_float_or_none(raw.get("latency_bound_ms")),
                        load=_float_or_none(raw.get("load")), clients=raw.get("clients"))


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
