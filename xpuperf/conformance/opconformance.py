"""Per-op conformance: onnx's own node test cases, each compiled and run by a backend.

Every case of ``onnx.backend.test.case.node`` (one small model per op variant,
with inputs, expected outputs and tolerances) goes through ``Backend.compile``
like a zoo model does, and ends with one outcome:

  pass         compiled natively and matched the expected outputs
  conversion   the backend's frontend could not take the op: a CompileError with
               a non-empty ``fallback_ops`` attribute (the ops it could not
               convert), or a compile that ran nodes off the backend
  compilation  any other compile failure
  run          compiled but ``run`` raised
  mismatch     ran but an output differs in name, shape, dtype or value beyond
               the case's rtol/atol (np.testing.assert_allclose semantics)
  declined     the backend does not take ONNX graphs (backends.base.Declined):
               the item is skipped, and counts in no pass rate

The suite runs each case as one pytest item (suites/compiler_coverage/test_ops.py),
whose known failures a backend lists in its expected-failures file
(xpuperf.conformance.expected). ``IsolatedRunner`` runs cases in a worker process
(xpuperf.worker), so that a backend which crashes or hangs on one case costs
that case only.
"""
from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from backends.base import Backend, CompileError, Declined, ModelArtifactLike
from xpuperf.worker.process import Worker, WorkerLost

OUTCOMES = ("pass", "conversion", "compilation", "run", "mismatch", "declined")
# "test_layer_normalization_2d_axis0_expanded_ver18" tests LayerNormalization
# through its function body; it is filed under the op of its base case.
_EXPANDED = re.compile(r"_expanded(_ver\d+)?$")
_DEFAULT_DOMAINS = ("", "ai.onnx")
_STAGE_OUTCOME = {"compile": "compilation", "run": "run"}
_STAGE_NOTE = {"compile": "compiling the case", "run": "running the case"}
_REASON_CHARS = 600


@dataclass(frozen=True)
class OpCase:
    id: str  # the onnx test name, e.g. "test_add_bcast"
    op_type: str  # qualified by domain outside ai.onnx: "ai.onnx.ml.LabelEncoder"
    expanded: bool  # the op's function body rather than the op itself
    model: Any  # onnx.ModelProto
    data_sets: tuple[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]], ...]
    rtol: float
    atol: float


@dataclass(frozen=True)
class OpResult:
    case_id: str
    op_type: str
    outcome: str  # one of OUTCOMES
    reason: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def _op_name(node: Any) -> str:
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"


def _tensors_only(model: Any) -> bool:
    return all(v.type.WhichOneof("value") == "tensor_type"
               for v in [*model.graph.input, *model.graph.output])


def _array(value: Any) -> np.ndarray:
    """Case data as numpy: the cases hold TensorProtos for types numpy lacks (float8,
    int4: ml_dtypes arrays here) and numpy scalars for rank-0 tensors."""
    from onnx import TensorProto, numpy_helper

    return np.asarray(numpy_helper.to_array(value) if isinstance(value, TensorProto) else value)


