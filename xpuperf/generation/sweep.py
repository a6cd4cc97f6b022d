"""The SLA sweep of an LLM workload (--llm-sweep): its load at each point, request
rates (the server scenario's arrivals) or concurrencies (a closed loop), every
point's figures judged against the SLOs, and the verdict: the highest point that
meets them and the lowest that does not. ``auto`` finds that edge itself, as
MLPerf's Server scenario and vLLM's `bench sweep serve_sla` do
(xpuperf.generation.harness.search: doubling, then bisecting).

Each point also carries the two axes of InferenceX's frontier: output tokens/s
per device (--llm-devices: the accelerators the server uses) against tokens/s
per user (interactivity: 1 / the median TPOT, the decode rate one user sees).
The session (xpuperf.generation.serving) says how a point is run (``run_at``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from xpuperf.generation.harness import search

AUTO = "auto"
VARIABLES = ("rate", "concurrency")
EXAMPLES = "rate=1,2,4, concurrency=1,2,4, rate=auto or concurrency=auto"


@dataclass(frozen=True)
class Plan:
    """Which load to vary and at which points (none: ``auto``, searched)."""

    variable: str
    points: tuple[float, ...] = ()

    @property
    def integer(self) -> bool:
        return self.variable == "concurrency"

    def __str__(self) -> str:
        return f"{self.variable}={','.join(f'{p:g}' for p in self.points) or AUTO}"


def parse(text: str) -> Plan:
    """'concurrency=1,2,4' -> Plan('concurrency', (1, 2, 4)); ValueError with the fix."""
    variable, sep, values = text.partition("=")
    variable, values = variable.strip(), values.strip()
    if not sep or variable not in VARIABLES:
        raise ValueError(f"{text!r}: give one of {', '.join(VARIABLES)} and its points, "
                         f"e.g. {EXAMPLES}")
    if values == AUTO:
        return Plan(variable)
    integer = variable == "concurrency"
    try:
        points = sorted({int(v) if integer else float(v) for v in values.split(",")})
    except ValueError:
        points = []
    if not points or points[0] <= 0 or (integer and points[0] < 1):
        kind = "integers >= 1" if integer else "requests/s > 0"
        raise ValueError(f"{text!r}: the points of {variable} are {kind}, comma-separated, "
                         f"or {AUTO}, e.g. {EXAMPLES}")
    return Plan(variable, tuple(points))


def run(plan: Plan, run_at: Callable[[float], dict[str, Any]], start: float,
        budget_s: float, max_trials: int) -> list[tuple[float, dict[str, Any]]]:
    """Every point's (load, figures): the plan's points, or the search's trials
    from ``start`` within ``budget_s`` and ``max_trials`` (auto)."""
    if plan.points:
        return [(p, run_at(p)) for p in plan.points]
    return search(run_at, start, budget_s, max_trials, integer=plan.integer)


def point(variable: str, load: float, fig: Mapping[str, Any], devices: int) -> dict[str, Any]:
    """One point's record: the load, whether it met the SLOs, its figures, and
    the frontier's axes."""
    tokens, tpot = fig["output_tokens_per_s"], fig["tpot_ms"]
    return {variable: load, "passed": bool(fig["valid"]),
            **{k: v for k, v in fig.items() if k != "valid"},
            "output_tokens_per_s_per_device": tokens / devices if tokens is not None else None,
            "tokens_per_s_per_user": 1e3 / tpot["p50"] if tpot and tpot["p50"] > 0 else None}


def record(plan: Plan, trials: Sequence[tuple[float, Mapping[str, Any]]],
           devices: int) -> dict[str, Any]:
    """The sweep's record: its plan, every point by load, the verdict."""
    points = sorted((point(plan.variable, load, fig, devices) for load, fig in trials),
                    key=lambda p: p[plan.variable])
    v = plan.variable
    return {"variable": v, "plan": str(plan), "devices": devices, "points": points,
            "max_passing": max((p[v] for p in points if p["passed"]), default=None),
            "min_failing": min((p[v] for p in points if not p["passed"]), default=None)}
