"""The engine's state for one pytest session, on the suite's side of the process
boundary: datasets, artifacts and reference outputs (made on first use and kept
as long as their model's items need them), and one worker process per (model,
precision) group that hosts the backend (xpuperf.worker). No pytest in here;
the plugin drives it.

The backend runs only in the worker: a crash or a hang there ends that worker,
the item fails with the reason, and the group's remaining items fail at once
with the same reason; the next group gets a fresh worker.
"""
from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from backends.base import Backend, CompileReport
from xpuperf.measure import flops
from xpuperf.batches import batch_free, eval_batch_size, run_in_batches
from xpuperf.cache import Cache, content_key
from xpuperf.ceilings import Ceiling, Ceilings, element_bytes
from xpuperf.datasets.base import Dataset
from xpuperf.models.artifact import ModelArtifact
from xpuperf.models.entry import SetupError, ZooEntry
from xpuperf.worker.process import RemoteError, StartFailed, Worker, WorkerLost
from xpuperf.zoo import Combination, ModelSpec, PerfCase, Zoo

HOST = "xpuperf.worker.host:GroupHost"
START_FIX = "raise it with $XPUPERF_START_TIMEOUT=SECONDS"

# The two sides of an A/B comparison (xpuperf.gate): the candidate is the
# session's own backend options, the baseline --ab-baseline-option's.
CANDIDATE, BASELINE = "candidate", "baseline"
TIMEOUT_FIX = ("raise it with --item-timeout SECONDS, tiers.<tier>.timeout_s or the model's "
               "timeout_s in zoo.yaml")


class Unsupported(Exception):
    """The backend does not offer this precision, or declines the model
    (backends.base.Declined): the item is skipped, not failed."""


class BackendFailure(Exception):
    """The item failed in the backend; the message says how (the plugin fails the
    item with it, without the suite's own traceback)."""


class GroupFailed(BackendFailure):
    """The backend's worker was lost in this group; the message says how and where."""


class WorkerStartFailed(GroupFailed):
    """The backend's worker did not start (not a failure of any one command, the
    compile included); the message says how."""


class BackendError(BackendFailure):
    """A command raised in the worker: the message holds the worker's traceback."""


def call(worker: Worker, limit_s: float, command: str, **args: Any) -> Any:
    """``command`` in ``worker`` within ``limit_s``: BackendError when it raised
    there (with the worker's traceback), GroupFailed when the worker was lost."""
    try:
        return worker.call(command, limit_s, **args)
    except StartFailed as e:
        raise WorkerStartFailed(str(e) + (f" ({START_FIX})" if e.timed_out else "")
                                + (f"\n\nin the backend's worker process:\n{e.traceback}"
                                   if e.traceback else "")) from None
    except RemoteError as e:
        raise BackendError(f"{e}\n\nin the backend's worker process:\n{e.traceback}") from None
    except WorkerLost as e:
        raise GroupFailed(str(e) + (f" ({TIMEOUT_FIX})" if e.timed_out else "")) from None


def lost_why(failure: str) -> str:
    """How the worker was lost (a GroupFailed's message) without its last output:
    what the group's later items say after "not run: an earlier item ... lost the
    backend's worker"."""
    return failure.split("; its last output:")[0]


@dataclass(frozen=True)
class Compilation:
    """A group's compile, as its worker reported it."""

    report: CompileReport
    times: dict[str, Any]  # xpuperf.worker.host.CompileTimes.as_record()
    traceback: str  # the backend's, when it raised something other than CompileError


