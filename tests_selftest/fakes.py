"""Deliberately faulty backends, selected with --hardware tests_selftest.fakes:Name,
to prove that the suites catch what they claim to catch."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from backends.base import Compiled, CompileError, EnergyMeter
from backends.cpu import CpuBackend


class _NanOutputs(Compiled):
    def __init__(self, inner: Compiled):
        self._inner, self.report = inner, inner.report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._inner.run(feeds)
        first = next(iter(out))
        out[first] = out[first].copy()
        out[first].flat[0] = np.nan
        return out


class NanBackend(CpuBackend):
    """Compiles like the CPU backend, then puts a NaN in every batch's first output."""
    name = "NANCPU"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        return _NanOutputs(super().compile(artifact, precision, batch_sizes, options, cache_dir))


class NoCompileBackend(CpuBackend):
    name = "NOCOMPILE"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        raise CompileError("no kernel for op Erf in this SDK")


class NoCacheBackend(CpuBackend):
    """The CPU backend without its compile cache, as a vendor's backend may be."""
    name = "NOCACHE"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        return super().compile(artifact, precision, batch_sizes, options)


# --------------------------------------------------------------------------- cheats
# Backends whose outputs are right in accuracy mode but whose performance is not
# what it claims: each is caught by one of the integrity audits
# (suites/performance/test_audits.py).

def _digest(feeds: Mapping[str, np.ndarray]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(feeds):
        h.update(name.encode())
        h.update(np.ascontiguousarray(feeds[name]).tobytes())
    return h.digest()


class _Wrapped(Compiled):
    def __init__(self, inner: Compiled):
        self._inner, self.report = inner, inner.report

    def close(self) -> None:
        self._inner.close()


class _CachedByInput(_Wrapped):
    def __init__(self, inner: Compiled):
        super().__init__(inner)
        self._cache: dict[bytes, dict[str, np.ndarray]] = {}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = _digest(feeds)
        if key not in self._cache:
            self._cache[key] = self._inner.run(feeds)
        return self._cache[key]


class CachingBackend(CpuBackend):
    """Answers an input it has seen before from a cache keyed by the input's bytes:
    right outputs, and fast wherever a benchmark repeats inputs (the caching audit)."""
    name = "CACHINGCPU"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        return _CachedByInput(super().compile(artifact, precision, batch_sizes, options, cache_dir))


class _StaleInBenchmarks(_Wrapped):
    HONEST_RUNS = 16

    def __init__(self, inner: Compiled):
        super().__init__(inner)
        self._runs = 0
        self._last: dict[str, np.ndarray] | None = None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._runs += 1
        if self._runs > self.HONEST_RUNS and self._runs % 2 == 0 and self._last is not None:
            return self._last
        self._last = self._inner.run(feeds)
        return self._last


class StaleBackend(CpuBackend):
    """Honest for its first runs (accuracy mode, warm-up); then, as if it had
    recognised a benchmark, skips every other run and returns the previous
    outputs (the accuracy-in-performance-mode audit)."""
    name = "STALECPU"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        return _StaleInBenchmarks(super().compile(artifact, precision, batch_sizes, options, cache_dir))


class _OrderTuned(_Wrapped):
    def __init__(self, inner: Compiled):
        super().__init__(inner)
        self._successor: dict[bytes, bytes] = {}
        self._memo: dict[bytes, dict[str, np.ndarray]] = {}
        self._previous: bytes | None = None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = _digest(feeds)
        previous, self._previous = self._previous, key
        if previous is not None and previous != key:
            self._successor.setdefault(previous, key)  # the first order seen is "the" order
            if self._successor[previous] == key and key in self._memo:
                return self._memo[key]
        out = self._inner.run(feeds)
        self._memo[key] = out
        return out


class OrderTunedBackend(CpuBackend):
    """Learns the order of the inputs it sees first and answers the input it
    expects next from memory: fast in the default sample order only, with right
    outputs (the alternate-seed audit)."""
    name = "ORDERCPU"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        return _OrderTuned(super().compile(artifact, precision, batch_sizes, options, cache_dir))


# --------------------------------------------------------------------------- slow

class _Sleepy(_Wrapped):
    def __init__(self, inner: Compiled, seconds: float):
        super().__init__(inner)
        self._seconds = seconds

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self._seconds)
        return self._inner.run(feeds)


