"""Energy over a timed window, from the device's own counter (backends.base.EnergyMeter).

The counter is read once before the measured part of a run and once after it
(never around the warm-up), and the window's figures are the difference: joules,
average watts over the window's seconds, and joules per unit of work (per query
and per sample for a loadgen run, per output token and per request for an LLM
run). Where a backend has no counter, or reading it fails, the figures are
{"unavailable": why}: never an estimate, and never a failed item.

The arithmetic (``joules_between``, ``figures``) is pure; ``Meter`` and ``Window``
hold the reads.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping, Sequence

from backends.base import EnergyMeter, EnergyUnavailable
from xpuperf.measure.loadgen import Issue


class EnergyError(ValueError):
    """Two readings that give no energy (a counter went backwards, the window is
    empty); the message says which and why."""


def joules_between(before: Sequence[float], after: Sequence[float],
                   wraps_at: Sequence[float | None]) -> float:
    """The joules counted from ``before`` to ``after``, summed over the counters.
    A counter that reads less after than before wrapped once (a window is
    seconds long; RAPL's counters wrap after minutes at full power) where its
    range is known; without one, the readings are refused."""
    if not len(before) == len(after) == len(wraps_at):
        raise EnergyError(f"{len(before)} readings before, {len(after)} after, "
                          f"{len(wraps_at)} ranges: the meter changed its counters")
    total = 0.0
    for i, (b, a, wrap) in enumerate(zip(before, after, wraps_at)):
        if a < b:
            if wrap is None:
                raise EnergyError(f"counter {i} went backwards ({b:.6g} J, then {a:.6g} J) "
                                  "and does not wrap: the driver was reloaded or it reset")
            a += wrap
        total += a - b
    return total


def figures(joules: float, seconds: float, method: str, counts: Mapping[str, int]
            ) -> dict[str, Any]:
    """{joules, seconds, avg_watts, j_per_<unit> for each of ``counts`` ({"query":
    120, "sample": 960}), method}; EnergyError where the counter did not
    advance (a window shorter than its update period) or nothing was done."""
    if seconds <= 0:
        raise EnergyError(f"the window lasted {seconds:g} s")
    if joules <= 0:
        raise EnergyError(f"the counter did not advance over the {seconds:.3g} s window "
                          "(it updates less often): lengthen the timed window "
                          "(the tier's perf.min_time_s)")
    out: dict[str, Any] = {"joules": joules, "seconds": seconds, "avg_watts": joules / seconds}
    for unit, n in counts.items():
        out[f"j_per_{unit}"] = joules / n if n else None
    out["method"] = method
    return out


def unavailable(why: str) -> dict[str, str]:
    return {"unavailable": why}


class Meter:
    """A backend's energy meter for one session of items, or why there is none.
    Opening and reading it never raise: what goes wrong is the reason."""

    def __init__(self, meter: EnergyMeter | None, why: str = ""):
        self.meter, self.why = meter, why

    @classmethod
    def open(cls, backend: Any, options: Mapping[str, str]) -> "Meter":
        try:
            return cls(backend.energy_meter(options))
        except EnergyUnavailable as e:
            return cls(None, str(e))
        except Exception as e:  # noqa: BLE001 - a meter that breaks costs the energy figure only
            return cls(None, f"opening {backend.name}'s energy meter failed: "
                             f"{type(e).__name__}: {e}")

    def window(self) -> "Window":
        return Window(self)

    def close(self) -> None:
        meter, self.meter = self.meter, None
        if meter is not None:
            try:
                meter.close()
            except Exception:  # noqa: BLE001 - closing is best effort; figures are taken
                pass


class Window:
    """One timed window: ``start()`` before the measured part, ``stop(**counts)``
    after it. ``start`` may be called again (a rerun's, a later run's warm-up
    ended): the last start counts."""

    def __init__(self, meter: Meter):
        self._meter = meter
        self._start: tuple[tuple[float, ...], int] | None = None
        self._error = ""
        self._lock = threading.Lock()  # multi-client's clients end their warm-ups together

    def start(self) -> None:
        if self._meter.meter is None:
            return
        with self._lock:
            self._start = self._read()

    def stop(self, **counts: int) -> dict[str, Any]:
        """The window's figures (``figures``), or {"unavailable": why}."""
        meter = self._meter.meter
        if meter is None:
            return unavailable(self._meter.why)
        end = self._read()
        if self._error:
            return unavailable(self._error)
        if self._start is None or end is None:
            return unavailable("the window was never started")
        (before, t0), (after, t1) = self._start, end
        try:
            joules = joules_between(before, after, meter.wraps_at)
            return figures(joules, (t1 - t0) / 1e9, meter.method, counts)
        except EnergyError as e:
            return unavailable(f"{meter.method}: {e}")

    def watch(self, issue: Issue, first_measured: int) -> Issue:
        """``issue`` that starts this window where a loadgen run's measured part
        starts: after its last warm-up query (query ``first_measured`` - 1), so
        that the read is in no timed query; without a warm-up, before query 0.
        Every run (and each multi-client client) warms up again, so the window
        is the last run's."""
        if self._meter.meter is None:
            return issue
        start = self.start
        if first_measured > 0:
            last_warm = first_measured - 1

            def watched(k: int) -> None:
                issue(k)
                if k == last_warm:
                    start()
        else:
            def watched(k: int) -> None:
                if k == 0:
                    start()
                issue(k)
        return watched

    def _read(self) -> tuple[tuple[float, ...], int] | None:
        """(the counters, when they were read); None and the window's error set
        where the read failed (the window then has no figures)."""
        try:
            return tuple(self._meter.meter.read()), time.perf_counter_ns()
        except Exception as e:  # noqa: BLE001 - a failed read costs the energy figure only
            self._error = (f"reading {self._meter.meter.method or 'the energy counter'} failed: "
                           f"{type(e).__name__}: {e}")
            return None
