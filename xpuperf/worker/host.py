"""The worker's side of one (model, precision) group: the backend, the compiled
model, the dataset batches fed to it, and every run of it, timed or not.

Every method in COMMANDS answers one command of the parent (xpuperf.session)
with JSON-able values and numpy arrays. The timed loops (loadgen's scenarios,
the audits' blocks) run here in full, so that no inter-process message is ever
inside a measurement; the parent receives latencies and records.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from backends.base import (Compiled, CompileError, CompileReport, Declined, ModelArtifactLike,
                           Resident)
from backends.registry import find
from xpuperf.measure import audits, energy, flops, loadgen
from xpuperf.batches import (audit_batch_size, batch_free, eval_batch_size, perf_indices,
                             run_in_batches)
from xpuperf.cache import (Cache, content_key, package_modules, read_json, source_digest,
                           write_json)
from xpuperf.measure.memory import PeakRSS
from xpuperf.measure.resident import measure as measure_resident
from xpuperf.measure.timing import run_mlperf_beside, run_scenario, run_settings
from xpuperf.models import onnx_file
from xpuperf.worker import budget
from xpuperf.worker.contract import check_outputs
from xpuperf.zoo import load_zoo

# The peak GEMM's run: its fastest call counts, so a short run is enough.
PEAK_SETTINGS = loadgen.RunSettings(min_duration_s=0.2, min_queries=5, warmup_queries=2, windows=1)
AUDIT_SEED = 1  # LoadGen's audits use fixed seeds too: a rerun audits the same samples
TRACEBACK_CHARS = 4000


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

    def torch_module(self) -> Any:
        """The same GEMM as a torch Linear, for backends that compile torch (GPU)."""
        import onnx
        import torch
        from onnx import numpy_helper

        w = numpy_helper.to_array(onnx.load(str(self._path)).graph.initializer[0])
        gemm = torch.nn.Linear(self._n, self._n, bias=False)
        gemm.weight.data = torch.from_numpy(np.ascontiguousarray(w.T))
        return gemm.eval()

    def example_feeds(self, batch_size: int) -> dict[str, np.ndarray]:
        return {"a": np.zeros((batch_size, self._n), np.float32)}


def _traceback_text(e: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(e))[-TRACEBACK_CHARS:]


def _coverage_of(e: BaseException) -> dict[str, Any]:
    """What a failed compile took of the graph, where its CompileError says: the
    ops it could not convert count against the model's coverage."""
    if not isinstance(e, CompileError) or not e.fallback_ops:
        return {}
    return {"fallback_ops": e.fallback_ops, "nodes_total": e.nodes_total,
            "nodes_native": e.nodes_native}