@functools.lru_cache(maxsize=1)
def _raw_cases() -> tuple[tuple[Any, str], ...]:
    """onnx's node test cases with tensor inputs and outputs, each with its op type,
    sorted by name; their data as onnx made it (numpy arrays or TensorProtos)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        # Building the cases' reference data overflows and divides by zero on purpose.
        warnings.simplefilter("ignore")
        # collect_testcases fills one module-level list on first import: ask for all
        # ops (a filtered first call would fix the list to that op) and filter here.
        raw = collect_testcases(None)
    single = {c.name: _op_name(c.model.graph.node[0]) for c in raw if len(c.model.graph.node) == 1}
    # The Backend contract carries numpy arrays only: sequence and optional typed
    # cases cannot be fed or returned through it.
    return tuple(sorted(((c, single.get(_EXPANDED.sub("", c.name), _op_name(c.model.graph.node[0])))
                         for c in raw if _tensors_only(c.model)), key=lambda pair: pair[0].name))


def _case(case_id: str, op_type: str, model: Any, data_sets: Sequence[tuple[Sequence, Sequence]],
          rtol: float, atol: float) -> OpCase:
    return OpCase(id=case_id, op_type=op_type, expanded=_EXPANDED.sub("", case_id) != case_id,
                  model=model, rtol=rtol, atol=atol,
                  data_sets=tuple((tuple(map(_array, i)), tuple(map(_array, o)))
                                  for i, o in data_sets))


@functools.lru_cache(maxsize=1)
def _all_cases() -> tuple[OpCase, ...]:
    return tuple(_case(c.name, op, c.model, c.data_sets or (), c.rtol, c.atol)
                 for c, op in _raw_cases())


def collect_cases(ops: set[str] | None = None) -> list[OpCase]:
    """onnx's node test cases with tensor inputs and outputs, sorted by id,
    optionally only those of ``ops`` (op types as OpCase.op_type spells them)."""
    return [c for c in _all_cases() if ops is None or c.op_type in ops]


class CaseArtifact(ModelArtifactLike):
    """One case as a model artifact: its model written to ``directory`` on demand.

    The cases have fixed shapes and no batch axis; calibration samples are the
    case's own inputs, repeated.
    """

    def __init__(self, case: OpCase, directory: Path):
        graph = case.model.graph
        initialized = {t.name for t in graph.initializer}
        self.name = case.id
        self.input_names = tuple(i.name for i in graph.input if i.name not in initialized)
        self.output_names = tuple(o.name for o in graph.output)
        self._case = case
        self._path = directory / f"{case.id}.onnx"

    def onnx_path(self) -> PathLike[str]:
        if not self._path.exists():
            self._path.write_bytes(self._case.model.SerializeToString())
        return self._path

    def feeds(self, data_set: int) -> dict[str, np.ndarray]:
        return dict(zip(self.input_names, self._case.data_sets[data_set][0]))

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        sets = len(self._case.data_sets)
        return [self.feeds(k % sets) for k in range(count)] if sets else []


def compare_outputs(expected: Sequence[np.ndarray], actual: Mapping[str, Any],
                    names: Sequence[str], rtol: float, atol: float) -> str:
    """'' if ``actual`` matches ``expected`` (in ``names`` order), else what differs.

    Follows onnx's own backend test runner: shapes and dtypes must be equal,
    strings compare exactly, values with assert_allclose(rtol, atol), NaN equal
    to NaN; types numpy cannot compute with (bfloat16, float8, int4) compare
    as float32, bfloat16 with at least two ulps of rtol.
    """
    for name, want in zip(names, expected):
        if name not in actual:
            return f"output {name!r} missing (got {sorted(actual)})"
        got = np.asarray(actual[name])
        want = np.asarray(want)
        if got.shape != want.shape:
            return f"output {name!r}: shape {got.shape} != expected {want.shape}"
        try:
            if want.dtype == object:
                np.testing.assert_array_equal(got, want)
                continue
            if got.dtype != want.dtype:
                return f"output {name!r}: dtype {got.dtype} != expected {want.dtype}"
            tol = rtol
            if want.dtype.kind == "V":  # ml_dtypes: no arithmetic with Python floats
                if want.dtype.name == "bfloat16":
                    tol = max(rtol, 2 ** -6)
                got, want = got.astype(np.float32), want.astype(np.float32)
            np.testing.assert_allclose(got, want, rtol=tol, atol=atol)
        except AssertionError as e:
            detail = " ".join(str(e).split())
            return f"output {name!r}: {detail}"[:_REASON_CHARS]
    return ""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:_REASON_CHARS]


def run_case(backend: Backend, case: OpCase, precision: str = "fp32",
             options: Mapping[str, str] | None = None,
             on_stage: Callable[[str], None] | None = None) -> OpResult:
    """Compile and run one case on ``backend``; never raises for a backend failure.

    ``on_stage`` hears "compile" and "run" before each stage (run_isolated uses it
    to say where a crashed or hung worker was).
    """
    stage = on_stage or (lambda _stage: None)
    start = time.perf_counter()

    def result(outcome: str, reason: str = "") -> OpResult:
        return OpResult(case.id, case.op_type, outcome, reason, time.perf_counter() - start)

    with tempfile.TemporaryDirectory(prefix="xpuperf-op-") as tmp:
        artifact = CaseArtifact(case, Path(tmp))
        stage("compile")
        try:
            # No batch axis: the case's shapes are fixed, no batch size applies.
            compiled = backend.compile(artifact, precision, (), options or {})
        except Declined as e:
            return result("declined", _one_line(e))
        except CompileError as e:
            outcome = "conversion" if e.fallback_ops else "compilation"
            return result(outcome, _one_line(e))
        except Exception as e:  # noqa: BLE001 - a backend bug is still this case's failure
            return result("compilation", f"{type(e).__name__} (not a CompileError): "
                                         f"{_one_line(e)}")
        try:
            report = compiled.report
            off = report.nodes_total - report.nodes_native
            if report.fallback_ops or off > 0:
                return result("conversion", f"{off} of {report.nodes_total} node(s) ran off "
                                            f"the backend: {', '.join(report.fallback_ops)}")
            for k, (_inputs, expected) in enumerate(case.data_sets):
                stage("run")
                try:
                    outputs = compiled.run(artifact.feeds(k))
                except Exception as e:  # noqa: BLE001 - see above
                    return result("run", f"{type(e).__name__}: {_one_line(e)}")
                problem = compare_outputs(expected, outputs, artifact.output_names,
                                          case.rtol, case.atol)
                if problem:
                    return result("mismatch", problem)
        finally:
            compiled.close()
    return result("pass")


def load_backend(hardware: str) -> Backend:
    """A backend by registry name, or by "module:Class" for one outside the registry."""
    from backends.registry import BackendEntry, find

    entry = BackendEntry(hardware, hardware) if ":" in hardware else find(hardware)
    return entry.load()()


def write_cases(folder: Path) -> None:
    """Every case into ``folder`` in onnx's own layout (``<case>/model.onnx``,
    ``<case>/test_data_set_K/input_I.pb`` and ``output_I.pb``: TensorProtos) with
    ``index.json``: each case's op type, tolerances and data set sizes."""
    from onnx import TensorProto, numpy_helper

    def proto(value: Any) -> bytes:
        tensor = value if isinstance(value, TensorProto) else numpy_helper.from_array(np.asarray(value))
        return tensor.SerializeToString()

    index = {}
    for c, op in _raw_cases():
        sets = c.data_sets or ()
        for k, (inputs, outputs) in enumerate(sets):
            data = Path(folder) / c.name / f"test_data_set_{k}"
            data.mkdir(parents=True)
            for kind, values in (("input", inputs), ("output", outputs)):
                for i, value in enumerate(values):
                    (data / f"{kind}_{i}.pb").write_bytes(proto(value))
        (Path(folder) / c.name).mkdir(exist_ok=True)
        (Path(folder) / c.name / "model.onnx").write_bytes(c.model.SerializeToString())
        index[c.name] = {"op_type": op, "rtol": c.rtol, "atol": c.atol,
                         "sets": [[len(i), len(o)] for i, o in sets]}
    (Path(folder) / "index.json").write_text(json.dumps(index, sort_keys=True))


