"""Numeric agreement of a backend's outputs with the reference (pure numpy).

A non-finite output is a failure in its own right and is never replaced by a
number: the statistics of such an output are computed over its finite values
only, and ``check`` reports the NaN and Inf counts first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import math
from typing import Mapping

import numpy as np

from xpuperf.records import NUMERICS

# Relative differences divide by max(|reference|, REL_FLOOR): logits near zero
# would otherwise turn a harmless absolute error into an enormous relative one.
REL_FLOOR = 1e-3
# DiffStats' statistics, in the order reports show them (their table:
# xpuperf.records.NUMERICS); a tolerance bounds a statistic from above under its
# own name, or (one where lower is worse) from below under "min_<name>".
DIFF_KEYS = tuple(f.attr for f in NUMERICS)
LOWER_IS_WORSE = frozenset({"cosine"})
# DiffStats computes its statistics over finite values only and counts the rest here,
# so these counts, summed over outputs, are what shows a NaN-producing backend.
NONFINITE_KEYS = ("nan", "inf")


@dataclass(frozen=True)
class DiffStats:
    mean_abs: float
    std_abs: float
    max_abs: float
    max_rel: float
    mean_rel: float
    cosine: float
    nan: int  # in the backend's output
    inf: int
    reference_nonfinite: int
    size: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def diff_stats(reference: np.ndarray, output: np.ndarray, rel_floor: float = REL_FLOOR) -> DiffStats:
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs output {out.shape}")
    finite = np.isfinite(out) & np.isfinite(ref)
    r, o = ref[finite], out[finite]
    d = np.abs(o - r)
    rel = d / np.maximum(np.abs(r), rel_floor)
    denom = np.linalg.norm(r) * np.linalg.norm(o)
    if d.size == 0:
        cosine = float("nan")
    elif denom == 0:  # both all-zero is agreement; one all-zero is not
        cosine = 1.0 if not r.any() and not o.any() else 0.0
    else:
        cosine = float(np.dot(r, o) / denom)
    empty = d.size == 0
    return DiffStats(
        mean_abs=float("nan") if empty else float(d.mean()),
        std_abs=float("nan") if empty else float(d.std()),
        max_abs=float("nan") if empty else float(d.max()),
        max_rel=float("nan") if empty else float(rel.max()),
        mean_rel=float("nan") if empty else float(rel.mean()),
        cosine=cosine,
        nan=int(np.isnan(out).sum()),
        inf=int(np.isinf(out).sum()),
        reference_nonfinite=int((~np.isfinite(ref)).sum()),
        size=int(ref.size),
    )


def bound(key: str, tolerance: Mapping[str, float]) -> float | None:
    """The tolerance's bound of DiffStats statistic ``key``, None when it has none."""
    return tolerance.get(f"min_{key}" if key in LOWER_IS_WORSE else key)


def exceeds_tolerance(key: str, value: float | None, tolerance: Mapping[str, float]) -> bool:
    """The one verdict of a DiffStats value against ``tolerance`` (check's and the
    reports'): a NaN breaks any tolerance, a NaN or Inf count any above zero, a
    statistic its bound; a missing value or bound breaks nothing."""
    if value is None:
        return False
    if math.isnan(value):
        return True
    if key in NONFINITE_KEYS:
        return value > 0
    limit = bound(key, tolerance)
    if limit is None:
        return False
    return value < limit if key in LOWER_IS_WORSE else value > limit


def check(name: str, stats: DiffStats, tolerance: Mapping[str, float]) -> list[str]:
    """Why ``stats`` of output ``name`` break ``tolerance``; empty when within it.

    Tolerance keys: max_abs, mean_abs, max_rel (upper bounds), min_cosine (lower);
    any other DiffStats statistic bounds the same way.
    """
    problems = []
    if stats.nan or stats.inf:
        problems.append(f"{name}: {stats.nan} NaN and {stats.inf} Inf values of {stats.size}")
    if stats.reference_nonfinite:
        problems.append(f"{name}: the reference itself has {stats.reference_nonfinite} "
                        "non-finite values; the comparison is unsound")
    for key in DIFF_KEYS:
        limit, value = bound(key, tolerance), getattr(stats, key)
        if limit is not None and exceeds_tolerance(key, value, tolerance):
            sign, digits = ("<", ".6f") if key in LOWER_IS_WORSE else (">", ".3g")
            problems.append(f"{name}: {key} {value:{digits}} {sign} {limit:g}")
    return problems


def check_close(name: str, reference: np.ndarray, output: np.ndarray,
                tolerance: Mapping[str, float]) -> list[str]:
    """Why ``output`` breaks the elementwise bound |output - reference| <= atol +
    rtol x |reference| (numpy's allclose, onnx's test data convention) of
    ``tolerance``'s ``rtol`` and ``atol`` (each 0 when not given); empty when
    within it or when ``tolerance`` gives neither. A NaN or Inf is check's concern."""
    if "rtol" not in tolerance and "atol" not in tolerance:
        return []
    rtol, atol = tolerance.get("rtol", 0.0), tolerance.get("atol", 0.0)
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    finite = np.isfinite(out) & np.isfinite(ref)
    excess = np.abs(out - ref)[finite] - (atol + rtol * np.abs(ref[finite]))
    over = int((excess > 0).sum())
    if not over:
        return []
    worst = int(np.argmax(excess))
    return [f"{name}: {over} of {excess.size} values beyond atol {atol:g} + rtol {rtol:g} x "
            f"|reference| (worst: off by {excess[worst]:.3g} more than its bound, reference "
            f"{ref[finite][worst]:.6g}, output {out[finite][worst]:.6g})"]


def abs_diff_histogram(pairs: list[tuple[np.ndarray, np.ndarray]], bins: int = 12) -> dict[str, list]:
    """Counts of |output - reference| in decade bins from 1e-9 up (ByteMLPerf's diff
    distribution, as numbers rather than a picture); the last bin also holds the
    larger differences, so that every edge stays a finite JSON number."""
    diffs = [np.abs(np.asarray(o, np.float64) - np.asarray(r, np.float64)).ravel() for r, o in pairs]
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    edges = [0.0] + [10.0 ** e for e in range(-9, -9 + bins)]
    d = np.minimum(d[np.isfinite(d)], edges[-1])
    counts, _ = np.histogram(d, bins=edges)
    return {"edges": edges, "counts": [int(c) for c in counts]}