class GroupHost:
    """Hosts ``hardware``'s backend for one model at one precision."""

    COMMANDS = ("compile", "outputs", "throughput", "block", "audit", "peak")

    def __init__(self, note: Callable[[str], None], hardware: str, options: Mapping[str, str],
                 zoo: str, tier: str, cache_dir: str, data_dir: str, model: str, precision: str):
        """``note(text)`` tells the parent what the host is doing (quoted if it dies
        there); the rest names the backend and the group, as JSON can carry them."""
        from xpuperf.models.entry import ZooEntry  # imports the model's framework adapter

        self.note = note
        self.backend = find(hardware).load()()
        self.options = dict(options)
        self.zoo = load_zoo(zoo, tier)
        self.model = next(m for m in self.zoo.models if m.name == model)
        self.precision = precision
        self.cache = Cache(Path(cache_dir))
        # As the parent made them (xpuperf.session), with the same keys.
        self.entry = ZooEntry(self.zoo, self.model, self.cache, Path(data_dir))
        self.dataset, self.artifact = self.entry.dataset(), self.entry.artifact()
        self.compiled: Compiled | None = None
        self.report: CompileReport | None = None
        self._outputs: dict[str, np.ndarray] | None = None
        self._capacity: dict[int, float] = {}
        self._resident: dict[int, dict[str, Any]] = {}  # batch size -> device-resident figures
        self._meter: energy.Meter | None = None  # opened by the first timed run
        self._graph_shapes: dict[str, tuple[int | None, ...] | None] | None = None
        self._blocks: dict[int, list[dict[str, np.ndarray]]] = {}  # batch size -> A/B inputs

    # ------------------------------------------------------------------ commands
    def compile(self) -> dict[str, Any]:
        """Compile through the on-disk cache: {"report": CompileReport fields,
        "times": CompileTimes.as_record(), "traceback": the backend's, if it raised}."""
        self.note("compiling")
        start = time.perf_counter()
        trace = ""
        try:
            self.compiled, times = self._compile()
            self.report = self.compiled.report
        except Exception as e:  # noqa: BLE001 - any backend exception is a failed compile
            kind = "" if isinstance(e, CompileError) else f"{type(e).__name__}: "
            trace = "" if isinstance(e, CompileError) else _traceback_text(e)
            self.report = CompileReport(status="declined" if isinstance(e, Declined) else "failed",
                                        seconds=time.perf_counter() - start,
                                        precision=self.precision, error=f"{kind}{e}",
                                        **_coverage_of(e))
            times = CompileTimes(None, None, "the compile failed")
        return {"report": asdict(self.report), "times": times.as_record(), "traceback": trace}

    def outputs(self) -> dict[str, np.ndarray]:
        """The backend's outputs for the whole dataset, each batch checked against
        the zoo's declaration of the outputs."""
        compiled = self._ready()
        bs = eval_batch_size(self.model.batch_sizes, len(self.dataset))
        batch = [0]

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            batch[0] += 1
            self.note(f"running batch {batch[0]} of the accuracy run (batch size {bs})")
            out = self._checked(compiled.run(feeds), bs)
            if batch[0] == 1:  # before the rest are kept: refused with the size, not run out
                budget.check(self.model.name, sum(v.nbytes for v in out.values()),
                             -(-len(self.dataset) // bs), bs, budget.max_output_bytes())
            return out
        self._outputs = run_in_batches(run, self.dataset, bs, batch_free(self.model.outputs))
        return self._outputs

    def throughput(self, batch_size: int, scenario: str, driver: str) -> dict[str, Any]:
        """One scenario at ``batch_size``: the engine's record, every query's
        latency (ns), whether a server run was valid, and the item's other
        figures, as its record holds them (xpuperf.records): the runs it took, the
        peak resident memory, the device-resident figures (xpuperf.measure.resident,
        once per batch size; or {"skipped": why}) with the device's memory peak
        where it can say, and the energy of the measured run
        (xpuperf.measure.energy; or {"unavailable": why})."""
        compiled = self._ready()
        resident = compiled.resident()
        if resident is not None:
            resident.reset_memory_peak()
        spec = next(s for s in self.model.scenarios if s.name == scenario)
        batches = [self.dataset.feeds(i) for i in perf_indices(len(self.dataset), batch_size)]
        self.note(f"checking one batch of {batch_size} before timing {scenario}")
        self._checked(compiled.run(batches[0]), batch_size)
        run = compiled.run

        def issue(k: int) -> None:
            run(batches[k % len(batches)])

        settings = run_settings(self.zoo.perf)
        if self._meter is None:
            self._meter = energy.Meter.open(self.backend, self.options)
        window = self._meter.window()
        # The counter is read where the measured run starts (after its warm-up) and
        # after it ends.
        timed = window.watch(issue, settings.warmup_queries)

        def capacity(again: bool) -> float:  # the server's: the offline QPS at this batch size
            if again or batch_size not in self._capacity:
                self.note(f"measuring the offline throughput at batch size {batch_size}")
                self._capacity[batch_size] = loadgen.run_offline(timed, batch_size, settings).qps
            return self._capacity[batch_size]

        self.note(f"timing {scenario} at batch size {batch_size}")
        with PeakRSS() as rss:
            result, runs = run_scenario(spec, timed, batch_size, settings, capacity)
            used = window.stop(query=result.queries, sample=result.samples)
        if scenario == "offline":
            self._capacity[batch_size] = result.qps
        figures = {"runs": runs, "distinct_batches": len(batches), "peak_rss_mb": rss.mb,
                   "rss_method": rss.method, "energy": used,
                   "device_resident": self._device_resident(resident, batch_size, batches,
                                                            settings)}
        peak = resident.memory_peak_bytes() if resident is not None else None
        if peak is not None:
            figures["device_memory_peak_mb"] = peak / 2**20
        if driver == "mlperf":
            self.note(f"running {scenario} under mlcommons-loadgen")
            figures["mlperf"] = run_mlperf_beside(spec, issue, batch_size, len(batches),
                                                  settings, result)
        return {"record": result.as_record(), "latencies_ns": np.asarray(result.latencies_ns),
                "valid": result.valid, "figures": figures}

    def block(self, batch_size: int, seconds: float) -> float:
        """One A/B block (xpuperf.gate): queries back to back at ``batch_size``
        for ``seconds``, timed here whole after one warm-up query (which refills
        the caches the other side's block emptied). The block's throughput is
        the batch size over its median query time: on a shared host a
        neighbour's preemption lengthens a few queries by milliseconds, which
        moves the mean by tens of percent and the median by next to nothing."""
        compiled = self._ready()
        batches = self._blocks.get(batch_size)
        if batches is None:
            batches = self._blocks[batch_size] = [
                self.dataset.feeds(i) for i in perf_indices(len(self.dataset), batch_size)]
        run = compiled.run
        settings = loadgen.RunSettings(min_duration_s=seconds, min_queries=1, warmup_queries=1,
                                       windows=1)
        result = loadgen.run_offline(lambda k: run(batches[k % len(batches)]), batch_size,
                                     settings)
        return batch_size * 1e9 / float(np.median(result.latencies_ns))

    def audit(self, name: str) -> dict[str, Any]:
        """One of LoadGen's integrity audits (xpuperf.measure.audits): the verdict's fields,
        or {"skipped": why} when the dataset cannot give its inputs."""
        compiled = self._ready()
        bs = audit_batch_size(self.model.batch_sizes, len(self.dataset))
        self.note(f"running the {name} audit at batch size {bs}")
        rounds, block = self.zoo.audits["rounds"], self.zoo.audits["block"]
        ds, run = self.dataset, compiled.run
        self._checked(run(ds.feeds(perf_indices(len(ds), bs)[0])), bs)  # the audits keep none
        if name == "accuracy":
            accuracy = self._outputs if self._outputs is not None else self.outputs()
            indices = perf_indices(len(ds), bs)
            logged = audits.logged_performance_run(run, [ds.feeds(i) for i in indices], bs,
                                                   rounds * block, AUDIT_SEED,
                                                   budget.max_output_bytes())
            whole = batch_free(self.model.outputs)

            def accuracy_mode(b: int) -> dict[str, np.ndarray]:
                # An output without a batch axis has no rows for these samples in the
                # accuracy run (of other batches): the batch is run once more.
                again = run(ds.feeds(indices[b])) if whole else {}
                return {k: again[k] if k in whole else accuracy[k][indices[b]] for k in accuracy}
            # Compared one pair at a time, each let go before the next is made.
            verdict = audits.accuracy_verdict((outputs, accuracy_mode(b)) for b, outputs in logged)
        elif name == "caching":
            per_attempt = (rounds + 1) * block  # block -1 of each side is its warm-up
            repeated_idx = (0,) * bs
            distinct = audits.distinct_index_batches(len(ds), bs, audits.ATTEMPTS * per_attempt,
                                                     AUDIT_SEED, repeated_idx)
            if distinct is None:
                return {"skipped": f"{len(ds)} samples make fewer than "
                                   f"{audits.ATTEMPTS * per_attempt} distinct batches of {bs}: "
                                   "a cache could hold them all"}
            repeated = ds.feeds(list(repeated_idx))

            def caching(attempt: int) -> audits.Verdict:
                mine = distinct[attempt * per_attempt:(attempt + 1) * per_attempt]
                t = audits.alternating_blocks(run, {
                    "repeated": lambda r: [repeated] * block,
                    "distinct": lambda r: [ds.feeds(list(i))
                                           for i in mine[(r + 1) * block:(r + 2) * block]],
                }, rounds)
                return audits.caching_verdict(t["repeated"], t["distinct"])
            verdict = audits.confirmed(caching)
        elif name == "seed":
            batches = [ds.feeds(i) for i in perf_indices(len(ds), bs)]  # the throughput order
            if len(batches) < 2:
                return {"skipped": "the dataset makes one batch: there is no order to change"}

            def seed(attempt: int) -> audits.Verdict:
                alternate = audits.alternate_order(len(batches), rounds + 1, AUDIT_SEED + attempt)
                t = audits.alternating_blocks(run, {
                    "default": lambda r: batches,
                    "alternate": lambda r: [batches[i] for i in alternate[r + 1]],
                }, rounds)  # a block is one pass over the batches
                return audits.seed_verdict(t["default"], t["alternate"])
            verdict = audits.confirmed(seed)
        else:
            raise ValueError(f"unknown audit {name!r}")
        return {**asdict(verdict), "batch_size": bs}

    def peak(self, precision: str) -> dict[str, Any]:
        """{"value", "source"}: the backend's peak FLOP/s at ``precision``, measured
        with an n x n GEMM (tiers.<tier>.peak_gemm) compiled by the backend."""
        n = self.zoo.peak_gemm
        self.note(f"measuring the peak FLOP/s with a {n}x{n} GEMM at {precision}")
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
            return {"value": None, "source": f"not measured: the {n}x{n} GEMM failed at "
                                              f"{precision}: {type(e).__name__}: {e}"}
        best_s = float(run.latencies_ns.min()) / 1e9
        return {"value": flops.gemm_flops(n) / best_s,
                "source": f"measured: {n}x{n} GEMM at {precision}, fastest of {run.queries} runs"}

    def close(self) -> None:
        if self.compiled is not None:
            self.compiled.close()
        if self._meter is not None:
            self._meter.close()
        self.entry.close()

    def _checked(self, outputs: Any, batch_size: int) -> dict[str, np.ndarray]:
        """``outputs`` held to the contract (xpuperf.worker.contract): where the zoo
        declares no shape of an output, to its shape in the model's graph."""
        if self._graph_shapes is None:
            self._graph_shapes = {}
            if not all(t.shape for t in self.model.outputs):
                try:
                    graph = onnx_file.signature(self.artifact.onnx_path())[1]
                except ValueError:  # then the batch axis is all that is checked
                    graph = []
                self._graph_shapes = {t.name: t.shape for t in graph}
        return check_outputs(outputs, self.model.outputs, batch_size, self._graph_shapes)

    # ------------------------------------------------------------------ measuring
    def _device_resident(self, resident: Resident | None, batch_size: int,
                         batches: list[dict[str, np.ndarray]], settings: loadgen.RunSettings
                         ) -> dict[str, Any]:
        """xpuperf.measure.resident's figures at ``batch_size``, measured by its first
        item (a batch size's other scenarios would measure the same again)."""
        if resident is None:
            return {"skipped": f"{self.backend.name} offers no device-resident path "
                               "(Compiled.resident() is None): a host backend's inputs are "
                               "already where it computes, so end to end is all there is"}
        if batch_size not in self._resident:
            self.note(f"timing device-resident queries at batch size {batch_size}")
            self._resident[batch_size] = measure_resident(resident, batches, batch_size,
                                                          settings)
        return self._resident[batch_size]

    # ------------------------------------------------------------------ compiling
    def _ready(self) -> Compiled:
        if self.compiled is None:
            self.compile()
        if self.compiled is None:
            raise CompileError(f"compilation failed: {self.report.error if self.report else ''}")
        return self.compiled

    def _compile(self) -> tuple[Compiled, CompileTimes]:
        """Compile through the on-disk cache, measuring a cold compile and a load
        from the cache, each where it can be had.

        A cold compile (no entry yet) fills the backend's cache folder; the model
        is then loaded from there once more, which times the cached path and
        proves it works. An entry made by an earlier session is loaded, and the
        cold figure is the one noted when that entry was made.
        """
        model, artifact, backend = self.model, self.artifact, self.backend
        # The stack's versions and the backend's own code: each class it is made of,
        # and the package of its own class.
        classes = {c.__module__ for c in type(backend).__mro__} - {"builtins", "abc"}
        stack = {**backend.info(), "code": source_digest(
            *classes, *package_modules(type(backend).__module__))}
        key = content_key("compiled", backend.name, stack, artifact.key,
                          self.entry.data_key(), self.precision,
                          model.batch_sizes, self.options)

        def compile_into(folder: Path) -> Compiled:
            return backend.compile(artifact, self.precision, model.batch_sizes, self.options,
                                   cache_dir=folder)

        cold: list[Compiled] = []
        folder = self.cache.entry("compiled", key, lambda d: cold.append(compile_into(d)))
        if not cold and not self.cache.holds_files(folder):  # the backend saved nothing to load
            cold.append(compile_into(folder))
        note = folder.with_name(f"{key}.cold.json")
        if cold:
            times = CompileTimes(cold[0].report.seconds, None, "this session")
            write_json(note, {"seconds": times.cold_s,
                              "measured": time.strftime("%Y-%m-%d %H:%M:%S")})
            if not self.cache.holds_files(folder):
                return cold[0], replace(times, cached_why=f"{backend.name} keeps no compile cache")
            cold[0].close()
        else:
            measured = read_json(note)
            times = CompileTimes(
                measured.get("seconds"), None,
                f"an earlier session ({measured['measured']})" if "measured" in measured else
                f"not measured: the compiled model came from the cache ({folder}); "
                "use an empty --cache-dir for a cold compile")
        self.note("loading the compiled model from the compile cache")
        compiled = compile_into(folder)
        if compiled.report.cached:
            times = replace(times, cached_s=compiled.report.seconds)
        else:
            times = replace(times, cached_why=f"{backend.name} compiled again instead of "
                                              f"loading its cache entry")
        return compiled, times
