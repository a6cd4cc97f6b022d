"""How long a backend's worker process takes to start, three ways: a fresh
python each ("spawn"); forked from the session's server process that imported
xpuperf.worker.process's PRELOAD once (its START_METHOD "forkserver"), the
worker importing its backend's own modules itself; and forked from a server that
imported the backend's ``preload`` too, as a session does.

Each start is timed from the first command to its answer, for a host that
imports what a group's worker of ``--hardware`` imports before it compiles
(PRELOAD and the backend's preload), as every (model, precision) group of a
session starts one. Each way runs its rounds in turn (a server's start is not
timed); the figures are medians, and their ratios.

    python benchmarks/worker_start.py [--hardware GPU] [--rounds N]
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one


class ImportingHost:
    """A worker host that imports what a group's worker imports, and answers."""

    COMMANDS = ("echo",)

    def __init__(self, note, modules):
        for module in modules:
            importlib.import_module(module)

    def echo(self, value):
        return value

    def close(self) -> None:
        pass


def start_s(modules: list[str]) -> float:
    from xpuperf.worker import process

    worker = process.Worker("worker_start:ImportingHost", {"modules": modules},
                            name=f"{process.START_METHOD} worker")
    try:
        start = time.perf_counter()
        worker.call("echo", 300, value=1)
        return time.perf_counter() - start
    finally:
        worker.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hardware", default="GPU", help="whose workers' imports (default GPU)")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    import multiprocessing.forkserver

    from backends.registry import find
    from xpuperf.worker import process

    own = list(find(args.hardware).load().preload)
    modules = [*process.PRELOAD, *own]
    times: dict[str, list[float]] = {}
    # The backend's preload last: a session's additions are never taken back.
    for way, method, preload in (("spawn", "spawn", []),
                                 ("forkserver", "forkserver", []),
                                 (f"forkserver + {args.hardware}'s preload", "forkserver", own)):
        process.START_METHOD = method
        process.preload(preload)
        multiprocessing.forkserver._forkserver._stop()  # a server of this way's preload
        start_s(modules)  # the server's own start, once a session: not a worker's
        times[way] = [start_s(modules) for _ in range(args.rounds)]
    medians = {way: statistics.median(t) for way, t in times.items()}
    print(f"{args.hardware}'s preload: {', '.join(own) or 'none'}")
    for way, t in times.items():
        print(f"  {way:<30} start p50 {medians[way] * 1e3:8.1f} ms   "
              f"min {min(t) * 1e3:8.1f} ms   over {args.rounds} starts")
    spawn, *forked = medians.values()
    print("  against spawn: " + ", ".join(f"{m / spawn:.3f}x" for m in forked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
