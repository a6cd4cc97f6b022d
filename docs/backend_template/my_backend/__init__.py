"""MY_BACKEND: a template to copy. A backend is these two classes (the contract is
backends/base.py); copy this package, rename it, and replace each ``SDK:`` step
with your software stack's call. As it stands it "compiles" with onnx's reference
evaluator (pure Python, slow, exact), so it passes the contract kit before you
change a line:

    PYTHONPATH=path/to/parent python -m xpuperf.contract_kit --hardware my_backend:MyBackend

Ship it as backends/<name>/__init__.py exporting BACKEND (then --hardware <NAME>),
or in your own wheel with an entry point in group ``xpuperf.backends``.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from backends.base import (Backend, Compiled, CompileError, CompileReport, ModelArtifactLike,
                           OpProvider, load_cached, save_report, write_atomically)

_CACHED_MODEL = "model.onnx"  # what a compile leaves in cache_dir (SDK: your engine blob)


class MyCompiled(Compiled):
    def __init__(self, model_bytes: bytes, input_names: tuple[str, ...], report: CompileReport):
        from onnx.reference import ReferenceEvaluator

        # SDK: load the compiled engine onto the device.
        self._engine: Any = ReferenceEvaluator(model_bytes)
        self._inputs = frozenset(input_names)
        self._outputs = list(self._engine.output_names)
        self.report = report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._engine is None:
            raise RuntimeError("MY_BACKEND: run() after close()")
        # Feeds go by name, never by position; a name the model lacks, or an input
        # left out, is an error naming it, not a silent default.
        unknown, missing = sorted(feeds.keys() - self._inputs), sorted(self._inputs - feeds.keys())
        if unknown or missing:
            raise ValueError(f"MY_BACKEND: unknown feed(s) {unknown}, missing input(s) {missing}; "
                             f"the model takes {sorted(self._inputs)}")
        # SDK: copy the inputs to the device, run, copy the outputs back. Return
        # numpy arrays of the model's output names, dtypes and shapes, computed
        # afresh for every call (no output cache: the audits and the kit catch one).
        values = self._engine.run(None, dict(feeds))
        return {name: np.asarray(value) for name, value in zip(self._outputs, values)}

    def close(self) -> None:
        # SDK: free the device memory the engine holds.
        self._engine = None


def _my_rms_norm(input: Any, weight: Any) -> Any:
    """SDK: your rms_norm kernel; the op table's inputs by name, the output on
    the device. Here written out in torch, in fp32 whatever the input's dtype."""
    x = input.float()
    scale = (x.pow(2).mean(dim=-1, keepdim=True) + 1e-6).rsqrt()
    return (x * scale * weight.float()).to(input.dtype)


class MyBackend(Backend):
    name = "MY_BACKEND"
    # Modules your backend imports; if one is missing the registry reports the
    # backend as unavailable with install_hint, and never imports this file's SDK.
    requires = ("onnx",)
    install_hint = "pip install onnx"
    # Optional, `preload`: modules every worker imports whatever the model (an SDK
    # that takes seconds to import), imported once a session by the server that
    # workers are forked from. Only modules whose import touches no device.

    def info(self) -> dict[str, Any]:
        import onnx

        # name, device, device_count and your stack's versions (they key the
        # compile cache, and every report shows them). Add "peak_flops" if known.
        return {"name": self.name, "device": platform.machine(), "device_count": 1,
                "onnx": onnx.__version__}

    def op_provider(self, options: Mapping[str, str]) -> OpProvider:
        # Optional: the micro-benchmarks (suites/micro_perf). Name your device as
        # torch does ("cpu" here; SDK: "npu:0", with torch's plugin for it), the
        # precisions it runs, and register your own kernel of any op of
        # xpuperf/microperf/ops.py (the others run as torch's on the device).
        # The contract kit checks each registered kernel against the fp64
        # reference; a fast kernel that computes wrong fails its items.
        return OpProvider("cpu", implementations={"rms_norm": _my_rms_norm},
                          precisions=("fp32", "fp16", "bf16"))

    def precisions(self) -> set[str]:
        # Only what the device really runs; report.precision says what a compile used.
        return {"fp32"}

    def compile(self, artifact: ModelArtifactLike, precision: str, batch_sizes: tuple[int, ...],
                options: Mapping[str, str], cache_dir: Path | None = None) -> Compiled:
        if precision not in self.precisions():
            raise CompileError(f"MY_BACKEND: precision {precision!r} is not supported "
                               f"(supported: {', '.join(sorted(self.precisions()))})")
        inputs = tuple(artifact.input_names)
        if cache_dir is not None:
            # A hit is a load: reported cached=True, with the load's seconds.
            hit = load_cached(cache_dir, lambda _: (Path(cache_dir) / _CACHED_MODEL).read_bytes())
            if hit is not None:
                blob, report = hit
                return MyCompiled(blob, inputs, report)
        import onnx

        start = time.perf_counter()
        # SDK: compile artifact.onnx_path() for the batch sizes; raise CompileError
        # (with the ops your frontend cannot convert) when it cannot.
        model = onnx.load(str(artifact.onnx_path()))
        blob = model.SerializeToString()
        nodes = len(model.graph.node)
        report = CompileReport(status="ok", seconds=time.perf_counter() - start,
                               precision=precision, nodes_total=nodes, nodes_native=nodes,
                               artifact_bytes=len(blob))
        if cache_dir is not None:
            write_atomically(Path(cache_dir) / _CACHED_MODEL, lambda p: p.write_bytes(blob))
            save_report(cache_dir, report)  # last: it marks the entry complete
        return MyCompiled(blob, inputs, report)


BACKEND = MyBackend
