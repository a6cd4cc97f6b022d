"""The engine's state for one pytest session: datasets, artifacts, reference
outputs and compiled models, each made on first use and kept only as long as
its group of items needs it (no pytest in here; the plugin drives it).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from backends.base import Backend, Compiled, CompileError, CompileReport
from xpuperf import datasets
from xpuperf.cache import Cache, arrays_key, content_key
from xpuperf.datasets.base import Dataset
from xpuperf.models.artifact import ModelArtifact
from xpuperf.zoo import Combination, ModelSpec, Zoo

PERF_DISTINCT_BATCHES = 8  # real batches rotated through during a timed run


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
        self._outputs: dict[str, dict[str, np.ndarray]] = {}

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

    def reference(self, model: ModelSpec) -> dict[str, np.ndarray]:
        """Reference outputs for the whole dataset, computed once and kept on disk."""
        if model.name not in self._references:
            ds, art = self.dataset(model), self.artifact(model)
            bs = self.eval_batch_size(model)
            key = content_key(art.key, arrays_key(ds.feeds(range(len(ds)))))
            self._references[model.name] = self.cache.arrays(
                "reference", key, lambda: run_in_batches(art.reference, ds, bs))
        return self._references[model.name]

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
                compiled = self.backend.compile(self.artifact(combo.model), combo.precision,
                                                combo.model.batch_sizes, self.options)
                self._compiled[group] = compiled
                self._reports[group] = compiled.report
            except Exception as e:  # noqa: BLE001 - any backend crash is a failed compile
                kind = "" if isinstance(e, CompileError) else f"{type(e).__name__}: "
                self._reports[group] = CompileReport(
                    status="failed", seconds=time.perf_counter() - start,
                    precision=combo.precision, error=f"{kind}{e}")
        return self._reports[group]

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
        n = len(ds)
        count = min(PERF_DISTINCT_BATCHES, max(1, -(-n // batch_size)))
        return [ds.feeds([(b * batch_size + i) % n for i in range(batch_size)]) for b in range(count)]

    # ------------------------------------------------------------------ lifetime
    def release_group(self, group: str) -> None:
        compiled = self._compiled.pop(group, None)
        if compiled is not None:
            compiled.close()
        self._outputs.pop(group, None)
        self._reports.pop(group, None)  # an out-of-order item compiles again

    def release_model(self, name: str) -> None:
        artifact = self._artifacts.pop(name, None)
        if artifact is not None:
            artifact.close()
        self._datasets.pop(name, None)
        self._references.pop(name, None)

    def close(self) -> None:
        for group in list(self._compiled):
            self.release_group(group)
        for name in list(self._artifacts):
            self.release_model(name)

    def info(self) -> dict[str, Any]:
        return {**self.backend.info(), "tier": self.zoo.tier}
