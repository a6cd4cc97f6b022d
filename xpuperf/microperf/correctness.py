"""Is an op's result right? Against an fp64 computation on the CPU of the same
inputs (the same values, widened):

    RMSE(result, fp64) <= m * RMSE(torch's CPU fp32 result, fp64) + floor

m per precision (MARGIN): 4 times the ratio of the precision's machine epsilon
to fp32's, so a half-precision kernel may be as far from fp64 as its number
format explains and no further; the floor is one epsilon of the output's
format times the reference's RMS (a result rounded to fp16 is off by that
however exact the arithmetic; integers must be exact). Collectives are
checked elsewhere (xpuperf.microperf.xccl: an exactly known buffer).

Pure numpy on the outputs; the callers compute them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_EPS = {"fp32": 2.0 ** -23, "tf32": 2.0 ** -10, "fp16": 2.0 ** -10, "bf16": 2.0 ** -7,
        "fp8": 2.0 ** -3, "fp64": 2.0 ** -52, "int8": 0.0, "int32": 0.0, "int64": 0.0}
MARGIN = {p: 4 * e / _EPS["fp32"] for p, e in _EPS.items()}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rmse: float
    rmse_fp32: float
    bound: float
    margin: float
    floor: float
    checked_elements: int
    nonfinite: int

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rmse": self.rmse, "rmse_fp32_cpu": self.rmse_fp32,
                "bound": self.bound, "margin": self.margin, "floor": self.floor,
                "checked_elements": self.checked_elements, "nonfinite": self.nonfinite,
                "rule": "RMSE(result, fp64) <= margin * RMSE(cpu fp32, fp64) + floor"}

    def why(self) -> str:
        if self.nonfinite:
            return f"{self.nonfinite} non-finite value(s) where the fp64 reference is finite"
        return (f"RMSE {self.rmse:.3g} against fp64 exceeds {self.bound:.3g} "
                f"({self.margin:g} x CPU fp32's {self.rmse_fp32:.3g} + floor {self.floor:.3g})")


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else 0.0


def judge(result: np.ndarray, fp32: np.ndarray, fp64: np.ndarray, precision: str,
          out_precision: str) -> Verdict:
    """``result`` (the device's, at ``precision``) and ``fp32`` (torch's CPU at fp32)
    against ``fp64``, all widened to float64 by the caller, of one shape."""
    if result.shape != fp64.shape:
        raise ValueError(f"result shape {result.shape} != reference shape {fp64.shape}")
    finite = np.isfinite(fp64)
    nonfinite = int(np.count_nonzero(~np.isfinite(result) & finite))
    result, fp32, fp64 = result[finite], fp32[finite], fp64[finite]
    rms = float(np.sqrt(np.mean(fp64 ** 2))) if fp64.size else 0.0
    floor = _EPS[out_precision] * rms
    rmse, rmse32 = _rmse(result, fp64), _rmse(fp32, fp64)
    bound = MARGIN[precision] * rmse32 + floor
    return Verdict(nonfinite == 0 and rmse <= bound, rmse, rmse32, bound, MARGIN[precision],
                   floor, int(fp64.size), nonfinite)
