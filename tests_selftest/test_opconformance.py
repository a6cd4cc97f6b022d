"""xpuperf.conformance.opconformance: collecting onnx's node cases, classifying each outcome,
isolating crashes, and checking results against an expected-failures file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from backends.base import Compiled, CompileError, CompileReport  # noqa: E402
from backends.cpu import CpuBackend  # noqa: E402
from xpuperf.conformance.opconformance import (  # noqa: E402
    IsolatedRunner, OpCase, case_index, case_store, collect_cases, compare_outputs, load_case,
    run_case)
from tests_selftest.sessions import SHARED_CACHE  # noqa: E402


@pytest.fixture(scope="module")
def add_cases() -> dict[str, OpCase]:
    return {c.id: c for c in collect_cases({"Add"})}


@pytest.fixture(scope="module")
def add(add_cases: dict[str, OpCase]) -> OpCase:
    return add_cases["test_add"]


class _Perturbed(Compiled):
    def __init__(self, inner: Compiled):
        self._inner, self.report = inner, inner.report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v + 1e-2 for k, v in self._inner.run(feeds).items()}


class PerturbingBackend(CpuBackend):
    """Compiles like the CPU backend, then shifts every output by 1e-2."""

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        return _Perturbed(super().compile(artifact, precision, batch_sizes, options, cache_dir))


class UnconvertibleBackend(CpuBackend):
    """A frontend that names the op it cannot convert, as TVM's and OpenVINO's do."""

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        err = CompileError("frontend has no converter for Add")
        err.fallback_ops = ["Add"]
        raise err


class FallingBackBackend(CpuBackend):
    """Compiles, but reports the graph as run off the device (a partitioned fallback)."""

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        compiled = super().compile(artifact, precision, batch_sizes, options, cache_dir)
        compiled.report = CompileReport(status="ok", seconds=0.1, precision="fp32",
                                        nodes_total=1, nodes_native=0, fallback_ops=["Add"])
        return compiled


class BrokenCompilerBackend(CpuBackend):
    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        raise CompileError("code generation failed")


class _Raising(Compiled):
    report = CompileReport(status="ok", seconds=0.1, precision="fp32", nodes_total=1,
                           nodes_native=1)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("device lost")


class RunFailsBackend(CpuBackend):
    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        return _Raising()


class CrashingBackend(CpuBackend):
    """Kills its process while compiling test_add_bcast, as a segfaulting SDK would."""

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        if artifact.name == "test_add_bcast":
            os._exit(11)
        return super().compile(artifact, precision, batch_sizes, options, cache_dir)


def test_collects_onnx_node_cases_with_tensor_io() -> None:
    cases = collect_cases()
    assert len(cases) > 1500
    assert len({c.id for c in cases}) == len(cases)
    by_id = {c.id: c for c in cases}
    assert by_id["test_add_bcast"].op_type == "Add"
    # An expanded case is filed under the op whose function body it runs.
    expanded = by_id["test_layer_normalization_2d_axis0_expanded"]
    assert expanded.op_type == "LayerNormalization" and expanded.expanded
    assert "test_identity_sequence" not in by_id  # sequence-typed: outside the contract
    assert all(isinstance(a, np.ndarray) for c in cases for i, o in c.data_sets for a in i + o)


def test_a_correct_backend_passes(add: OpCase) -> None:
    result = run_case(CpuBackend(), add)
    assert (result.case_id, result.op_type, result.outcome) == ("test_add", "Add", "pass")
    assert result.passed and result.seconds > 0


@pytest.mark.parametrize("backend, outcome, reason", [
    (PerturbingBackend(), "mismatch", "output 'sum': Not equal to tolerance"),
    (UnconvertibleBackend(), "conversion", "no converter for Add"),
    (FallingBackBackend(), "conversion", "1 of 1 node(s) ran off the backend: Add"),
    (BrokenCompilerBackend(), "compilation", "code generation failed"),
    (RunFailsBackend(), "run", "RuntimeError: device lost"),
], ids=["mismatch", "conversion-error", "conversion-fallback", "compilation", "run"])
def test_failures_are_classified(add: OpCase, backend: CpuBackend, outcome: str,
                                 reason: str) -> None:
    result = run_case(backend, add)
    assert result.outcome == outcome
    assert reason in result.reason


def test_a_real_frontend_gap_is_a_conversion_failure() -> None:
    pytest.importorskip("tvm")
    from backends.tvm import TvmBackend

    celu = {c.id: c for c in collect_cases({"Celu"})}["test_celu"]
    result = run_case(TvmBackend(), celu)
    assert result.outcome == "conversion" and "Celu" in result.reason


def test_compare_outputs_follows_onnx_runner_semantics() -> None:
    want = [np.array([1.0, np.nan], dtype=np.float32)]
    assert compare_outputs(want, {"y": want[0].copy()}, ["y"], 1e-3, 1e-7) == ""
    assert "dtype float64" in compare_outputs(want, {"y": want[0].astype(np.float64)},
                                              ["y"], 1e-3, 1e-7)
    assert "shape (1, 2)" in compare_outputs(want, {"y": want[0][None]}, ["y"], 1e-3, 1e-7)
    assert "missing" in compare_outputs(want, {"z": want[0]}, ["y"], 1e-3, 1e-7)
    assert compare_outputs(want, {"y": want[0] * (1 + 5e-4)}, ["y"], 1e-3, 1e-7) == ""


def test_isolation_survives_a_crashing_case() -> None:
    with IsolatedRunner(f"{__name__}:CrashingBackend", timeout_s=120,
                        cache_root=SHARED_CACHE) as runner:
        results = [runner.run(case, "Add") for case in ("test_add", "test_add_bcast", "test_add_uint8")]
    assert [(r.case_id, r.outcome) for r in results] == [
        ("test_add", "pass"), ("test_add_bcast", "compilation"), ("test_add_uint8", "pass")]
    assert "worker process exited with code 11 while compiling the case" in results[1].reason


def test_the_case_store_holds_the_cases_as_onnx_builds_them() -> None:
    """What a worker reads from the store (each case's model, tolerances, op type
    and data, TensorProto-held types such as float8 and int4 included) is what
    collect_cases builds: checked on the first case of each signature of dtypes."""
    store = case_store(SHARED_CACHE)
    assert case_index(SHARED_CACHE) == {c.id: c.op_type for c in collect_cases()}
    seen = set()
    for case in collect_cases():
        arrays = [a for inputs, outputs in case.data_sets for a in (*inputs, *outputs)]
        signature = tuple(a.dtype.str for a in arrays)
        if signature in seen:
            continue
        seen.add(signature)
        stored = load_case(store, case.id)
        assert (stored.op_type, stored.expanded, stored.rtol, stored.atol) == \
            (case.op_type, case.expanded, case.rtol, case.atol)
        assert stored.model.SerializeToString() == case.model.SerializeToString()
        got = [a for inputs, outputs in stored.data_sets for a in (*inputs, *outputs)]
        assert [(a.dtype, a.shape) for a in got] == [(a.dtype, a.shape) for a in arrays], case.id
        assert all(a.tolist() == b.tolist() if a.dtype == object else a.tobytes() == b.tobytes()
                   for a, b in zip(got, arrays)), case.id
    assert len(seen) > 20  # the variety is there: floats, ints, bool, strings, float8, int4


def test_a_store_is_built_once_per_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next process to ask finds the store: no child builds it again."""
    built = case_store(SHARED_CACHE)
    index_written = (built / "index.json").stat().st_mtime_ns
    case_store.cache_clear()  # as a new process would
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("the store was built again"))
    assert case_store(SHARED_CACHE) == built
    assert (built / "index.json").stat().st_mtime_ns == index_written
