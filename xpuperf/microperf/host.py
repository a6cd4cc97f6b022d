"""The worker's side of the micro-benchmarks (xpuperf.worker, as op conformance's
CaseHost): the backend's op provider, and each op case made, timed, checked and
measured against the device's ceilings there, so that no message between
processes is inside a measurement and a crash or a hang costs one case.

``MicroRunner`` is the parent's handle (suites/micro_perf's fixture).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Mapping

import numpy as np

from backends.base import Backend, CompileError
from xpuperf.ceilings import GEMM_N, Ceiling, Ceilings
from xpuperf.microperf import correctness, ops, peaks, timing
from xpuperf.microperf.workloads import DTYPE_ALIASES
from xpuperf.microperf.xccl import SAMPLES  # one key for ops' and collectives' samples
from xpuperf.worker.process import RemoteError, Worker, WorkerLost

# What the fp64 reference of one case may cost on the host: the check cuts the
# case to its first rows (OpSpec.cut_axis) until it fits (fp64 on a CPU runs
# at a few GFLOP/s).
REFERENCE_FLOPS = 2e8
REFERENCE_BYTES = 64e6
# The measured GEMM ceiling, which every share of peak divides by: timed with a
# warm-up (the first calls pay for page faults and thread-pool start) and for
# many calls, whose best counts. On a loaded 2-core host (load 13) a 256^3 GEMM
# on two threads takes 0.5 ms when both are scheduled and 30 to 120 ms when
# one waits for the other: ten calls, or the three a 0.1 s budget then holds,
# may catch no good one, the ceiling comes out up to 100x low and shares of
# peak read up to 39. Hence a count as well as a time.
CEILING_BUDGET = timing.Budget(0.02, 0.1, 1000, min_calls=32)
# xpu-perf's arguments that give an op's parts dtypes of their own (its
# "dtype.compute_dtype.dst_dtype" zips): a case runs only where they agree with
# its dtype.
MIXED_DTYPES = ("w_dtype", "compute_dtype", "dst_dtype", "cache_dtype")


class Skip(Exception):
    """The case cannot run here (a precision the device lacks, no op provider)."""


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _widen(values: Mapping[str, Any], to: str) -> dict[str, Any]:
    """The inputs as the CPU reference takes them: data tensors (floating, int8)
    widened to ``to`` ("fp64" or "fp32"), indices kept, and a precision argument
    (gemm's, cast's target) made ``to``."""
    import torch

    dtype = getattr(torch, ops.STORAGE[to])
    out: dict[str, Any] = {}
    for k, v in values.items():
        if _is_tensor(v):
            data = v.is_floating_point() or v.dtype == torch.int8
            out[k] = v.detach().cpu().to(dtype) if data else v.detach().cpu()
        elif isinstance(v, str) and v in ops.STORAGE:
            out[k] = to
        else:
            out[k] = v
    return out


def _cut(values: Mapping[str, Any], shared: frozenset[str], axis: int, rows: int
         ) -> dict[str, Any]:
    return {k: v.narrow(axis, 0, min(rows, v.shape[axis]))
            if _is_tensor(v) and k not in shared else v for k, v in values.items()}


def _numpy(tensor: Any) -> np.ndarray:
    import torch

    return tensor.detach().cpu().to(torch.float64).numpy()


class MicroHost:
    """Runs op cases on ``hardware``'s op provider (see backends.base.OpProvider)."""

    COMMANDS = ("run_case", "describe")

    def __init__(self, note: Callable[[str], None], hardware: str, options: dict[str, str],
                 tier: str):
        from xpuperf.conformance.opconformance import load_backend

        self._setup(load_backend(hardware), options, tier, note)

    @classmethod
    def of(cls, backend: Backend, options: Mapping[str, str], tier: str) -> "MicroHost":
        """A host on a backend object, in this process (the contract kit's way)."""
        host = cls.__new__(cls)
        host._setup(backend, options, tier, lambda _stage: None)
        return host

    def _setup(self, backend: Backend, options: Mapping[str, str], tier: str,
               note: Callable[[str], None]) -> None:
        self._note, self._budget = note, timing.BUDGETS[tier]
        self._info = backend.info()
        try:
            self._provider = backend.op_provider(options)
        except CompileError as e:  # its device is not here (no CUDA device, say)
            self._provider, self._why_not = None, f"{backend.name}'s op provider: {e}"
        else:
            self._why_not = (f"the {backend.name} backend offers no op provider "
                             "(implement Backend.op_provider)") if self._provider is None else ""
        if self._provider is not None:
            import torch

            self._llc = timing.llc_bytes(torch.device(self._provider.device))
        self._ceilings = Ceilings(backend.name, self._info)

    def describe(self) -> dict[str, Any]:
        p = self._provider
        return {"device": p.device if p else None, "why_not": self._why_not,
                "collectives": p.collectives if p else None,
                "precisions": sorted(p.precisions) if p else [],
                "own_ops": sorted(p.implementations) if p else [],
                "device_name": str(self._info.get("device", ""))}

    # ------------------------------------------------------------------ ceilings
    def _gemm_ceiling(self, precision: str) -> Ceiling:
        """The backend's declared peak, else the best n x n GEMM of the op table
        at ``precision`` (n as the LLM ceilings take it: xpuperf.ceilings.GEMM_N)."""
        def measure() -> Ceiling:
            source = f"the best {precision} GEMM of the op table, this session"
            if precision not in ops.table()["gemm"].dtypes:
                return Ceiling(None, source)
            import torch

            n = self._budget.ceiling_n or GEMM_N.get(torch.device(self._provider.device).type, 512)
            args = {"M": n, "K": n, "N": n}
            seconds = min(self._timed("gemm", args, precision, CEILING_BUDGET)[1].seconds)
            return Ceiling(2.0 * n ** 3 / seconds, source)
        return self._ceilings.peak_flops(precision, self._provider.device, measure)

    def _measured(self, precision: str) -> peaks.Peaks:
        bandwidth = self._ceilings.memory_bandwidth(self._provider.device)
        flops = self._gemm_ceiling(precision)
        return peaks.Peaks(f"compute: {flops.source}; copy: {bandwidth.source}",
                           {precision: flops.value} if flops.value else {}, bandwidth.value)

    # ------------------------------------------------------------------ one case
    def _put(self, made: ops.Tensors, name: str, value: Any, pinned: bool) -> Any:
        """One input where the op reads it: the device, or host memory (pinned
        where the case says so) for a copy's host end."""
        import torch

        if not _is_tensor(value):
            return value
        if name in made.host:
            return value.pin_memory() if pinned else value
        return value.to(torch.device(self._provider.device))

    def _timed(self, op: str, args: Mapping[str, Any], precision: str, budget: timing.Budget
               ) -> tuple[tuple[ops.Tensors, dict[str, Any], Callable[..., Any]], timing.Timing]:
        import torch

        spec = ops.table()[op]
        made = spec.inputs(args, precision, torch.Generator().manual_seed(0))
        pinned = bool(args.get("pinned", False))
        placed = {k: self._put(made, k, v, pinned) for k, v in made.values.items()}
        impl = self._provider.implementation(op) or spec.run
        rotated = [k for k, v in placed.items() if _is_tensor(v) and k not in made.shared]
        set_bytes = sum(placed[k].numel() * placed[k].element_size() for k in rotated)
        sets = [placed] + [{**placed, **{k: self._put(made, k, made.values[k].clone(), pinned)
                                         for k in rotated}}
                           for _ in range(timing.copies_for(set_bytes, self._llc) - 1)]
        device = torch.device(self._provider.device)
        module = getattr(torch, device.type, None)
        sync = getattr(module, "synchronize", None) if device.type != "cpu" else None
        synchronize = sync or (lambda: None)
        with self._provider.precision_scope(precision):
            found = timing.run([functools.partial(impl, **s) for s in sets], budget,
                               timing.clock_for(device), synchronize, set_bytes, self._llc)
        return (made, placed, impl), found

    def run_case(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """One case: its figures, shares of peak and correctness verdict; or
        {"skipped": why}."""
        try:
            return self._run(op, args)
        except Skip as e:
            return {"skipped": str(e)}

    def _run(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if self._provider is None:
            raise Skip(self._why_not)
        if op not in ops.table():
            raise Skip(f"op {op!r} is not in xpuperf's op table (xpuperf/microperf/ops.py): "
                       f"known: {', '.join(sorted(ops.table()))}")
        spec = ops.table()[op]
        precision = ops.precision(str(args.get("dtype", "fp32")))
        mixed = {k: args[k] for k in MIXED_DTYPES
                 if k in args and DTYPE_ALIASES.get(str(args[k]), str(args[k])) != precision}
        if mixed:
            raise Skip(f"{op}: {', '.join(f'{k} {v}' for k, v in mixed.items())} beside dtype "
                       f"{args['dtype']}: xpuperf's ops run at one dtype (a quantised or "
                       "mixed-precision variant is not in its op table)")
        if precision not in spec.dtypes:
            raise Skip(f"{op} runs at {', '.join(spec.dtypes)}, not {precision}")
        if precision not in self._provider.precisions:
            raise Skip(f"the device {self._provider.device} does not run {precision} (it runs "
                       f"{', '.join(sorted(self._provider.precisions))})")
        if args.get("pinned") and self._provider.device == "cpu":
            raise Skip("pinned host memory needs an accelerator: the device is the host")
        start = time.perf_counter()
        self._note("timing")
        (made, placed, impl), found = self._timed(op, args, precision, self._budget)
        seconds = float(np.median(found.seconds))
        fig = ops.figures(spec, args, precision, seconds)
        self._note("checking")
        verdict = self._check(spec, made, placed, impl, precision, fig)
        share = {"measured": self._measured(precision).share(
            precision, fig.flops, fig.bytes, seconds)}
        sheet = peaks.datasheet(str(self._info.get("device", "")))
        share["datasheet"] = (sheet.share(precision, fig.flops, fig.bytes, seconds) if sheet
                              else {"share": None, "why": "no datasheet row matches "
                                    f"{self._info.get('device')!r} (xpuperf/microperf/"
                                    "datasheet.yaml)"})
        return {"op": op, "group": spec.group, "precision": precision, "args": args,
                "device": self._provider.device,
                "implementation": "backend's own" if self._provider.implementation(op)
                else "framework (torch)",
                **fig.as_dict(), "timing": found.as_dict(), "share_of_peak": share,
                "correctness": verdict.as_dict(), "passed": verdict.passed,
                "why": "" if verdict.passed else verdict.why(), "notes": spec.notes,
                "seconds": time.perf_counter() - start, SAMPLES: list(found.seconds)}

    def _check(self, spec: ops.OpSpec, made: ops.Tensors, placed: dict[str, Any],
               impl: Callable[..., Any], precision: str, fig: ops.Figures
               ) -> correctness.Verdict:
        """The device's result (its first rows, where the fp64 reference of the
        whole case would cost more than REFERENCE_FLOPS or _BYTES) judged."""
        with self._provider.precision_scope(precision):
            result = impl(**placed)
        axis, cpu = spec.cut_axis, made.values
        if spec.row_separable and result.dim() > axis:
            fraction = min(1.0, REFERENCE_FLOPS / max(fig.flops, 1.0),
                           REFERENCE_BYTES / max(fig.bytes, 1.0))
            rows = max(1, int(result.shape[axis] * fraction))
            cpu = _cut(cpu, made.shared, axis, rows)
            result = result.narrow(axis, 0, rows)
        reference = spec.run(**_widen(cpu, "fp64"))
        fp32 = spec.run(**_widen(cpu, "fp32"))
        return correctness.judge(_numpy(result), _numpy(fp32), _numpy(reference), precision,
                                 spec.out_dtype(precision))


class MicroRunner:
    """Runs micro-benchmark cases in a worker process hosting the backend; a case
    that kills the worker or runs past ``timeout_s`` fails alone."""

    def __init__(self, hardware: str, options: Mapping[str, str], tier: str,
                 timeout_s: float = 300.0):
        self.timeout_s = timeout_s
        self._worker = Worker("xpuperf.microperf.host:MicroHost",
                              {"hardware": hardware, "options": dict(options), "tier": tier},
                              name=f"micro-perf worker for {hardware}")

    def describe(self) -> dict[str, Any]:
        """The provider's device, precisions, own ops and collectives backend."""
        return self._worker.call("describe", self.timeout_s)

    def run(self, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self._worker.call("run_case", self.timeout_s, op=op, args=dict(args))
        except WorkerLost as e:
            return {"error": f"the worker was lost while {e.stage}: {e}"}
        except RemoteError as e:  # the op raised: a kernel that refuses a shape, say
            return {"error": f"{op} raised in the worker: {e}\n{e.traceback}"}

    def close(self) -> None:
        self._worker.close()
