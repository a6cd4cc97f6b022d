"""The ceilings LLM figures are judged against: peak FLOP/s (prefill MFU) and
memory bandwidth (decode bandwidth utilization).

A backend declares them in info() ("peak_flops": a number or one per precision,
"memory_bandwidth": bytes/s), as a GPU backend knows its device's; otherwise they
are measured here on the host with torch (the CPU engine's device): the best of
a few n x n GEMMs at the precision's dtype, and the best of a few copies of a
buffer far larger than the caches (bytes read + written over the time).
Measured in the session, so a busy machine is judged against its busy self.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

GEMM_N = 512
COPY_BYTES = 128 << 20
REPEATS = 5


@dataclass(frozen=True)
class Ceiling:
    value: float | None
    source: str


def _declared(info: Mapping[str, Any], key: str, precision: str) -> float | None:
    value = info.get(key)
    if isinstance(value, Mapping):
        value = value.get(precision)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return float(value) if ok else None


def peak_flops(info: Mapping[str, Any], precision: str) -> Ceiling:
    declared = _declared(info, "peak_flops", precision)
    if declared:
        return Ceiling(declared, "declared by the backend")
    import torch
    from backends.torch_generation import DTYPES

    # A host without native half-precision arithmetic runs it through fp32 units,
    # and torch may not pick its fastest kernel for one GEMM shape: the peak is
    # the faster of the two dtypes, never below what the model itself reached.
    best = min(_timed(lambda: a @ a)
               for dtype in {torch.float32, getattr(torch, DTYPES.get(precision, "float32"))}
               for a in [torch.randn(GEMM_N, GEMM_N).to(dtype)] for _ in range(REPEATS))
    return Ceiling(2 * GEMM_N ** 3 / best, f"measured on the host: the best of {REPEATS} "
                                           f"{GEMM_N}x{GEMM_N} GEMMs in fp32 and {precision} (torch)")


def memory_bandwidth(info: Mapping[str, Any]) -> Ceiling:
    declared = _declared(info, "memory_bandwidth", "")
    if declared:
        return Ceiling(declared, "declared by the backend")
    import torch

    src = torch.ones(COPY_BYTES // 4)
    dst = torch.empty_like(src)
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(REPEATS))
    return Ceiling(2 * COPY_BYTES / best, f"measured on the host: best copy of "
                                          f"{COPY_BYTES >> 20} MiB of {REPEATS} (torch)")


def _timed(work: Any) -> float:
    start = time.perf_counter_ns()
    work()
    return max(time.perf_counter_ns() - start, 1) / 1e9