class BenchSession:
    def __init__(self, zoo: Zoo, hardware: str, backend: Backend, options: Mapping[str, str],
                 cache_dir: Path, data_dir: Path, item_timeout_s: float | None = None,
                 device: str | None = None, ab_options: Mapping[str, str] | None = None,
                 ab_python: str | None = None, ab_path: str | None = None,
                 ray_address: str | None = None):
        """``hardware`` names the backend for the workers (a --hardware value);
        ``backend`` is the parent's instance, asked only for its name, precisions
        and info; ``item_timeout_s`` overrides the zoo's time limit per item;
        ``ab_options``, the A/B baseline's backend options, gives each group a
        second worker with them (ab_blocks), started as ``ab_python`` with
        ``ab_path`` first on its import path when they are given; with
        ``ray_address``, each group's worker runs on a node of that Ray cluster
        (xpuperf.worker.ray_worker)."""
        self.zoo, self.hardware, self.backend = zoo, hardware, backend
        self.options = dict(options)
        self.cache = Cache(cache_dir)
        self.data_dir = data_dir
        self.item_timeout_s, self.device = item_timeout_s, device
        self.ray_address = ray_address
        self._entries: dict[str, ZooEntry] = {}  # model -> its dataset, artifact, data key
        self._made: set[str] = set()  # the models whose artifact is made
        self._references: dict[str, dict[str, np.ndarray]] = {}
        self._workers: dict[str, Worker] = {}
        self.ab_options = dict(ab_options) if ab_options is not None else None
        self._ab_workers: dict[str, Worker] = {}  # group -> the A/B baseline's worker
        self._ab_start = {"python": ab_python, "path": ab_path}
        self._ab_compiled: set[str] = set()
        self._compilations: dict[str, Compilation] = {}
        self._failed: dict[str, str] = {}  # group -> why its worker was lost
        self._outputs: dict[str, dict[str, np.ndarray]] = {}
        self._costs: dict[tuple[str, int, str], flops.GraphCost] = {}
        self._overran: dict[str, str] = {}  # model -> what of its parent's work ran too long

    # ------------------------------------------------------------------ per model
    def _bounded(self, model: ModelSpec, key: str, what: str, make: Callable[[], Any]) -> Any:
        """``make()`` within the time limit of one of ``model``'s items: the
        parent's own work for a model (its export, its reference run) runs on a
        thread of its own, watched. A thread cannot be stopped: one past the limit
        is left to finish in the background, its result dropped, and the model's
        items error with the reason (a SetupError naming zoo.yaml's ``key``)."""
        if model.name in self._overran:
            raise SetupError(self._overran[model.name])
        done: dict[str, Any] = {}

        def run() -> None:
            try:
                done["value"] = make()
            except BaseException as e:  # noqa: BLE001 - raised again on the caller's thread
                done["error"] = e
        thread = threading.Thread(target=run, name=f"xpuperf {what} of {model.name}", daemon=True)
        thread.start()
        limit = self.timeout_s(model)
        thread.join(limit)
        if thread.is_alive():
            self._overran[model.name] = (f"{self._entry(model).where(key)}: {what} ran past its time "
                                         f"limit of {limit:g} s ({TIMEOUT_FIX})")
            raise SetupError(self._overran[model.name])
        if "error" in done:
            raise done["error"]
        return done["value"]

    def _entry(self, model: ModelSpec) -> ZooEntry:
        if model.name not in self._entries:
            self._entries[model.name] = ZooEntry(self.zoo, model, self.cache, self.data_dir)
        return self._entries[model.name]

    def dataset(self, model: ModelSpec) -> Dataset:
        return self._entry(model).dataset()

    def artifact(self, model: ModelSpec) -> ModelArtifact:
        """The model's artifact with its ONNX export made, which the worker then
        finds in the cache; made within the time limit of one of its items."""
        entry = self._entry(model)
        if model.name not in self._made:
            self._bounded(model, "weights" if model.weights else "builder",
                          "the model's making (its weights read, its export to ONNX)",
                          entry.artifact)
            self._made.add(model.name)
        return entry.artifact()

    def prepare(self, model: ModelSpec) -> None:
        """Make what the worker will need before it starts, so that a problem
        with it is a setup error of the model, not the backend's failure."""
        self.dataset(model)
        self.artifact(model)

    def reference(self, model: ModelSpec) -> dict[str, np.ndarray]:
        """Reference outputs for the whole dataset, computed once and kept on disk."""
        if model.name not in self._references:
            ds, art = self.dataset(model), self.artifact(model)
            expected = getattr(ds, "expected", None)
            if expected is not None:  # golden data (zoo.yaml golden:): no reference run
                self._references[model.name] = expected
                return expected
            bs = eval_batch_size(model.batch_sizes, len(ds))
            key = content_key(art.key, self._entry(model).data_key())
            try:
                self._references[model.name] = self._bounded(
                    model, "framework", f"the {model.framework} reference run",
                    lambda: self.cache.arrays("reference", key, lambda: run_in_batches(
                        art.reference, ds, bs, batch_free(model.outputs))))
            except SetupError:
                raise
            except Exception as e:  # noqa: BLE001 - the framework's failure, not the backend's
                raise self._entry(model).failed(
                    "framework", f"the {model.framework} reference run failed", e) from e
        return self._references[model.name]

    # ------------------------------------------------------------------ the group's worker
    def timeout_s(self, model: ModelSpec) -> float:
        """The time limit of one item of ``model``: --item-timeout, else the
        model's timeout_s, else the tier's."""
        if self.item_timeout_s is not None:
            return self.item_timeout_s
        return model.timeout_s if model.timeout_s is not None else self.zoo.timeout_s

    def _call(self, combo: Combination, command: str, *, side: str = CANDIDATE,
              **args: Any) -> Any:
        """``command`` in the group's worker (``side`` BASELINE: the A/B baseline's
        worker). GroupFailed when the worker is lost now or was lost earlier in
        the group; BackendError when it raised."""
        group = combo.group
        if group in self._failed:
            raise GroupFailed(f"not run: an earlier item of {combo.id} lost the backend's "
                              f"worker: {self._failed[group]}")
        self.prepare(combo.model)
        workers = self._workers if side == CANDIDATE else self._ab_workers
        worker = workers.get(group)
        if worker is None:
            options = self.options if side == CANDIDATE else self.ab_options
            init = {"hardware": self.hardware, "options": options,
                    "zoo": str(self.zoo.path), "tier": self.zoo.tier,
                    "cache_dir": str(self.cache.root), "data_dir": str(self.data_dir),
                    "model": combo.model.name, "precision": combo.precision}
            name = f"xpuperf {'A/B baseline ' if side == BASELINE else ''}worker {group}"
            if self.ray_address is not None:  # A/B is refused with it (xpuperf.options)
                from xpuperf.worker.ray_worker import RayWorker
                # Placed by the backend's own name: GPU, CPU, or a custom resource.
                worker = RayWorker(HOST, init, name, self.ray_address, self.backend.name,
                                   device=self.device)
            else:
                worker = Worker(HOST, init, name=name, device=self.device,
                                **(self._ab_start if side == BASELINE else {}))
            workers[group] = worker
        try:
            return call(worker, self.timeout_s(combo.model), command, **args)
        except GroupFailed as e:
            self._failed[group] = lost_why(str(e))
            raise

    def placement(self, combo: Combination) -> dict[str, str]:
        """Where the group's worker runs when not here: its Ray node's host and id."""
        return dict(getattr(self._workers.get(combo.group), "where", None) or {})

    def compilation(self, combo: Combination) -> Compilation:
        """Compile once per group in its worker; a failure is remembered, not retried."""
        if combo.precision not in self.backend.precisions():
            raise Unsupported(f"{self.backend.name} does not offer {combo.precision} "
                              f"(it offers {', '.join(sorted(self.backend.precisions()))})")
        group = combo.group
        if group not in self._compilations:
            try:
                done = self._call(combo, "compile")
            except WorkerStartFailed:  # not the compile's failure: no compile ran
                raise
            except BackendFailure as e:  # lost while compiling
                self._compilations[group] = Compilation(
                    CompileReport(status="failed", seconds=0.0, precision=combo.precision,
                                  error=str(e)),
                    {"seconds_cold": None, "seconds_cached": None,
                     "cold_measured": "the compile did not finish"}, "")
            else:
                self._compilations[group] = Compilation(CompileReport(**done["report"]),
                                                        done["times"], done["traceback"])
        report = self._compilations[group].report
        if report.status == "declined":
            raise Unsupported(f"{self.backend.name} declines it: {report.error}")
        return self._compilations[group]

    def outputs(self, combo: Combination) -> dict[str, np.ndarray]:
        """The backend's outputs for the whole dataset, shared by the metric and
        numerics items of one combination."""
        if combo.group not in self._outputs:
            self._outputs[combo.group] = self._call(combo, "outputs")
        return self._outputs[combo.group]

    def throughput(self, case: PerfCase, driver: str) -> dict[str, Any]:
        """One scenario at one batch size, timed in the worker (host.throughput)."""
        return self._call(case.combo, "throughput", batch_size=case.batch_size,
                          scenario=case.scenario, driver=driver)

    def ab_blocks(self, case: PerfCase, rounds: int, block_s: float
                  ) -> tuple[list[float], list[float]]:
        """``rounds`` pairs of A/B blocks at the case's batch size: (the baseline's
        block throughputs, the candidate's), pair i measured one right after the
        other, which side first alternating. Each block is timed whole in its
        side's worker (host.block); the idle side waits on its pipe."""
        if self.ab_options is None:
            raise ValueError("no A/B baseline was given (--ab-baseline-option)")
        if case.combo.group not in self._ab_compiled:
            done = self._call(case.combo, "compile", side=BASELINE)
            if done["report"]["status"] != "ok":
                raise BackendError(f"the A/B baseline ({_options_text(self.ab_options)}) did not "
                                   f"compile: {done['report'].get('error')}")
            self._ab_compiled.add(case.combo.group)
        pairs: dict[str, list[float]] = {BASELINE: [], CANDIDATE: []}
        for r in range(rounds):
            for side in ((BASELINE, CANDIDATE) if r % 2 == 0 else (CANDIDATE, BASELINE)):
                pairs[side].append(float(self._call(case.combo, "block", side=side,
                                                    batch_size=case.batch_size,
                                                    seconds=block_s)))
        return pairs[BASELINE], pairs[CANDIDATE]

    def audit(self, combo: Combination, name: str) -> dict[str, Any]:
        return self._call(combo, "audit", name=name)

    def evaluate(self, model: ModelSpec, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        fields = {t.field: outputs[t.name] for t in model.outputs}
        return self.dataset(model).evaluate(fields)

    # ------------------------------------------------------------------ performance figures
    def graph_cost(self, combo: Combination, batch_size: int) -> flops.GraphCost:
        """FLOPs and bytes of one batch, from the exported graph at the shapes the
        zoo declares, float tensors priced at the combination's precision."""
        key = (combo.model.name, batch_size, combo.precision)
        if key not in self._costs:
            self._costs[key] = flops.count_file(
                self.artifact(combo.model).onnx_path(), batch_size,
                element_bytes(combo.precision),
                {t.name: t.batch_shape(batch_size) for t in combo.model.inputs})
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
        if cost.free_axes and cost.unknown:
            figures["flops_note"] += f"; free input axes: {', '.join(cost.free_axes)}"
            warnings.warn(f"{combo.model.name}: FLOPs and MFU leave out the {cost.unknown} "
                          f"nodes that depend on the graph's free input axes "
                          f"{', '.join(cost.free_axes)}: "
                          f"declare their sizes under models.{combo.model.name}.inputs")
        return figures

    def roofline(self, combo: Combination, batch_size: int, qps: float) -> dict[str, Any]:
        """The graph figures, the peak FLOP/s and the MFU of ``qps`` samples/s."""
        figures = self.graph_figures(combo, batch_size)
        peak = self.peak_flops(combo)
        return {**figures, "peak_flops": peak.value, "peak_flops_source": peak.source,
                "mfu": flops.mfu(figures["flops_per_sample"], qps, peak.value)}

    @functools.cached_property
    def ceilings(self) -> Ceilings:
        """The backend's declared ceilings and the peaks its workers measured;
        made at the first figure that needs one, so a session of no performance
        item never reads them."""
        return Ceilings(self.backend.name, self.backend.info())

    def peak_flops(self, combo: Combination) -> Ceiling:
        """The backend's peak FLOP/s at the combination's precision: what its
        info() declares, else measured once per session with an n x n GEMM
        (tiers.<tier>.peak_gemm) in the group's worker. Measured in the session,
        so that the MFU of a busy machine is not judged against the peak of a
        quiet one, or the other way round. A lost worker costs this figure, and
        the next group measures again."""
        precision = combo.precision

        def measure() -> Ceiling:
            if precision not in self.backend.precisions():
                return Ceiling(None, f"not measured: {self.backend.name} does not offer {precision}")
            return Ceiling(**self._call(combo, "peak", precision=precision))
        try:
            return self.ceilings.peak_flops(precision, self.hardware, measure)
        except BackendFailure as e:
            return Ceiling(None, f"not measured: {str(e).splitlines()[0]}")

    # ------------------------------------------------------------------ lifetime
    def release_group(self, group: str) -> None:
        for workers in (self._workers, self._ab_workers):
            worker = workers.pop(group, None)
            if worker is not None:
                worker.close()
        self._ab_compiled.discard(group)
        self._outputs.pop(group, None)
        self._compilations.pop(group, None)  # an out-of-order item compiles again
        self._failed.pop(group, None)

    def release_model(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            entry.close()
        self._made.discard(name)
        self._references.pop(name, None)
        for key in [k for k in self._costs if k[0] == name]:
            del self._costs[key]

    def close(self) -> None:
        for group in {*self._workers, *self._ab_workers}:
            self.release_group(group)
        for name in list(self._entries):
            self.release_model(name)

    def info(self) -> dict[str, Any]:
        return {**self.backend.info(), "tier": self.zoo.tier}


def _options_text(options: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "no backend options"
