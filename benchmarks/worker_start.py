"""How long a backend's worker process takes to start: forked from the session's
server process that imported numpy, onnxruntime and torch once (xpuperf.worker.
process, its START_METHOD "forkserver"), against a fresh python each ("spawn").

Each start is timed from the first command to its answer, for a host that
imports what a group's worker needs (torch, onnxruntime, xpuperf's worker host),
as every (model, precision) group of a session starts one. The two methods run
round by round, alternated; the figure is the median of each, and their ratio.

    python benchmarks/worker_start.py [--rounds N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one


class ImportingHost:
    """A worker host that imports what a group's worker imports, and answers."""

    COMMANDS = ("echo",)

    def __init__(self, note):
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401

        import xpuperf.worker.host  # noqa: F401

    def echo(self, value):
        return value

    def close(self) -> None:
        pass


def start_s(method: str) -> float:
    from xpuperf.worker import process

    process.START_METHOD = method
    worker = process.Worker("worker_start:ImportingHost", {}, name=f"{method} worker")
    try:
        start = time.perf_counter()
        worker.call("echo", 120, value=1)
        return time.perf_counter() - start
    finally:
        worker.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    methods = ("spawn", "forkserver")
    start_s("forkserver")  # the server's own start, once a session: not a worker's
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for method in methods:
            times[method].append(start_s(method))
    medians = {m: statistics.median(t) for m, t in times.items()}
    for method in methods:
        print(f"  {method:<11} start p50 {medians[method] * 1e3:8.1f} ms   "
              f"min {min(times[method]) * 1e3:8.1f} ms   over {args.rounds} starts")
    print(f"  forkserver / spawn: {medians['forkserver'] / medians['spawn']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
