"""Collectives on a real distributed runtime: one process per rank, meeting
through torch.distributed's standard environment (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT; torchrun sets them, and Slurm's and Open MPI's own
variables stand in for RANK and WORLD_SIZE under srun and mpirun).

    torchrun --nproc-per-node 4 -m xpuperf.microperf.xccl CASES.json OUT.json \\
        [--device cpu|cuda] [--dist-backend gloo|nccl|NAME] [--tier smoke|gate|full]

Every rank runs every case of CASES.json (a list of {"id", "op", "args"}) the
same number of times, as nccl-tests does: a warm-up, then a count of
iterations fitted to the tier's budget from the warm-up's slowest rank. Each
case's buffer is filled with a pattern whose collective result is known
exactly (small integers, exact in every dtype), and the ranks' wrong elements
are counted. Rank 0 writes OUT.json: per case, the slowest rank's median
latency, algorithm and bus bandwidth (nccl-tests' factors: all_reduce
2(n-1)/n; all_gather, reduce_scatter, all_to_all (n-1)/n; broadcast and p2p 1)
and the wrong-element count summed over the ranks.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from xpuperf.launcher import join

# Rank 0's per-call seconds in a result (pytest-benchmark's rounds).
SAMPLES = "_call_seconds"
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "p2p")


def bus_factor(op: str, n: int) -> float:
    """nccl-tests' bus bandwidth factor of ``op`` on ``n`` ranks."""
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if op in ("broadcast", "p2p"):
        return 1.0
    raise ValueError(f"collective {op!r} is not known (known: {', '.join(OPS)})")


def _pattern(rank: int, count: int, offset: int = 0) -> Any:
    """Rank ``rank``'s values at positions offset..offset+count (float64): 1..8,
    exact in every dtype, and their sums over ranks too."""
    import torch

    return (torch.arange(count, dtype=torch.float64) + rank + offset) % 8 + 1


class Case:
    """One collective on this rank: its buffers, its call and its expected output.

    ``size`` is nccl-tests' size: the bytes of the largest buffer a rank holds
    (all_gather's output, reduce_scatter's input), ``batch_size * dim_size``
    elements of the dtype; all_gather, reduce_scatter and all_to_all split it in
    one chunk per rank along the batch axis.
    """

    def __init__(self, op: str, args: dict[str, Any], rank: int, n: int, device: Any):
        import torch

        from xpuperf.ceilings import element_bytes
        from xpuperf.microperf.ops import STORAGE, precision

        p = precision(str(args.get("dtype", "fp32")))
        rows, dim = int(args["batch_size"]), int(args["dim_size"])
        if op in ("all_gather", "reduce_scatter", "all_to_all") and rows % n:
            raise ValueError(f"{op}: batch_size {rows} must be a multiple of the world size {n}")
        if op == "p2p" and n % 2:
            raise ValueError(f"p2p pairs ranks (0-1, 2-3, ...): the world size {n} must be even")
        self.size = rows * dim * element_bytes(p)
        dtype = getattr(torch, STORAGE[p])
        chunk = rows // n * dim
        total = rows * dim

        def tensor(values: Any) -> Any:
            return values.to(dtype).to(device)

        mine = _pattern(rank, total)
        if op == "all_reduce":
            self.buf = tensor(mine)
            want = sum(_pattern(r, total) for r in range(n))
            self.call = lambda: torch.distributed.all_reduce(self.buf)
            self.out = lambda: self.buf
            self._reset = lambda: self.buf.copy_(tensor(mine))
        elif op == "all_gather":
            src = tensor(_pattern(rank, chunk))
            self.buf = torch.empty(total, dtype=dtype, device=device)
            want = torch.cat([_pattern(r, chunk) for r in range(n)])
            self.call = lambda: torch.distributed.all_gather_single(self.buf, src)
            self.out = lambda: self.buf
            self._reset = lambda: None
        elif op == "reduce_scatter":
            src = tensor(mine)
            self.buf = torch.empty(chunk, dtype=dtype, device=device)
            want = sum(_pattern(r, total)[rank * chunk:(rank + 1) * chunk] for r in range(n))
            self.call = lambda: torch.distributed.reduce_scatter_single(self.buf, src)
            self.out = lambda: self.buf
            self._reset = lambda: None
        elif op == "all_to_all":
            # Rank r's chunk j goes to rank j: its values say where they came from.
            src = tensor(torch.cat([_pattern(rank, chunk, j) for j in range(n)]))
            self.buf = torch.empty(total, dtype=dtype, device=device)
            want = torch.cat([_pattern(r, chunk, rank) for r in range(n)])
            self.call = lambda: torch.distributed.all_to_all_single(self.buf, src)
            self.out = lambda: self.buf
            self._reset = lambda: None
        elif op == "broadcast":
            self.buf = tensor(mine)
            want = _pattern(0, total)
            self.call = lambda: torch.distributed.broadcast(self.buf, src=0)
            self.out = lambda: self.buf
            self._reset = lambda: self.buf.copy_(tensor(mine))
        elif op == "p2p":
            peer = rank + 1 if rank % 2 == 0 else rank - 1
            src = tensor(mine)
            self.buf = torch.empty(total, dtype=dtype, device=device)
            want = _pattern(peer, total)

            def exchange() -> None:
                ops = [torch.distributed.P2POp(torch.distributed.isend, src, peer),
                       torch.distributed.P2POp(torch.distributed.irecv, self.buf, peer)]
                for request in torch.distributed.batch_isend_irecv(ops):
                    request.wait()
            self.call = exchange
            self.out = lambda: self.buf
            self._reset = lambda: None
        else:
            raise ValueError(f"collective {op!r} is not known (known: {', '.join(OPS)})")
        self.expected = tensor(want)

    def wrong(self) -> int:
        """Run once from fresh buffers; the elements that differ from the expected."""
        import torch

        self._reset()
        self.call()
        return int(torch.count_nonzero(self.out().to(torch.float64)
                                       != self.expected.to(torch.float64)))