@functools.lru_cache(maxsize=None)  # one digest check a process (56 MB: about a second)
def case_store(cache_root: Path) -> Path:
    """The folder write_cases filled, kept in the cache under ``cache_root`` (one
    per onnx version, checked against its digest as every cache entry is).

    Building the cases imports onnx and runs its reference of every op, about 20 s,
    which neither collection nor a worker's start must pay: the store is built
    once, in a child process, and a worker reads only the cases it runs.
    """
    from importlib.metadata import version

    from xpuperf.cache import Cache

    def build(folder: Path) -> None:
        code = "import sys, xpuperf.conformance.opconformance as o; o.write_cases(sys.argv[1])"
        done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                              text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"writing onnx's node test cases failed: {done.stderr[-2000:]}")

    return Cache(cache_root).entry("opcases", f"onnx-{version('onnx')}", build)


@functools.lru_cache(maxsize=None)  # read once a process, not once a case
def _store_index(store: Path) -> dict[str, Any]:
    return json.loads((store / "index.json").read_text())


def case_index(cache_root: Path) -> dict[str, str]:
    """{case id: op type} of every case, without importing onnx here."""
    return {case_id: meta["op_type"] for case_id, meta in _store_index(case_store(cache_root)).items()}


def load_case(store: Path, case_id: str) -> OpCase:
    """One case of a case_store folder, as collect_cases gives it."""
    import onnx

    meta = _store_index(store)[case_id]
    folder = store / case_id

    def tensor(path: Path) -> Any:
        value = onnx.TensorProto()
        value.ParseFromString(path.read_bytes())
        return value

    sets = [tuple(tuple(tensor(folder / f"test_data_set_{k}" / f"{kind}_{i}.pb") for i in range(n))
                  for kind, n in (("input", n_in), ("output", n_out)))
            for k, (n_in, n_out) in enumerate(meta["sets"])]
    return _case(case_id, meta["op_type"], onnx.load_model_from_string(
        (folder / "model.onnx").read_bytes()), sets, meta["rtol"], meta["atol"])


