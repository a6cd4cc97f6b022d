"""The backend contract: the only thing the suites and the engine know of a backend.

A vendor implements two classes, ``Backend`` and ``Compiled``, in one short file
(see backends/cpu for a complete one) and is found by name through the registry
(backends/registry.py): a package ``backends/<name>/`` exporting ``BACKEND``, or an
installed distribution's entry point in group ``xpuperf.backends``.

The shape follows onnx.backend.base (prepare -> rep.run): ``compile`` is prepare,
``Compiled.run`` is rep.run. An accelerator may also offer ``Compiled.resident()``
(a ``Resident``: inputs and outputs kept on its device, timed by its own clock),
so that its items report device-resident figures beside the end-to-end ones.
And it may offer ``Backend.energy_meter()`` (an ``EnergyMeter``: its device's own
energy counter), so that the timed windows report joules and watts, and
``Backend.op_provider()`` (an ``OpProvider``: its device for the micro-benchmarks
of suites/micro_perf, and its own kernels of any of their ops).
"""
from __future__ import annotations

import abc
import json
import os
import time
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
import contextlib
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np

# tf32 is fp32 storage with TensorFloat-32 matmuls (10-bit mantissa): a precision
# of its own, so that a GPU's tf32 figures are never reported as fp32.
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
T = TypeVar("T")


@dataclass
class CompileReport:
    """What a compilation did, measured by the backend.

    ``precision`` is the precision really used, which may differ from the one
    asked for (an int8 request that quantized nothing ran in fp32, say).
    ``nodes_native`` counts the graph nodes that run on the backend's own device;
    the rest fell back, and their op types are listed in ``fallback_ops``.
    """

    status: str  # "ok" or "failed"
    seconds: float  # wall time of this compile, or of the load when ``cached``
    precision: str
    nodes_total: int = 0
    nodes_native: int = 0
    fallback_ops: list[str] = field(default_factory=list)
    artifact_bytes: int = 0
    cached: bool = False  # True when the compiled model came from a cache (not a compile)
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        return self.nodes_native / self.nodes_total if self.nodes_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "coverage": self.coverage}


class Compiled(abc.ABC):
    """A model compiled for one precision; ``run`` may be called many times."""

    report: CompileReport

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; feeds and outputs are keyed by the model's tensor names."""

    def close(self) -> None:
        """Release device memory; the object is not used afterwards."""

    def resident(self) -> "Resident | None":
        """Optional: this model with its inputs and outputs kept on the device, so
        that a performance item reports device-resident figures beside the
        end-to-end ones ``run`` gives. None (the default) for a backend that
        computes on the host: its inputs are already where it computes, and end to
        end is all there is."""
        return None