def _agreed_calls(seconds: float, per_call: float, cap: int, device: Any) -> int:
    """How many calls fill ``seconds`` at the slowest rank's ``per_call``: every
    rank must make the same number, or the collectives pair up wrongly and hang."""
    import torch

    slowest = torch.tensor([per_call], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(slowest, op=torch.distributed.ReduceOp.MAX)
    return max(1, min(cap, int(seconds / max(float(slowest), 1e-9))))


def _timed(case: Case, budget: Any, clock: Any, sync: Callable[[], None]) -> list[float]:
    """One call, a warm-up, then the calls of the budget, counts agreed by all
    ranks from the slowest one's pace; each call timed alone."""
    device = case.buf.device
    start = time.perf_counter()
    case.call()
    sync()
    first = time.perf_counter() - start
    for _ in range(_agreed_calls(budget.warmup_s, first, budget.max_calls, device)):
        case.call()
    sync()
    start = time.perf_counter()
    case.call()
    sync()
    count = max(3, _agreed_calls(budget.measure_s, time.perf_counter() - start,
                                 budget.max_calls, device))
    reads = [clock.time(case.call) for _ in range(count)]
    sync()
    return [read() for read in reads]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xpuperf.microperf.xccl",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dist-backend", default=None,
                        help="torch.distributed backend (default: gloo on cpu, nccl on cuda)")
    parser.add_argument("--tier", default="smoke")
    opts = parser.parse_args(argv)
    rank, n, device, backend = join("xpuperf.microperf.xccl", opts.device, opts.dist_backend)

    import numpy as np
    import torch

    from xpuperf.microperf import timing

    budget = timing.BUDGETS[opts.tier]
    clock = timing.clock_for(device)
    module = getattr(torch, device.type, None)
    sync = getattr(module, "synchronize", None) if device.type != "cpu" else None
    results = {}
    for spec in json.loads(opts.cases.read_text()):
        try:
            case = Case(spec["op"], spec["args"], rank, n, device)
        except ValueError as e:
            results[spec["id"]] = {"skipped": str(e)}
            continue
        seconds = _timed(case, budget, clock, sync or (lambda: None))
        wrong = torch.tensor([case.wrong()], dtype=torch.int64, device=device)
        median = torch.tensor([float(np.median(seconds))], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(wrong)
        torch.distributed.all_reduce(median, op=torch.distributed.ReduceOp.MAX)
        t = float(median)
        algbw = case.size / t / 1e9
        results[spec["id"]] = {
            "op": spec["op"], "args": spec["args"], "world_size": n, "dist_backend": backend,
            "device": str(device), "size_bytes": case.size, "latency(us)": t * 1e6,
            "algo_bw(GB/s)": algbw, "bus_bw(GB/s)": algbw * bus_factor(spec["op"], n),
            "calls": len(seconds), "clock": clock.name, "wrong_elements": int(wrong),
            "passed": int(wrong) == 0, SAMPLES: seconds}
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    if rank == 0:
        opts.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