class CaseHost:
    """The worker's side of IsolatedRunner (xpuperf.worker): the backend and
    onnx's cases; it says which stage each case is in, so that a crash or a hang
    is filed under that stage."""

    COMMANDS = ("run_case",)

    def __init__(self, note: Callable[[str], None], hardware: str, precision: str,
                 options: dict[str, str], store: str | None = None):
        self._note, self._precision, self._options = note, precision, options
        self._backend = load_backend(hardware)
        # From a case_store, each case as it is asked for; else all of them, built here.
        self._case: Callable[[str], OpCase] = functools.partial(load_case, Path(store)) \
            if store else {c.id: c for c in collect_cases()}.__getitem__

    def run_case(self, case_id: str) -> dict[str, Any]:
        result = run_case(self._backend, self._case(case_id), self._precision, self._options,
                          on_stage=lambda stage: self._note(_STAGE_NOTE[stage]))
        return asdict(result)

    def close(self) -> None:
        pass


class IsolatedRunner:
    """Runs cases on backend ``hardware`` (as for load_backend) in a worker process.

    A case that kills the worker or exceeds ``timeout_s`` fails at the stage it
    was in, and a new worker takes the next case. Close it (or use ``with``) to
    stop the worker. With ``cache_root`` a worker reads its cases from the
    case_store there, else it builds them all when it starts (about 20 s).
    """

    def __init__(self, hardware: str, precision: str = "fp32",
                 options: Mapping[str, str] | None = None, timeout_s: float = 120.0,
                 cache_root: Path | None = None):
        self.timeout_s = timeout_s
        store = str(case_store(cache_root)) if cache_root is not None else None
        self._worker = Worker("xpuperf.conformance.opconformance:CaseHost",
                              {"hardware": hardware, "precision": precision,
                               "options": dict(options or {}), "store": store},
                              name=f"op-conformance worker for {hardware}")

    def __enter__(self) -> "IsolatedRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, case_id: str, op_type: str) -> OpResult:
        try:
            return OpResult(**self._worker.call("run_case", self.timeout_s, case_id=case_id))
        except WorkerLost as e:
            if e.stage == "starting":
                raise RuntimeError(f"{self._worker.name} did not start: {e}") from None
            outcome = {note: _STAGE_OUTCOME[stage] for stage, note in _STAGE_NOTE.items()}
            return OpResult(case_id, op_type, outcome.get(e.stage, "compilation"), _one_line(e))

    def close(self) -> None:
        self._worker.close()
