"""Two shards at once against one session: the wall time of a balanced
selection run as `--shard 1/2` and `--shard 2/2` in two pytest processes at
the same time (as two array tasks or pods would, here on one host), merged with
`xpuperf merge`, against the same selection in one session; and whether the
merged report equals the session's, item by item (ids and outcomes).

The selection: MODELS tiny convolutions (compile, numerics, offline
throughput), every item on one thread (--backend-option threads=1), so that a
shard is CPU-bound on one core. The ONNX exports and references are made once
before the timed runs (a shared --cache-dir), as a cluster's cache would hold
them. On N free cores the ratio tends to 1/min(N, 2) plus the session's fixed
cost (pytest's start, a worker per group); on a loaded host it says little.

    python benchmarks/shard_speedup.py [--models N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

from tests_selftest.sessions import conv_zoo  # noqa: E402

from xpuperf.report.cli import main as xpuperf  # noqa: E402

SUITES = ("suites/accuracy", "suites/performance", "suites/compiler_coverage/test_compile.py")


def _command(folder: Path, report: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *SUITES,
            "--zoo", str(folder / "zoo.yaml"), "--cache-dir", str(folder / "cache"),
            "--hardware", "CPU", "--backend-option", "threads=1",
            "--report-dir", str(folder / report), *extra]


def _timed(commands: list[list[str]]) -> float:
    """Seconds until every command, started together, has ended; each must pass."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for c in commands]
    for proc in procs:
        out = proc.communicate()[0]
        if proc.returncode != 0:
            sys.exit(f"a session failed:\n{out[-3000:]}")
    return time.perf_counter() - start


def _items(folder: Path) -> dict[str, str]:
    doc = json.loads((folder / "records.json").read_text())
    return {r["item"]: r["outcome"] for r in doc["records"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=4, help="models in the selection (even)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = conv_zoo(Path(tmp), {f"conv-{i}": "" for i in range(args.models)})
        _timed([_command(folder, "warm")])  # exports and references into the cache
        single = _timed([_command(folder, "single")])
        sharded = _timed([_command(folder, f"shard-{k}", "--shard", f"{k}/2") for k in (1, 2)])
        xpuperf(["merge", str(folder / "shard-1"), str(folder / "shard-2"),
                 "-o", str(folder / "merged")])
        same = _items(folder / "merged") == _items(folder / "single")
        print(f"{len(_items(folder / 'single'))} items on {os.cpu_count()} cores "
              f"(load average {os.getloadavg()[0]:.1f}): one session {single:.1f} s, two shards "
              f"at once {sharded:.1f} s: {sharded / single:.2f}x; merged report equals the "
              f"session's item by item: {same}")


if __name__ == "__main__":
    main()
