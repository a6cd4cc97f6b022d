"""The measurement engine's own cost against MLPerf LoadGen's, on a SUT that does nothing.

With a no-op SUT the samples per second a driver reaches is the inverse of its
per-query overhead. Our engine (xpuperf.measure.loadgen) and mlcommons-loadgen's Python
binding (through xpuperf.measure.mlperf_driver) run offline and single-stream in the same
process, interleaved round by round, and the medians are compared. Target: ours
>= LoadGen's.

    python benchmarks/loadgen_overhead.py [--duration S] [--runs N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

# Run as a script from anywhere: the package is the repository's, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpuperf.measure import loadgen, mlperf_driver

SAMPLE_COUNT = 64
SCENARIOS = (loadgen.OFFLINE, loadgen.SINGLE_STREAM)
OURS = {loadgen.OFFLINE: loadgen.run_offline, loadgen.SINGLE_STREAM: loadgen.run_single_stream}


def noop(query_index: int) -> None:
    """Does nothing: what a driver reaches on it is the inverse of its own cost."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per measured run")
    ap.add_argument("--runs", type=int, default=5, help="runs per driver and scenario")
    args = ap.parse_args()
    mlperf_driver.import_loadgen()
    settings = loadgen.RunSettings(min_duration_s=args.duration, min_queries=100,
                                   warmup_queries=100)

    # LoadGen sizes offline and single-stream runs from an expected pace: its own
    # previous run's (a pilot run measures it the first time).
    loadgen_pace: dict[str, float | None] = {s: None for s in SCENARIOS}

    def ours(scenario: str) -> float:
        return OURS[scenario](noop, 1, settings).qps

    def mlperf(scenario: str) -> float:
        qps = mlperf_driver.run_mlperf(noop, scenario, 1, SAMPLE_COUNT, settings,
                                       expected_qps=loadgen_pace[scenario]).qps
        loadgen_pace[scenario] = qps
        return qps

    drivers: list[tuple[str, Callable[[str], float]]] = [
        ("xpuperf", ours), ("mlcommons-loadgen", mlperf)]
    figures: dict[tuple[str, str], list[float]] = {}
    for r in range(args.runs):
        for scenario in SCENARIOS:
            # Alternate which driver goes first, so neither always follows the other.
            for name, measure in drivers[r % 2:] + drivers[:r % 2]:
                qps = measure(scenario)
                figures.setdefault((scenario, name), []).append(qps)
                print(f"  run {r + 1}/{args.runs} {scenario:13s} {name:17s} {qps:14,.0f} samples/s",
                      file=sys.stderr)

    print(f"\nno-op SUT, batch 1, {args.duration:g} s per run, median of {args.runs} runs (interleaved)\n")
    print(f"{'scenario':13s} {'driver':17s} {'median samples/s':>17s} {'min':>13s} {'max':>13s}")
    for (scenario, name), values in figures.items():
        print(f"{scenario:13s} {name:17s} {statistics.median(values):17,.0f} "
              f"{min(values):13,.0f} {max(values):13,.0f}")
    print()
    for scenario in SCENARIOS:
        ratio = (statistics.median(figures[(scenario, "xpuperf")])
                 / statistics.median(figures[(scenario, "mlcommons-loadgen")]))
        verdict = "meets" if ratio >= 1.0 else "MISSES"
        print(f"{scenario:13s} xpuperf / mlcommons-loadgen = {ratio:6.2f}x  ({verdict} target >= 1.00x)")


if __name__ == "__main__":
    main()
