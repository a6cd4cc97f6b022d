"""The engine's state for one pytest session: datasets, artifacts, reference
outputs and compiled models, each made on first use and kept only as long as
its group of items needs it (no pytest in here; the plugin drives it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from backends.base import Backend, Compiled, CompileError, CompileReport, ModelArtifactLike
from xpuperf import datasets, flops, loadgen
from xpuperf.cache import (Cache, arrays_key, content_key, package_modules, read_json,
                           source_digest, write_json)
from xpuperf.datasets.base import Dataset
from xpuperf.models.artifact import ModelArtifact
from xpuperf.zoo import Combination, ModelSpec, Zoo

PERF_DISTINCT_BATCHES = 8  # real batches rotated through during a timed run
# Bytes of a float element at each precision, for bytes per sample (an estimate:
# a backend may keep some tensors wider).
FLOAT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "fp8": 1}
# The peak GEMM's run: its fastest call counts, so a short run is enough.
PEAK_SETTINGS = loadgen.RunSettings(min_duration_s=0.2, min_queries=5, warmup_queries=2, windows=1)


@dataclass(frozen=True)
class CompileTimes:
    """Seconds of a cold compile and of a load from the compile cache; None where
    not measured, and then the ``*_why`` field says why."""

    cold_s: float | None
    cached_s: float | None
    cold_measured: str  # "this session", "an earlier session (<when>)", or why not
    cached_why: str = ""

    def as_record(self) -> dict[str, Any]:
        return {"seconds_cold": self.cold_s, "seconds_cached": self.cached_s,
                "cold_measured": self.cold_measured,
                **({"cached_note": self.cached_why} if self.cached_why else {})}


class Unsupported(Exception):
    """The backend does not offer this precision: the item is skipped, not failed."""


def run_in_batches(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                   dataset: Dataset, batch_size: int) -> dict[str, np.ndarray]:
    """Outputs for every sample of ``dataset``, in order. The last batch is padded
    with its final sample so backends compiled for fixed batch sizes can run it."""
    n = len(dataset)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        real = len(idx)
        idx += [idx[-1]] * (batch_size - real)
        for name, value in run(dataset.feeds(idx)).items():
            parts.setdefault(name, []).append(np.asarray(value)[:real])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def perf_indices(samples: int, batch_size: int) -> list[list[int]]:
    """Sample indices of the distinct batches a timed run rotates through: the
    dataset in order, wrapping around, at most PERF_DISTINCT_BATCHES of them."""
    count = min(PERF_DISTINCT_BATCHES, max(1, -(-samples // batch_size)))
    return [[(b * batch_size + i) % samples for i in range(batch_size)] for b in range(count)]


@dataclass(frozen=True)
class Peak:
    """Peak FLOP/s at one precision and where the figure came from; ``flops`` is
    None when it could not be had (``source`` says why)."""

    flops: float | None
    source: str


class _GemmArtifact(ModelArtifactLike):
    """The peak-FLOP/s probe as a model a backend compiles like any other."""

    def __init__(self, path: Path, n: int):
        self.name = f"peak-gemm-{n}"
        self.input_names, self.output_names = ("a",), ("c",)
        self._path, self._n = path, n

    def onnx_path(self) -> Path:
        return self._path

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(1)
        return [{"a": rng.standard_normal((1, self._n), dtype=np.float32)}
                for _ in range(min(count, 8))]


class BenchSession:
    def __init__(self, zoo: Zoo, backend: Backend, options: Mapping[str, str],
                 cache_dir: Path, data_dir: Path, weights_dir: Path):
        self.zoo, self.backend, self.options = zoo, backend, dict(options)
        self.cache = Cache(cache_dir)
        self.data_dir, self.weights_dir = data_dir, weights_dir
        self._datasets: dict[str, Dataset] = {}
        self._artifacts: dict[str, ModelArtifact] = {}
        self._references: dict[str, dict[str, np.ndarray]] = {}
        self._compiled: dict[str, Compiled] = {}
        self._reports: dict[str, CompileReport] = {}
        self._times: dict[str, CompileTimes] = {}
        self._data_keys: dict[str, str] = {}
        self._stack: dict[str, Any] | None = None  # backend.info(): versions key the compile cache
        self._outputs: dict[str, dict[str, np.ndarray]] = {}
        self._capacity: dict[tuple[str, int], float] = {}
        self._costs: dict[tuple[str, int, str], flops.GraphCost] = {}
        self._peaks: dict[str, Peak] = {}

    # ------------------------------------------------------------------ per model
    def dataset(self, model: ModelSpec) -> Dataset:
        if model.name not in self._datasets:
            spec = self.zoo.datasets[model.dataset]
            self._datasets[model.name] = datasets.load(spec, self.data_dir, model.inputs,
                                                       model.outputs, model.dataset_options)
        return self._datasets[model.name]

    def artifact(self, model: ModelSpec) -> ModelArtifact:
        if model.name not in self._artifacts:
            ds = lambda: self.dataset(model)  # noqa: E731 - loaded only if int8 asks
            self._artifacts[model.name] = ModelArtifact(
                model, self.cache, self.weights_dir,
                calibration=lambda n: [ds().feeds([i]) for i in range(min(n, len(ds())))])
        return self._artifacts[model.name]

    def eval_batch_size(self, model: ModelSpec) -> int:
        """The largest zoo batch size that the dataset fills at least once."""
        n = len(self.dataset(model))
        fitting = [b for b in model.batch_sizes if b <= n]
        return max(fitting) if fitting else min(model.batch_sizes)

    def audit_batch_size(self, model: ModelSpec) -> int:
        """The largest zoo batch size that the dataset fills at least twice (an
        audit needs two different batches), else the evaluation batch size."""
        n = len(self.dataset(model))
        fitting = [b for b in model.batch_sizes if 2 * b <= n]
        return max(fitting) if fitting else self.eval_batch_size(model)

    def reference(self, model: ModelSpec) -> dict[str, np.ndarray]:
        """Reference outputs for the whole dataset, computed once and kept on disk."""
        if model.name not in self._references:
            ds, art = self.dataset(model), self.artifact(model)
            bs = self.eval_batch_size(model)
            key = content_key(art.key, self.data_key(model))
            self._references[model.name] = self.cache.arrays(
                "reference", key, lambda: run_in_batches(art.reference, ds, bs))
        return self._references[model.name]

    def data_key(self, model: ModelSpec) -> str:
        """The content hash of the model's dataset: the reference outputs and any
        calibrated compile depend on it."""
        if model.name not in self._data_keys:
            ds = self.dataset(model)
            self._data_keys[model.name] = arrays_key(ds.feeds(range(len(ds))))
        return self._data_keys[model.name]

    # ------------------------------------------------------------------ per combination
    def compile_report(self, combo: Combination) -> CompileReport:
        """Compile once per (model, precision); a failure is remembered, not retried."""
        if combo.precision not in self.backend.precisions():
            raise Unsupported(f"{self.backend.name} does not offer {combo.precision} "
                              f"(it offers {', '.join(sorted(self.backend.precisions()))})")
        group = combo.group
        if group not in self._reports:
            start = time.perf_counter()
            try:
                compiled, self._times[group] = self._compile(combo)
                self._compiled[group] = compiled
                self._reports[group] = compiled.report
            except Exception as e:  # noqa: BLE001 - any backend crash is a failed compile
                kind = "" if isinstance(e, CompileError) else f"{type(e).__name__}: "
                self._reports[group] = CompileReport(
                    status="failed", seconds=time.perf_counter() - start,
                    precision=combo.precision, error=f"{kind}{e}")
                self._times[group] = CompileTimes(None, None, "the compile failed")
        return self._reports[group]

    def compile_times(self, combo: Combination) -> CompileTimes:
        self.compile_report(combo)
        return self._times[combo.group]

    def _compile(self, combo: Combination) -> tuple[Compiled, CompileTimes]:
        """Compile through the on-disk cache, measuring a cold compile and a load
        from the cache, each where it can be had.

        A cold compile (no entry yet) fills the backend's cache folder; the model
        is then loaded from there once more, which times the cached path and
        proves it works. An entry made by an earlier session is loaded, and the
        cold figure is the one noted when that entry was made.
        """
        model, artifact = combo.model, self.artifact(combo.model)
        if self._stack is None:
            # The stack's versions and the backend's own code: each class it is made
            # of, and the package of its own class.
            classes = {c.__module__ for c in type(self.backend).__mro__} - {"builtins", "abc"}
            self._stack = {**self.backend.info(), "code": source_digest(
                *classes, *package_modules(type(self.backend).__module__))}
        key = content_key("compiled", self.backend.name, self._stack, artifact.key,
                          self.data_key(model), combo.precision, model.batch_sizes, self.options)

        def compile_into(folder: Path) -> Compiled:
            return self.backend.compile(artifact, combo.precision, model.batch_sizes,
                                        self.options, cache_dir=folder)

        cold: list[Compiled] = []
        folder = self.cache.entry("compiled", key, lambda d: cold.append(compile_into(d)))
        if not cold and not any(folder.iterdir()):  # the backend saved nothing to load
            cold.append(compile_into(folder))
        note = folder.with_name(f"{key}.cold.json")
        if cold:
            times = CompileTimes(cold[0].report.seconds, None, "this session")
            write_json(note, {"seconds": times.cold_s,
                              "measured": time.strftime("%Y-%m-%d %H:%M:%S")})
            if not any(folder.iterdir()):
                return cold[0], replace(times, cached_why=f"{self.backend.name} keeps no compile cache")
            cold[0].close()
        else:
            measured = read_json(note)
            times = CompileTimes(
                measured.get("seconds"), None,
                f"an earlier session ({measured['measured']})" if "measured" in measured else
                f"not measured: the compiled model came from the cache ({folder}); "
                "use an empty --cache-dir for a cold compile")
        compiled = compile_into(folder)
        if compiled.report.cached:
            times = replace(times, cached_s=compiled.report.seconds)
        else:
            times = replace(times, cached_why=f"{self.backend.name} compiled again instead of "
                                              f"loading its cache entry")
        return compiled, times

    def compiled(self, combo: Combination) -> Compiled:
        report = self.compile_report(combo)
        if report.status != "ok":
            raise CompileError(f"{combo.id}: compilation failed: {report.error}")
        return self._compiled[combo.group]

    def outputs(self, combo: Combination) -> dict[str, np.ndarray]:
        """The backend's outputs for the whole dataset, shared by the metric and
        numerics items of one combination."""
        if combo.group not in self._outputs:
            compiled = self.compiled(combo)
            self._outputs[combo.group] = run_in_batches(
                compiled.run, self.dataset(combo.model), self.eval_batch_size(combo.model))
        return self._outputs[combo.group]

    def evaluate(self, model: ModelSpec, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        fields = {t.field: outputs[t.name] for t in model.outputs}
        return self.dataset(model).evaluate(fields)

    def perf_batches(self, combo: Combination, batch_size: int) -> list[dict[str, np.ndarray]]:
        """Distinct batches of real samples, to rotate through while timing."""
        ds = self.dataset(combo.model)
        return [ds.feeds(idx) for idx in perf_indices(len(ds), batch_size)]

    # ------------------------------------------------------------------ performance figures
    def note_capacity(self, combo: Combination, batch_size: int, qps: float) -> None:
        """Remember an offline throughput, which a server item then loads a fraction of."""
        self._capacity[(combo.group, batch_size)] = qps

    def capacity(self, combo: Combination, batch_size: int,
                 measure: Callable[[], float]) -> float:
        """The offline throughput at this batch size: noted by an offline item of
        this session, else ``measure()``d now and noted."""
        key = (combo.group, batch_size)
        if key not in self._capacity:
            self._capacity[key] = measure()
        return self._capacity[key]

    def graph_cost(self, combo: Combination, batch_size: int) -> flops.GraphCost:
        """FLOPs and bytes of one batch, from the exported graph, float tensors
        priced at the combination's precision."""
        key = (combo.model.name, batch_size, combo.precision)
        if key not in self._costs:
            self._costs[key] = flops.count_file(self.artifact(combo.model).onnx_path(), batch_size,
                                                FLOAT_BYTES.get(combo.precision))
        return self._costs[key]

    def graph_figures(self, combo: Combination, batch_size: int = 1) -> dict[str, Any]:
        """flops_per_sample and bytes_per_sample at this batch size for a record,
        or flops_error saying why the graph could not be counted."""
        try:
            cost = self.graph_cost(combo, batch_size)
        except Exception as e:  # noqa: BLE001 - a graph the counter cannot read costs the figure only
            return {"flops_per_sample": None, "bytes_per_sample": None,
                    "flops_error": f"{type(e).__name__}: {e}"}
        figures: dict[str, Any] = {"flops_per_sample": cost.flops_per_sample,
                                   "bytes_per_sample": cost.bytes_per_sample}
        if cost.uncounted or cost.unknown:
            figures["flops_note"] = (f"not counted: {', '.join(cost.uncounted) or 'none'}; "
                                     f"nodes of unknown shape: {cost.unknown}")
        return figures

    def roofline(self, combo: Combination, batch_size: int, qps: float) -> dict[str, Any]:
        """The graph figures, the peak FLOP/s and the MFU of ``qps`` samples/s."""
        figures = self.graph_figures(combo, batch_size)
        peak = self.peak_flops(combo.precision)
        return {**figures, "peak_flops": peak.flops, "peak_flops_source": peak.source,
                "mfu": flops.mfu(figures["flops_per_sample"], qps, peak.flops)}

    def peak_flops(self, precision: str) -> Peak:
        """The backend's peak FLOP/s at ``precision``: what its info() declares
        ("peak_flops": a number, or one per precision), else measured once per
        session with an n x n GEMM (tiers.<tier>.peak_gemm) compiled by the
        backend. Measured in the session, so that the MFU of a busy machine is not
        judged against the peak of a quiet one, or the other way round."""
        declared = self.backend.info().get("peak_flops")
        if isinstance(declared, Mapping):
            declared = declared.get(precision)
        if isinstance(declared, (int, float)) and not isinstance(declared, bool) and declared > 0:
            return Peak(float(declared), "declared by the backend")
        if precision not in self._peaks:
            self._peaks[precision] = self._measured_peak(precision)
        return self._peaks[precision]

    def _measured_peak(self, precision: str) -> Peak:
        n = self.zoo.peak_gemm
        if precision not in self.backend.precisions():
            return Peak(None, f"not measured: {self.backend.name} does not offer {precision}")
        model = self.cache.entry("onnx", content_key("peak-gemm", n),
                                 lambda d: (d / "model.onnx").write_bytes(
                                     flops.gemm_model(n).SerializeToString())) / "model.onnx"
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        try:
            compiled = self.backend.compile(_GemmArtifact(model, n), precision, (n,), self.options)
            try:
                run = loadgen.run_offline(lambda _k: compiled.run({"a": a}), 1, PEAK_SETTINGS)
            finally:
                compiled.close()
        except Exception as e:  # noqa: BLE001 - no peak means no MFU, not a failed item
            return Peak(None, f"not measured: the {n}x{n} GEMM failed at {precision}: "
                        f"{type(e).__name__}: {e}")
        best_s = float(run.latencies_ns.min()) / 1e9
        return Peak(flops.gemm_flops(n) / best_s, f"measured: {n}x{n} GEMM at {precision}, "
                                                   f"fastest of {run.queries} runs")

    # ------------------------------------------------------------------ lifetime
    def release_group(self, group: str) -> None:
        compiled = self._compiled.pop(group, None)
        if compiled is not None:
            compiled.close()
        self._outputs.pop(group, None)
        self._reports.pop(group, None)  # an out-of-order item compiles again
        self._times.pop(group, None)
        for key in [k for k in self._capacity if k[0] == group]:
            del self._capacity[key]

    def release_model(self, name: str) -> None:
        artifact = self._artifacts.pop(name, None)
        if artifact is not None:
            artifact.close()
        self._datasets.pop(name, None)
        self._references.pop(name, None)
        self._data_keys.pop(name, None)
        for key in [k for k in self._costs if k[0] == name]:
            del self._costs[key]

    def close(self) -> None:
        for group in list(self._compiled):
            self.release_group(group)
        for name in list(self._artifacts):
            self.release_model(name)

    def info(self) -> dict[str, Any]:
        return {**self.backend.info(), "tier": self.zoo.tier}
