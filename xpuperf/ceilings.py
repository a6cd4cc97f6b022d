"""The device ceilings every figure is judged against, in one table: peak FLOP/s
per precision (MFU, prefill MFU, a micro-benchmark's share of peak), memory
bandwidth (decode bandwidth utilization, a copy's share of peak), and the bytes
of one element at each precision (bytes per sample, weight and KV-cache bytes, an
op's traffic).

A backend declares its ceilings in info(): "peak_flops", a positive number of
FLOP/s or one per precision ({"fp16": 9.9e14, ...}), and "memory_bandwidth", a
positive number of bytes/s. A declaration in another form raises
DeclarationError, naming the backend, the field and the fix, rather than being
taken as no declaration.

What is not declared is measured once per session (or worker) for each device and
precision and kept in the table (``Ceilings``). How is the caller's, as each kind
of item measures what it runs on: the model items a GEMM compiled by the backend
in the group's worker (xpuperf.session), the micro-benchmarks the op table's GEMM
on the op provider (xpuperf.microperf.host), the LLM items torch on the engine's
device (``torch_gemm``, here); the copy ceiling is ``torch_copy``, here, for all.
Measured in the session, so that a busy machine is judged against its busy self.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from backends.base import PRECISIONS

# Bytes of one element at each precision (and of the index and fp64 types the
# micro-benchmarks' ops take): an estimate for a model, whose backend may keep
# some tensors wider.
ELEMENT_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1,
                 "int32": 4, "int64": 8, "fp64": 8}

DECLARED = "declared by the backend"

# Per device type: a GEMM and a copy large enough to reach the peak there (on a
# GPU a small GEMM is launch-bound).
GEMM_N = {"cpu": 512, "cuda": 8192}
COPY_BYTES = {"cpu": 128 << 20, "cuda": 1 << 30}
REPEATS = 5

FLOPS_FIX = ("declare a positive number of FLOP/s, or one per precision "
             "({\"fp16\": 9.9e14, \"bf16\": 9.9e14}), or leave it out to have it measured")
BANDWIDTH_FIX = "declare a positive number of bytes/s, or leave it out to have it measured"


class DeclarationError(ValueError):
    """A backend's info() declares a ceiling in a form that cannot be read."""

    def __init__(self, backend: str, field: str, why: str, fix: str):
        super().__init__(f"the {backend} backend's info()[{field!r}] {why}: {fix} "
                         f"(Backend.info, backends/base.py)")


@dataclass(frozen=True)
class Ceiling:
    """One ceiling and where it came from; ``value`` is None when it could not be
    had (``source`` says why)."""

    value: float | None
    source: str


def element_bytes(precision: str) -> int:
    try:
        return ELEMENT_BYTES[precision]
    except KeyError:
        raise ValueError(f"no element size for precision {precision!r}: one of "
                         f"{', '.join(ELEMENT_BYTES)}") from None


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _declared_flops(backend: str, value: Any) -> dict[str, float]:
    """Declared peak FLOP/s per precision ({} where none is declared)."""
    if value is None:
        return {}
    if _positive(value):
        return {p: float(value) for p in PRECISIONS}
    if not isinstance(value, Mapping):
        raise DeclarationError(backend, "peak_flops", f"is {value!r}", FLOPS_FIX)
    unknown = sorted(str(p) for p in value if p not in PRECISIONS)
    if unknown:
        raise DeclarationError(backend, "peak_flops", f"names no precision xpuperf knows: "
                               f"{', '.join(unknown)}",
                               f"key it by {', '.join(sorted(PRECISIONS))}")
    bad = {p: v for p, v in value.items() if not _positive(v)}
    if bad:
        raise DeclarationError(backend, "peak_flops", f"has {bad!r}", FLOPS_FIX)
    return {p: float(v) for p, v in value.items()}


def _declared_bandwidth(backend: str, value: Any) -> float | None:
    if value is None:
        return None
    if not _positive(value):
        raise DeclarationError(backend, "memory_bandwidth", f"is {value!r}", BANDWIDTH_FIX)
    return float(value)


class Ceilings:
    """One device's ceilings: the backend's declared ones (read, and checked, when
    the table is made) and the measured ones, each measured once. ``measured``:
    those an earlier worker of the session measured (``wire()``'s form)."""

    def __init__(self, backend: str, info: Mapping[str, Any],
                 measured: Mapping[str, Sequence[Any]] | None = None):
        self._flops = _declared_flops(backend, info.get("peak_flops"))
        self._bandwidth = _declared_bandwidth(backend, info.get("memory_bandwidth"))
        self._measured = {k: Ceiling(*v) for k, v in (measured or {}).items()}

    def declares_flops(self, precision: str) -> bool:
        return precision in self._flops

    def peak_flops(self, precision: str, device: str, measure: Callable[[], Ceiling]
                   ) -> Ceiling:
        """The declared peak at ``precision``, else ``measure()``'s, once per device.
        An exception of ``measure`` is not kept: a later call measures again."""
        if precision in self._flops:
            return Ceiling(self._flops[precision], DECLARED)
        return self._once(f"flops-{precision}-{device}", measure)

    def memory_bandwidth(self, device: str) -> Ceiling:
        """The declared bandwidth, else the copy ceiling of ``device``, measured once."""
        if self._bandwidth is not None:
            return Ceiling(self._bandwidth, DECLARED)
        return self._once(f"bandwidth-{device}", lambda: torch_copy(device))

    def wire(self) -> dict[str, list[Any]]:
        """The measured ceilings as a worker hands them on: key -> [value, source]."""
        return {k: [c.value, c.source] for k, c in self._measured.items()}

    def _once(self, key: str, measure: Callable[[], Ceiling]) -> Ceiling:
        if key not in self._measured:
            self._measured[key] = measure()
        return self._measured[key]


# ---------------------------------------------------------------------- torch's measures
def torch_gemm(precision: str, device: str) -> Ceiling:
    """The best of a few n x n GEMMs (GEMM_N) on ``device`` with torch."""
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


def torch_copy(device: str) -> Ceiling:
    """The best of a few copies of a buffer far larger than the caches (COPY_BYTES)
    on ``device``: bytes read and written over the time."""
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


def _timed(work: Callable[[], Any], device: Any) -> float:
    """Seconds of ``work()``, the device's queue drained before and after."""
    import torch

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter_ns()
    work()
    sync()
    return max(time.perf_counter_ns() - start, 1) / 1e9
