"""The ceilings LLM figures are judged against: peak FLOP/s (prefill MFU) and
memory bandwidth (decode bandwidth utilization).

A backend declares them in info() ("peak_flops": a number or one per precision,
"memory_bandwidth": bytes/s); otherwise they are measured here with torch on the
engine's device (``GenerationEngine.device``: the host's CPU, or a CUDA device):
the best of a few n x n GEMMs at the precision's dtype, and the best of a few
copies of a buffer far larger than the caches (bytes read + written over the
time). On a GPU both are sized to reach its peak (a small GEMM is launch-bound)
and timed after a synchronize. Measured in the session, so a busy machine is
judged against its busy self.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

# Per device type: a GEMM and a copy large enough to reach the peak there.
GEMM_N = {"cpu": 512, "cuda": 8192}
COPY_BYTES = {"cpu": 128 << 20, "cuda": 1 << 30}
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


def peak_flops(info: Mapping[str, Any], precision: str, device: str = "cpu") -> Ceiling:
    declared = _declared(info, "peak_flops", precision)
    if declared:
        return Ceiling(declared, "declared by the backend")
    import torch
    from backends.torch_generation import DTYPES

    where = torch.device(device)
    n = GEMM_N[where.type]
    # A host without native half-precision arithmetic runs it through fp32 units,
    # and torch may not pick its fastest kernel for one GEMM shape: the peak is
    # the faster of the two dtypes, never below what the model itself reached.
    # On CUDA, fp32 is IEEE fp32 (TF32 off), as the fp32 engine computes.
    best = min(_timed(lambda: a @ a, where)
               for dtype in {torch.float32, getattr(torch, DTYPES.get(precision, "float32"))}
               for a in [torch.randn(n, n, device=where).to(dtype)] for _ in range(REPEATS))
    return Ceiling(2 * n ** 3 / best, f"measured on {_name(where)}: the best of {REPEATS} "
                                      f"{n}x{n} GEMMs in fp32 and {precision} (torch)")


def memory_bandwidth(info: Mapping[str, Any], device: str = "cpu") -> Ceiling:
    declared = _declared(info, "memory_bandwidth", "")
    if declared:
        return Ceiling(declared, "declared by the backend")
    import torch

    where = torch.device(device)
    size = COPY_BYTES[where.type]
    src = torch.ones(size // 4, device=where)
    dst = torch.empty_like(src)
    best = min(_timed(lambda: dst.copy_(src), where) for _ in range(REPEATS))
    return Ceiling(2 * size / best, f"measured on {_name(where)}: best copy of "
                                    f"{size >> 20} MiB of {REPEATS} (torch)")


def _name(device: Any) -> str:
    import torch

    return (f"{device}: {torch.cuda.get_device_name(device)}" if device.type == "cuda"
            else "the host")


def _timed(work: Any, device: Any) -> float:
    """Seconds of ``work()``, the device's queue drained before and after."""
    import torch

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter_ns()
    work()
    sync()
    return max(time.perf_counter_ns() - start, 1) / 1e9