class Resident(abc.ABC):
    """A compiled model fed with inputs already on its device (as onnxruntime's IO
    binding and TensorRT's bindings are), for the figures that leave the copies
    out: ``run`` on placed inputs is the device-resident query, ``put`` and
    ``get`` are the copies that ``Compiled.run`` adds to it. Each call returns
    when the device is done (synchronized), so that the harness may time it with
    the host's clock; what a placed or output object is, is the backend's own.
    """

    @abc.abstractmethod
    def put(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """Copy one batch of host arrays (keyed as ``Compiled.run``'s feeds) to
        the device; the result is handed to ``run`` as many times as the harness
        likes."""

    @abc.abstractmethod
    def run(self, placed: Any) -> Any:
        """Run on ``placed`` inputs; the outputs stay on the device. They are the
        caller's: a later run must not overwrite them (clone a CUDA graph's
        static outputs), or ``get`` would hand out another query's results."""

    @abc.abstractmethod
    def get(self, outputs: Any) -> dict[str, np.ndarray]:
        """Copy ``run``'s outputs to host arrays, as ``Compiled.run`` returns them."""

    def device_seconds(self, placed: Any, repeats: int) -> list[float] | None:
        """The device time of each of ``repeats`` runs on ``placed``, measured by
        the device's own clock (CUDA events, say): what a query costs the device
        without the host's launch and wait. None where the device has no clock of
        its own."""
        return None

    def memory_peak_bytes(self) -> int | None:
        """The peak of device memory allocated since ``reset_memory_peak``; None
        where the device cannot say (then the host's resident memory is reported)."""
        return None

    def reset_memory_peak(self) -> None:
        """Start a new peak for ``memory_peak_bytes``."""


class Backend(abc.ABC):
    """One piece of hardware and its software stack."""

    name: str = ""
    # Python modules this backend needs; the registry reports the backend as
    # unavailable (with ``install_hint``) when one is missing, without importing it.
    requires: tuple[str, ...] = ()
    install_hint: str = ""
    # Modules each of its workers imports, whatever the model (what it builds models
    # with): the session's fork server imports them once, so that no worker's
    # start pays for them (xpuperf.worker.process). Only modules whose import
    # touches no device: a device initialized before a fork is unusable after it.
    preload: tuple[str, ...] = ()

    def info(self) -> dict[str, Any]:
        """Device name and count, stack versions, peak FLOP/s where known."""
        return {"name": self.name}

    def capabilities(self) -> dict[str, bool]:
        """What the device offers that an outcome may depend on (an ISA feature, a
        number format), each name with whether this device has it: {"bf16": False}.
        An expected-failures line keys a host-dependent outcome on these names
        (``test_op[x]  if not bf16  # reason``). Called at collection: keep it cheap.
        backends/hostcpu.py gives them for a backend that runs on the host CPU."""
        return {}

    @abc.abstractmethod
    def precisions(self) -> set[str]:
        """The subset of PRECISIONS this backend can compile to."""

    @abc.abstractmethod
    def compile(
        self,
        artifact: "ModelArtifactLike",
        precision: str,
        batch_sizes: tuple[int, ...],
        options: Mapping[str, str],
        cache_dir: Path | None = None,
    ) -> Compiled:
        """Compile ``artifact`` for ``precision``.

        ``cache_dir``, when given, is a directory kept for this backend and this
        exact (model, data, precision, batch sizes, options, stack versions). Save
        there what a later compile can load instead of compiling (an engine blob, a
        shared library); when it already holds that, load it and report
        ``cached=True`` with ``seconds`` the time the load took. The helpers below
        (write_atomically, save_report, load_cached) do the bookkeeping. A backend
        without a cache ignores the argument.

        Raise ``CompileError`` when the model cannot be compiled: the engine turns
        it into a failed compile report, and the accuracy and performance items of
        that combination fail with its message.
        """

    def generation_engine(self, artifact: Any, precision: str, options: Mapping[str, str]) -> Any:
        """Optional: a ``backends.generation.GenerationEngine`` serving the LLM
        ``artifact`` (a ``backends.generation.LMArtifactLike``) at ``precision``;
        the contract is in backends/generation.py. Raise
        ``backends.generation.GenerationUnsupported`` for what it cannot serve."""
        from backends.generation import GenerationUnsupported
        raise GenerationUnsupported(f"the {self.name} backend has no generation engine "
                                    "(implement Backend.generation_engine)")

    def energy_meter(self, options: Mapping[str, str]) -> "EnergyMeter":
        """Optional: the energy counter of the device ``options`` run on (the same
        options ``compile`` gets), read before and after each timed window. Raise
        ``EnergyUnavailable`` with the reason where the device has none, or it
        cannot be read here: the records then say "unavailable" and why. Never
        an estimate (from a TDP, say): a figure here is a counter's."""
        raise EnergyUnavailable(f"the {self.name} backend reads no energy counter "
                                "(implement Backend.energy_meter)")

    def op_provider(self, options: Mapping[str, str]) -> "OpProvider | None":
        """Optional: the device the micro-benchmarks (suites/micro_perf) run their
        ops on, for the device ``options`` name, with this backend's own
        implementation of any op (xpuperf/microperf/ops.py lists them); an op it
        does not register runs as the framework's (torch) on that device. None
        (the default): this backend runs no micro-benchmarks, and their items are
        skipped saying so."""
        return None


class OpProvider:
    """Where micro-benchmark ops run, and the backend's kernels for some of them.

    ``device`` is a torch device string ("cpu", "cuda:0", a vendor's "npu:0");
    inputs are made there and outputs read back from it. ``implementations``
    maps an op's name (as xpuperf/microperf/ops.py names it) to a callable
    taking the op's inputs by name and returning its output tensor on the
    device: the vendor's kernel, timed and checked against the fp64 reference
    like the framework's. ``precisions`` lists the precisions this device
    runs (tf32 and fp8 only where it has them). ``collectives`` names the
    torch.distributed backend its ranks meet through ("hccl", say); None: gloo
    on the CPU, NCCL on CUDA.
    """

    def __init__(self, device: str = "cpu", implementations: Mapping[str, Callable[..., Any]]
                 | None = None, precisions: Iterable[str] = ("fp32", "fp16", "bf16", "int8"),
                 collectives: str | None = None):
        self.device = device
        self.implementations = dict(implementations or {})
        self.precisions = frozenset(precisions)
        self.collectives = collectives

    def implementation(self, op: str) -> Callable[..., Any] | None:
        """The backend's own kernel of ``op``, or None: the framework's runs."""
        return self.implementations.get(op)

    @contextlib.contextmanager
    def precision_scope(self, precision: str) -> Iterator[None]:
        """Around every run of an op at ``precision``: a device whose matmuls
        have a mode per precision (tf32 on CUDA) sets it here."""
        yield


class EnergyUnavailable(RuntimeError):
    """The device has no energy counter, or it cannot be read; the message says
    why and, where there is one, what makes it readable."""


class EnergyMeter(abc.ABC):
    """A device's own cumulative energy counter(s): NVML's total energy of a
    card, RAPL's of each CPU package. xpuperf.measure.energy reads it before and
    after a timed window and does the arithmetic (wrap-around, J per query, W);
    a meter only reads."""

    # What is counted, named for the record: "NVML total energy, cuda:0 (...)".
    method: str = ""
    # Per counter, the joules at which it wraps back to zero; None: it does not wrap.
    wraps_at: tuple[float | None, ...] = ()

    @abc.abstractmethod
    def read(self) -> tuple[float, ...]:
        """Each counter's joules since its own origin (one per domain: a card, a
        package), in ``wraps_at``'s order. Raise on a failed read: that costs the
        window its energy figure, never the item."""

    def close(self) -> None:
        """Release the counter's library or files."""


# --------------------------------------------------------------------------- compile cache
# Helpers for ``compile(..., cache_dir)``: save the compiled files with
# ``write_atomically``, then ``save_report`` (written last, it marks the entry
# complete); a later compile calls ``load_cached``.

CACHED_REPORT = "report.json"


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary path)``, then rename it to ``path``: a reader (an xdist
    worker, a later session) never sees a half-written file."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_report(cache_dir: Path, report: CompileReport, **extra: Any) -> None:
    """Save ``report`` (its compile seconds kept in details) and what the loader
    needs (``extra``, JSON-able) as the entry's last file."""
    fields = {k: v for k, v in asdict(report).items()
              if k not in ("status", "seconds", "cached", "error")}
    fields["details"] = {**report.details, "compile_seconds": report.seconds}
    blob = json.dumps({"report": fields, "extra": extra})
    write_atomically(Path(cache_dir) / CACHED_REPORT, lambda p: p.write_text(blob))


