"""The speed gate's false-alarm rate, power and cost on this host.

Repeats A/B comparisons of one item (resnet50-torch, smoke shapes, fp32,
offline at batch size 4; the gate tier's measurement settings) as the A/B gate
runs them (xpuperf.gate.ab over BenchSession.ab_blocks: interleaved blocks,
each timed whole in its side's worker, re-measured while undecided). The
backend is the CPU backend wrapped by tests_selftest.fakes:SlowedBackend,
whose option slowdown=F spins the CPU for (F - 1) x each run's CPU time (both
sides threads=1):

- A/A: both sides slowdown=1.0; a "regressed" verdict is a false alarm;
- A/B: the candidate slowdown=1.10 (each run 10 % longer); "regressed" is a
  detection.

Then it runs the whole gate tier as a user gates a change, with A/B on the CPU
backend (both sides the same options: an A/A of every item), and times it.
Prints the counts, the seconds per comparison and the tier's wall time.
Targets: A/A false alarms <= 1 in 20, the 10 % slowdown detected >= 19 in 20,
the tier within 10 minutes, on the shared 2-core host.

    python benchmarks/gate_power.py [--repeats 20] [--max-regression 10] [--slowdown 1.10]
                                    [--only aa|ab] [--no-tier]
"""
from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

from backends.registry import find  # noqa: E402
from xpuperf import gate  # noqa: E402
from xpuperf.session import BenchSession  # noqa: E402
from xpuperf.zoo import load_zoo  # noqa: E402

HARDWARE = "tests_selftest.fakes:SlowedBackend"
ITEM = "resnet50-torch-imagenet-fp32-bs4-offline"
SLOWDOWN = "1.10"
# One thread a worker: two workers on a 2-core host, and the model runs in the
# thread whose CPU time the slowdown is measured by.
ONE_THREAD = {"threads": "1"}


def comparisons(zoo, case, candidate: str, repeats: int, settings: gate.GateSettings,
                cache_dir: Path) -> list[tuple[gate.SpeedComparison, float]]:
    """``repeats`` A/B comparisons of ``case``: the baseline slowdown=1.0, the
    candidate slowdown=``candidate``; each with its seconds."""
    entry = find(HARDWARE)
    session = BenchSession(zoo, HARDWARE, entry.load()(), {**ONE_THREAD, "slowdown": candidate},
                           cache_dir, ROOT / "datasets", ab_options={**ONE_THREAD, "slowdown": "1.0"})
    try:
        report = session.compilation(case.combo).report
        assert report.status == "ok", report.error
        out = []
        for _ in range(repeats):
            start = time.perf_counter()
            found = gate.ab(lambda rounds: session.ab_blocks(case, rounds, settings.ab_block_s),
                            settings)
            out.append((found, time.perf_counter() - start))
        return out
    finally:
        session.close()


def summary(label: str, found: list[tuple[gate.SpeedComparison, float]]) -> None:
    counts = collections.Counter(c.verdict.verdict for c, _ in found)
    changes = [c.verdict.change_pct for c, _ in found if c.verdict.change_pct is not None]
    widths = [c.verdict.high_pct - c.verdict.low_pct for c, _ in found
              if c.verdict.low_pct is not None and c.verdict.high_pct is not None]
    seconds = [s for _, s in found]
    print(f"{label}: " + ", ".join(f"{counts[v]} {v}" for v in gate.verdict.VERDICTS)
          + f" of {len(found)}; median throughput change {-statistics.median(changes):+.1f}%, "
          f"median CI width {statistics.median(widths):.1f} points; measurements per "
          f"comparison {statistics.mean(c.runs for c, _ in found):.2f}; seconds per "
          f"comparison median {statistics.median(seconds):.1f}, max {max(seconds):.1f}")


def tier_wall_time(cache_dir: Path, threshold: float) -> None:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "suites/performance",
               "-q", "--hardware", "CPU", "--zoo-tier", "gate", "--cache-dir", str(cache_dir),
               "--report-dir", str(ROOT / "reports" / "gate-power"), "--benchmark-disable",
               "--backend-option", "threads=1", "--ab-baseline-option", "threads=1",
               "--max-regression", f"{threshold:g}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [ln for ln in done.stdout.splitlines() if "speed gate" in ln or " passed" in ln
             or " failed" in ln]
    print(f"gate tier, A/B on CPU (both sides threads=1): {wall:.0f} s wall (target <= 600), "
          f"exit {done.returncode}")
    for line in lines[-4:]:
        print(f"  {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20, help="comparisons of each kind")
    ap.add_argument("--max-regression", type=float, default=10.0, help="the gate's threshold")
    ap.add_argument("--slowdown", default=SLOWDOWN, help="the candidate's slowdown in the A/B runs")
    ap.add_argument("--cache-dir", default=str(ROOT / ".xpuperf_cache"))
    ap.add_argument("--no-tier", action="store_true", help="skip the gate tier's wall time")
    ap.add_argument("--only", choices=("aa", "ab"), help="run only the A/A or the A/B comparisons")
    args = ap.parse_args()
    zoo = load_zoo(ROOT / "zoo.yaml", "gate")
    case = next(p for p in zoo.perf_cases() if p.id == ITEM)
    settings = gate.GateSettings(threshold_pct=args.max_regression).with_tier(zoo.gate)
    print(f"{ITEM}, gate tier: {settings.ab_rounds} pairs of {settings.ab_block_s:g} s blocks, "
          f"up to {settings.remeasure} re-measurement(s), --max-regression "
          f"{args.max_regression:g}")
    cache = Path(args.cache_dir)
    if args.only != "ab":
        summary("A/A (false alarm = regressed)", comparisons(zoo, case, "1.0", args.repeats,
                                                             settings, cache))
    if args.only != "aa":
        summary(f"A/B slowdown={args.slowdown} (detected = regressed)",
                comparisons(zoo, case, args.slowdown, args.repeats, settings, cache))
    if not args.no_tier:
        tier_wall_time(cache, args.max_regression)


if __name__ == "__main__":
    main()
