"""The micro-benchmark suite's fp32 GEMM against a bare torch.matmul loop.

fp32 GEMM M=N=K=1024 on the CPU backend, two ways, interleaved round by round:

* suite: its own path, ``MicroRunner.run``: the worker process hosting the
  backend's op provider times the op table's gemm (inputs rotated, each call
  timed alone, the full tier's budget), and reports the median;
* bare: in this process, ``torch.matmul(a, b)`` in a loop over the same
  shapes, warmed up and timed for as long, each call timed with perf_counter,
  the median.

Prints both medians per round and the median of the per-round ratios (adjacent
in time, so a shared machine's drift cancels). Target: suite within 10 % of
bare (ratio of medians between 0.9 and 1.1).

    python benchmarks/micro_gemm_vs_bare.py [--n 1024] [--rounds 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

from xpuperf.microperf.host import MicroRunner  # noqa: E402
from xpuperf.microperf.timing import BUDGETS  # noqa: E402


def bare_median_s(n: int, warmup: float, seconds: float) -> float:
    """The same warm-up and budget as the suite's (BUDGETS["full"])."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        torch.matmul(a, b)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        start = time.perf_counter_ns()
        torch.matmul(a, b)
        times.append((time.perf_counter_ns() - start) / 1e9)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", default="1")
    opts = parser.parse_args()
    import torch

    torch.set_num_threads(int(opts.threads))
    budget = BUDGETS["full"]
    args = {"dtype": "float32", "M": opts.n, "K": opts.n, "N": opts.n}
    runner = MicroRunner("CPU", {"threads": opts.threads}, "full")
    ratios = []
    try:
        for k in range(opts.rounds):
            result = runner.run("gemm", args)
            if not result.get("passed"):
                print(f"suite's gemm failed: {result}")
                return 1
            suite = result["latency(us)"] / 1e6
            bare = bare_median_s(opts.n, budget.warmup_s, budget.measure_s)
            ratios.append(suite / bare)
            print(f"round {k + 1}: suite median {suite * 1e3:.3f} ms "
                  f"({result['timing']['calls']} calls, {result['timing']['rotated_sets']} input "
                  f"sets), bare median {bare * 1e3:.3f} ms, ratio {suite / bare:.3f}")
    finally:
        runner.close()
    ratio = statistics.median(ratios)
    print(f"fp32 GEMM {opts.n}^3, {opts.threads} thread(s): suite/bare median latency "
          f"{ratio:.3f} (target within 10 %: {'met' if abs(ratio - 1) <= 0.10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