def load_cached(cache_dir: Path, open_entry: Callable[[dict[str, Any]], T]
                ) -> tuple[T, CompileReport] | None:
    """``open_entry(extra)`` on a complete entry of ``cache_dir`` and its report,
    cached=True with the load's seconds; None when the entry is absent or anything
    in it is unreadable (the caller then compiles, and saves over it)."""
    start = time.perf_counter()
    try:
        saved = json.loads((Path(cache_dir) / CACHED_REPORT).read_text())
        opened = open_entry(saved["extra"])
        report = CompileReport(status="ok", seconds=0.0, cached=True, **saved["report"])
    except Exception:  # noqa: BLE001 - missing, truncated, corrupt: each is a miss
        return None
    report.seconds = time.perf_counter() - start
    return opened, report


class CompileError(RuntimeError):
    """The backend could not compile the model; the message says why.

    ``fallback_ops`` names the ops the backend's frontend could not convert, which
    tells a conversion failure from a failure of the compiler proper; with
    ``nodes_total`` and ``nodes_native`` (the nodes it could convert), the failed
    compile's report counts the miss in the model's coverage."""

    def __init__(self, message: str, fallback_ops: Iterable[str] = (), nodes_total: int = 0,
                 nodes_native: int = 0):
        super().__init__(message)
        self.fallback_ops = sorted(set(fallback_ops))
        self.nodes_total, self.nodes_native = nodes_total, nodes_native


class Declined(CompileError):
    """The backend does not take this model or precision, by design and with the
    reason (a torch-only backend handed a TensorFlow entry, say): its items are
    skipped with the message, not failed, and count against no coverage."""


class ModelArtifactLike(abc.ABC):
    """What a backend may use of a model (implemented by xpuperf.models.ModelArtifact).

    Declared here so a vendor reads one file to know everything it is handed.
    """

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    @abc.abstractmethod
    def onnx_path(self) -> PathLike[str]:
        """The model exported to ONNX with a dynamic batch axis (cached on disk)."""

    @abc.abstractmethod
    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        """Real dataset samples, one per feed dict, for post-training quantization."""

    # Optional for an artifact: a backend that compiles a framework's own model
    # (a GPU backend on torch) uses these; the ONNX file above serves the others.
    def torch_module(self) -> Any:
        """A fresh copy of the model's own torch.nn.Module, in eval mode and fp32 on
        the CPU, the caller's to convert or move; None where the model has no torch
        module (a TensorFlow entry, an ONNX file). It takes the inputs positionally
        in ``input_names`` order and returns a tensor, or a tuple in
        ``output_names`` order."""
        return None

    def example_feeds(self, batch_size: int) -> dict[str, np.ndarray]:
        """Inputs of the model's names, shapes and dtypes at ``batch_size`` (their
        values are not data), for tracing, warm-up and capture."""
        raise NotImplementedError(f"{type(self).__name__} gives no example inputs")

