"""Backends that break the contract the way shipped ones did, each in one way, for
test_contract_kit.py: the contract kit must fail each of them. They run the CPU
backend and spoil one thing of what its compiled model does."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from backends.base import Compiled, EnergyMeter, OpProvider, Resident
from backends.cpu import CpuBackend


class _Spoiled(Compiled):
    def __init__(self, inner: Compiled, run: Callable[[Compiled, Mapping[str, np.ndarray]], dict]):
        self._inner, self._run, self.report = inner, run, inner.report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(self._inner, feeds)

    def close(self) -> None:
        self._inner.close()


def _drop_unknown(inner: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """OpenVINO's old run(): feeds whose name the model lacks were left out, silently."""
    known = {i.name for i in inner._session.get_inputs()}
    return inner.run({k: v for k, v in feeds.items() if k in known})


def _float64(inner: Compiled, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in inner.run(feeds).items()}


class _Memo:
    """Outputs remembered by batch size: fast, and wrong for any new batch."""

    def __init__(self) -> None:
        self.seen: dict[int, dict[str, np.ndarray]] = {}

    def __call__(self, inner: Compiled, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = len(next(iter(feeds.values())))
        if batch not in self.seen:
            self.seen[batch] = inner.run(feeds)
        return self.seen[batch]


class _OneBuffer(Resident):
    """A device-resident path that hands out its output buffers uncloned, as a
    CUDA graph's static outputs are: every query's outputs become the last one's."""

    def __init__(self, inner: Compiled):
        self._inner, self._buffers = inner, None

    def put(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in feeds.items()}

    def run(self, placed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._inner.run(placed)
        if self._buffers is None:
            self._buffers = {k: np.empty_like(v) for k, v in out.items()}
        for name, value in out.items():
            self._buffers[name][...] = value
        return self._buffers

    def get(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in outputs.items()}


class _WithResident(_Spoiled):
    def resident(self) -> Resident:
        return _OneBuffer(self._inner)


def _spoiling(run: Callable[[], Callable]) -> type[CpuBackend]:
    class Spoiled(CpuBackend):
        def compile(self, *args: Any, **kwargs: Any) -> Compiled:
            return _Spoiled(super().compile(*args, **kwargs), run())
    return Spoiled


DropsFeed = _spoiling(lambda: _drop_unknown)
WrongDtype = _spoiling(lambda: _float64)
CachesOutputs = _spoiling(_Memo)


class StaleResident(CpuBackend):
    def compile(self, *args: Any, **kwargs: Any) -> Compiled:
        compiled = super().compile(*args, **kwargs)
        return _WithResident(compiled, lambda inner, feeds: inner.run(feeds))


class _Backwards(EnergyMeter):
    """A counter that restarts on every read and says it does not wrap."""

    method, wraps_at = "a counter that resets", (None,)

    def __init__(self) -> None:
        self.joules = 10.0

    def read(self) -> tuple[float, ...]:
        self.joules -= 1.0
        return (self.joules,)


class BackwardsMeter(CpuBackend):
    def energy_meter(self, options: Mapping[str, str]) -> EnergyMeter:
        return _Backwards()


def _fast_wrong_softmax(input: Any) -> Any:
    """A 'kernel' that skips the max subtraction's numerics and divides by a
    sum off by one part in a thousand: fast, plausible, wrong."""
    e = input.exp()
    return e / (e.sum(dim=-1, keepdim=True) * 1.001)


class UnreadablePeak(CpuBackend):
    """Declares its peak FLOP/s in words."""

    def info(self) -> dict[str, Any]:
        return {**super().info(), "peak_flops": "990 TFLOP/s"}


class WrongKernel(CpuBackend):
    """Registers an own softmax that computes wrong (the micro-benchmarks' op provider)."""

    def op_provider(self, options: Mapping[str, str]) -> OpProvider:
        return OpProvider("cpu", implementations={"softmax": _fast_wrong_softmax},
                          precisions=("fp32",))
