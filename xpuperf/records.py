"""Result records: what one item measured, as plain JSON-able dicts.

Items attach their record with ``record_property(RECORD_KEY, record)`` so that it
travels in the test report, from pytest-xdist workers too, to the controller,
which adds the outcome and writes the reports. The plugin also attaches the
item's identity (ITEM_KEY) at collection, so an item that failed before
recording anything still has a row.

Every record has these keys::

    suite        "metric" | "numerics" | "performance" | "compile"
    combination  "bert-torch-squad-fp16"
    model, dataset, precision, hardware, framework, domain
    weights      "seeded (seed 0)" or the weights file read
    outcome      "passed" | "failed" | "skipped" | "error"    (added by the controller)
    message      the failure or skip reason, "" when passed      (added by the controller)

and, by suite:

    metric       metrics {name: value}, reference_metrics {name: value}, primary,
                 drop (reference - backend, of the primary metric), max_drop,
                 seeded_weights (bool), samples, data_source ("real"|"sample"|"generated"),
                 note (what a reader must know, e.g. that the weights are seeded)
    numerics     outputs {output name: xpuperf.numerics.DiffStats.as_dict(), i.e. mean_abs,
                 std_abs, max_abs, max_rel, mean_rel, cosine, nan, inf,
                 reference_nonfinite, size}, tolerance {key: value},
                 histogram {"edges": [...], "counts": [...]} of |diff| over all outputs
    performance  batch_size, scenario, qps, latency_ms {p50, p90, p99, mean},
                 rounds, samples, wall_s
    compile      status, seconds, precision_used, nodes_total, nodes_native, coverage,
                 fallback_ops [...], artifact_bytes, cached
"""
from __future__ import annotations

import math
from typing import Any

from xpuperf.zoo import Combination

RECORD_KEY = "xpuperf"
ITEM_KEY = "xpuperf_item"
SUITES = ("compile", "metric", "numerics", "performance")


def identity(suite: str, combo: Combination, hardware: str, **extra: Any) -> dict[str, Any]:
    """The keys every record of ``combo`` carries."""
    return {
        "suite": suite,
        "combination": combo.id,
        "model": combo.model.name,
        "dataset": combo.dataset.name,
        "precision": combo.precision,
        "hardware": hardware,
        "framework": combo.model.framework,
        "domain": combo.model.domain,
        **extra,
    }


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats turned into None: JSON has no NaN, and a
    NaN must not read as a number in a report (the message says what happened)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
