"""The harness's offline QPS with the backend in its worker process, against a bare loop.

One smoke-tier combination (default pointwise-conv-fake-fp32) on the CPU backend
(one intra-op thread) is measured two ways, interleaved round by round:

* harness: the suite's own path, ``BenchSession.throughput``: the group's worker
  process runs xpuperf.measure.loadgen's offline scenario on the model it compiled (the
  command and the results cross the process boundary, the timed loop does not);
* bare: in this process, the same model loaded from the same compile-cache
  entry, a ``while`` loop calling ``run`` over the same batches for as long.

The figure is the median of the per-round ratios (adjacent in time, so a
shared machine's drift cancels). Target: harness >= 0.98x bare.

    python benchmarks/worker_vs_bare.py [--model ID] [--duration S] [--runs N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

from backends.cpu import CpuBackend  # noqa: E402
from xpuperf.measure import loadgen  # noqa: E402
from xpuperf.batches import perf_indices  # noqa: E402
from xpuperf.session import BenchSession  # noqa: E402
from xpuperf.worker.host import GroupHost  # noqa: E402
from xpuperf.zoo import PerfCase, load_zoo  # noqa: E402

OPTIONS = {"threads": "1"}  # one intra-op thread: the other core stays free for the rest


def timed_zoo(folder: Path, duration: float) -> Path:
    """zoo.yaml with the smoke tier's run control set to ``duration`` per run."""
    doc = yaml.safe_load((ROOT / "zoo.yaml").read_text())
    doc["tiers"]["smoke"].update(perf={"min_time_s": duration, "min_rounds": 1,
                                       "warmup_rounds": 20, "windows": 1},
                                 scenarios={"offline": "all"})
    path = folder / "zoo.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pointwise-conv-fake-fp32", help="a smoke-tier combination")
    ap.add_argument("--duration", type=float, default=0.5, help="seconds per measured run")
    ap.add_argument("--runs", type=int, default=21, help="rounds; each runs both drivers once")
    ap.add_argument("--cache-dir", default=str(ROOT / ".xpuperf_cache"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xpuperf-bench-") as tmp:
        zoo = load_zoo(timed_zoo(Path(tmp), args.duration), "smoke")
        combo = next(c for c in zoo.combinations() if c.id == args.model)
        bs = min(combo.model.batch_sizes)
        offline = next(s for s in combo.model.scenarios if s.name == "offline")
        case = PerfCase(combo, bs, offline)
        data_dir = ROOT / "datasets"
        session = BenchSession(zoo, "CPU", CpuBackend(), OPTIONS, Path(args.cache_dir), data_dir)
        try:
            assert session.compilation(combo).report.status == "ok"
            host = GroupHost(lambda _note: None, "CPU", OPTIONS, str(zoo.path), "smoke",
                             args.cache_dir, str(data_dir), combo.model.name, combo.precision)
            host.compile()  # loads the worker's compile-cache entry
            run = host.compiled.run
            batches = [host.dataset.feeds(i) for i in perf_indices(len(host.dataset), bs)]

            def bare() -> float:
                return loadgen.bare_loop_qps(lambda n: run(batches[n % len(batches)]), bs,
                                             args.duration)

            def harness() -> float:
                return session.throughput(case, "xpuperf")["record"]["qps"]

            for k in range(50):  # warm this process's copy before anything is timed
                run(batches[k % len(batches)])
            drivers = [("harness (worker)", harness), ("bare loop", bare)]
            figures: dict[str, list[float]] = {name: [] for name, _ in drivers}
            for r in range(args.runs):
                for name, measure in drivers[r % 2:] + drivers[:r % 2]:
                    figures[name].append(measure())
                print(f"  run {r + 1}/{args.runs}: " + "  ".join(
                    f"{name} {values[-1]:10,.0f}" for name, values in figures.items()),
                    file=sys.stderr)
            host.close()
        finally:
            session.close()
    print(f"\n{args.model}, batch {bs}, CPU backend ({OPTIONS}), {args.duration:g} s per run, "
          f"{args.runs} rounds (interleaved)\n")
    print(f"{'driver':17s} {'median samples/s':>17s} {'min':>12s} {'max':>12s}")
    for name, values in figures.items():
        print(f"{name:17s} {statistics.median(values):17,.0f} {min(values):12,.0f} "
              f"{max(values):12,.0f}")
    ratio = statistics.median(a / b for a, b in zip(figures["harness (worker)"],
                                                    figures["bare loop"]))
    print(f"\nharness / bare, median per round: {ratio:.3f}x "
          f"({'meets' if ratio >= 0.98 else 'MISSES'} target >= 0.98x)")


if __name__ == "__main__":
    main()