class SleepyBackend(CpuBackend):
    """The CPU backend, plus --backend-option sleep_ms=N of sleep per run: a
    backend whose speed a test sets, for the regression gate."""
    name = "SLEEPY"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        seconds = float(options.get("sleep_ms", 0)) / 1000
        return _Sleepy(super().compile(artifact, precision, batch_sizes, options, cache_dir), seconds)


# --------------------------------------------------------------------------- a node lost

class StallingBackend(CpuBackend):
    """The CPU backend whose first compile in a session (of all its workers,
    --backend-option stall_flag=PATH: the one that makes PATH) makes PATH and
    then stalls: the moment a test takes a Ray node away mid-item."""
    name = "STALLCPU"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        flag = Path(options["stall_flag"])
        try:
            flag.touch(exist_ok=False)
        except FileExistsError:
            pass
        else:
            time.sleep(600)
        return super().compile(artifact, precision, batch_sizes, options, cache_dir)


# --------------------------------------------------------------------------- devices

class DeviceEchoBackend(CpuBackend):
    """The CPU backend, saying in its compile report which device its worker was
    bound to ($XPUPERF_DEVICE, --devices): a fake multi-device host; and the
    threads its onnxruntime session has (its share of the host's cores)."""
    name = "ECHO"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        compiled = super().compile(artifact, precision, batch_sizes, options)
        compiled.report.details["bound_device"] = os.environ.get("XPUPERF_DEVICE")
        compiled.report.details["threads"] = \
            compiled._session.get_session_options().intra_op_num_threads
        return compiled


# --------------------------------------------------------------------------- energy

METER_WATTS = 40.0


class ConstantPower(EnergyMeter):
    """A device that draws METER_WATTS: its counter is that times the host's clock,
    so a window's figures are known. Reads after the first ``good_reads`` raise."""

    wraps_at = (None,)

    def __init__(self, good_reads: int | None = None):
        self.method = f"fake constant {METER_WATTS:g} W counter"
        self._good, self._reads = good_reads, 0

    def read(self) -> tuple[float, ...]:
        self._reads += 1
        if self._good is not None and self._reads > self._good:
            raise RuntimeError("the counter's driver went away")
        return (METER_WATTS * time.perf_counter(),)


class MeteredBackend(CpuBackend):
    """The CPU backend with a fake energy counter (--backend-option good_reads=N:
    one whose reads fail after the first N, in the middle of a session)."""
    name = "METERED"

    def energy_meter(self, options: Mapping[str, str]) -> EnergyMeter:
        good = options.get("good_reads")
        return ConstantPower(int(good) if good is not None else None)


class _Slowed(_Wrapped):
    def __init__(self, inner: Compiled, factor: float):
        super().__init__(inner)
        self._extra = factor - 1

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Extra work in proportion to the run's CPU time, spent spinning on the
        # CPU: more work, as a slower kernel does, and no idle gap (a sleep, or a
        # wall-clock spin, which a preemption mid-run would lengthen, is neither).
        start = time.thread_time()
        out = self._inner.run(feeds)
        until = time.thread_time() + (time.thread_time() - start) * self._extra
        while time.thread_time() < until:
            pass
        return out


class SlowedBackend(CpuBackend):
    """The CPU backend, plus --backend-option slowdown=F: each run costs F times
    the CPU time of the calling thread (1.10: 10 % more work; with threads=1 the
    model runs in that thread), for the speed gate's power figures
    (benchmarks/gate_power.py)."""
    name = "SLOWED"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        factor = float(options.get("slowdown", 1))
        if not factor >= 1:
            raise ValueError(f"slowdown={options['slowdown']}: must be a factor >= 1, e.g. 1.10")
        return _Slowed(super().compile(artifact, precision, batch_sizes, options, cache_dir),
                       factor)
