"""The TVM and OpenVINO backends on a tiny model: numerics, report fields, precision
honesty, errors, caching, and TVM's onnxruntime partitioning. Each backend's tests
skip when its SDK is not installed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backends.base import Backend, CompileError
from tests_selftest.artifacts import FileArtifact, damage

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(7)
W = RNG.standard_normal((16, 8)).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)
CELU_ALPHA = 1.0



def _save(path: Path, nodes: list, name: str) -> FileArtifact:
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return FileArtifact(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> FileArtifact:
    """MatMul + Add + Relu with a dynamic batch axis."""
    return _save(tmp_path_factory.mktemp("tiny") / "tiny.onnx", [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Add", ["m", "B"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"])], "tiny")


def tiny_reference(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ W + B, 0)


def batch(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)


@pytest.fixture(params=["TVM", "OPENVINO"])
def backend(request: pytest.FixtureRequest) -> Backend:
    pytest.importorskip({"TVM": "tvm", "OPENVINO": "openvino"}[request.param])
    from backends.registry import find

    return find(request.param).load()()


def test_fp32_matches_numpy_at_every_batch_size(backend: Backend, tiny: FileArtifact) -> None:
    compiled = backend.compile(tiny, "fp32", (1, 4), {})
    try:
        # 3: OpenVINO's batch axis is dynamic; TVM builds the listed sizes only.
        for n in (1, 4) if backend.name == "TVM" else (1, 4, 3):
            out = compiled.run({"x": batch(n)})
            assert set(out) == {"y"}
            np.testing.assert_allclose(out["y"], tiny_reference(batch(n)), rtol=1e-5, atol=1e-5)
        r = compiled.report
        assert r.status == "ok" and r.seconds > 0 and r.precision == "fp32"
        assert (r.nodes_total, r.nodes_native, r.fallback_ops) == (3, 3, [])
        # TVM exports its libraries only into a cache; OpenVINO's blob is in memory.
        assert (r.artifact_bytes == 0) == (backend.name == "TVM") and not r.cached
    finally:
        compiled.close()


def test_reduced_precision_changes_numerics_within_tolerance(backend: Backend,
                                                            tiny: FileArtifact) -> None:
    # TVM offers fp16; OpenVINO's CPU plugin offers bf16 (fp16 only on CPUs with it).
    reduced = "fp16" if "fp16" in backend.precisions() else "bf16"
    if reduced not in backend.precisions():
        pytest.skip(f"{backend.name} offers neither fp16 nor bf16 here")
    x = batch(8)
    full = backend.compile(tiny, "fp32", (8,), {}).run({"x": x})["y"]
    compiled = backend.compile(tiny, reduced, (8,), {})
    assert compiled.report.precision == reduced
    low = compiled.run({"x": x})["y"]
    assert low.dtype == np.float32  # model outputs stay fp32
    assert not np.array_equal(low, full), f"{reduced} did not change a single bit"
    np.testing.assert_allclose(low, full, rtol=5e-2, atol=5e-2)


def test_invalid_model_raises_compile_error(backend: Backend, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(CompileError, match=r"garbage\.onnx.*ONNX|ONNX.*garbage\.onnx"):
        backend.compile(FileArtifact(bad), "fp32", (1,), {})


def test_unknown_option_is_named(backend: Backend, tiny: FileArtifact) -> None:
    with pytest.raises(CompileError, match="unknown option.*bogus"):
        backend.compile(tiny, "fp32", (1,), {"bogus": "1"})


# --- OpenVINO -------------------------------------------------------------------------

@pytest.fixture
def openvino_backend() -> Backend:
    pytest.importorskip("openvino")
    from backends.openvino import OpenVinoBackend

    return OpenVinoBackend()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_second_compile_imports_the_cached_model(openvino_backend: Backend,
                                                          tiny: FileArtifact, tmp_path: Path,
                                                          precision: str) -> None:
    if precision == "int8":
        pytest.importorskip("nncf")
    options = {"calibration_samples": "8"} if precision == "int8" else {}
    cold = openvino_backend.compile(tiny, precision, (1,), options, cache_dir=tmp_path)
    warm = openvino_backend.compile(tiny, precision, (1,), options, cache_dir=tmp_path)
    print(f"{precision}: compile {cold.report.seconds:.4f}s, cached import {warm.report.seconds:.4f}s")
    assert not cold.report.cached and warm.report.cached and warm.report.seconds > 0
    for field in ("precision", "nodes_total", "nodes_native", "artifact_bytes"):
        assert getattr(warm.report, field) == getattr(cold.report, field), field
    assert warm.report.details["int8_layers"] == cold.report.details["int8_layers"]
    assert warm.report.details["compile_seconds"] == cold.report.seconds
    x = batch(3)  # the imported model keeps the dynamic batch axis
    np.testing.assert_array_equal(warm.run({"x": x})["y"], cold.run({"x": x})["y"])


@pytest.mark.parametrize("file, how", [("model.blob", "truncated"), ("report.json", "truncated"),
                                       ("model.blob", "missing")])
def test_openvino_unreadable_cache_entry_is_compiled_again(openvino_backend: Backend,
                                                           tiny: FileArtifact, tmp_path: Path,
                                                           file: str, how: str) -> None:
    openvino_backend.compile(tiny, "fp32", (1,), {}, cache_dir=tmp_path)
    damage(tmp_path / file, how)
    again = openvino_backend.compile(tiny, "fp32", (1,), {}, cache_dir=tmp_path)
    assert not again.report.cached and again.report.precision == "fp32"
    np.testing.assert_allclose(again.run({"x": batch(2)})["y"], tiny_reference(batch(2)),
                               rtol=1e-5, atol=1e-5)
    assert openvino_backend.compile(tiny, "fp32", (1,), {}, cache_dir=tmp_path).report.cached


def test_openvino_reports_the_precision_it_really_uses(openvino_backend: Backend,
                                                       tiny: FileArtifact) -> None:
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    report = openvino_backend.compile(tiny, "fp16", (1,), {}).report
    assert report.details["requested_precision"] == "fp16"
    if "FP16" not in capabilities:
        assert "fp16" not in openvino_backend.precisions()
        assert report.precision != "fp16"  # the plugin fell back; the report says to what
    # The option overrides the hint; the report follows the compiled model, not the ask.
    forced = openvino_backend.compile(tiny, "bf16", (1,), {"precision_hint": "f32"}).report
    assert forced.precision == "fp32"


def test_openvino_int8_quantizes_with_nncf(openvino_backend: Backend, tiny: FileArtifact) -> None:
    pytest.importorskip("nncf")
    compiled = openvino_backend.compile(tiny, "int8", (1,), {"calibration_samples": "32"})
    assert compiled.report.precision == "int8"
    assert compiled.report.details["int8_layers"] > 0
    x = batch(4)
    np.testing.assert_allclose(compiled.run({"x": x})["y"], tiny_reference(x), rtol=0.1, atol=0.2)


def test_openvino_int8_keeps_the_output_tail_fp32(tmp_path: Path) -> None:
    """Two MatMul branches summed before a Sigmoid (wide & deep): the sum and the
    Sigmoid are the tail that int8 leaves in fp32, the MatMuls are not."""
    ov = pytest.importorskip("openvino")
    from backends.openvino import _output_tail

    graph = helper.make_graph([
        helper.make_node("MatMul", ["x", "W"], ["wide"], name="wide"),
        helper.make_node("MatMul", ["x", "W"], ["deep"], name="deep"),
        helper.make_node("Add", ["wide", "deep"], ["logit"], name="sum"),
        helper.make_node("Sigmoid", ["logit"], ["y"], name="sigmoid")], "widedeep",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(W, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "widedeep.onnx"))
    ov_model = ov.Core().read_model(str(tmp_path / "widedeep.onnx"))
    types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ordered_ops()}
    assert sorted(types[name] for name in _output_tail(ov_model)) == ["Add", "Sigmoid"]


def test_openvino_unconvertible_op_is_named(openvino_backend: Backend, tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("FooBar", ["x"], ["y"], domain="vendor.test")], "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("vendor.test", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    with pytest.raises(CompileError, match="vendor.test.FooBar") as info:
        openvino_backend.compile(FileArtifact(tmp_path / "custom.onnx"), "fp32", (1,), {})
    assert info.value.fallback_ops == ["vendor.test.FooBar"]


# --- TVM ------------------------------------------------------------------------------

@pytest.fixture
def tvm_backend() -> Backend:
    pytest.importorskip("tvm")
    from backends.tvm import TvmBackend

    return TvmBackend()


@pytest.fixture(scope="module")
def with_celu(tmp_path_factory: pytest.TempPathFactory) -> FileArtifact:
    """MatMul, then Celu (no Relax converter), then Add + Relu."""
    return _save(tmp_path_factory.mktemp("celu") / "celu.onnx", [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Celu", ["m"], ["c"], alpha=CELU_ALPHA),
        helper.make_node("Add", ["c", "B"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"])], "celu")


def test_tvm_runs_unconvertible_ops_on_onnxruntime(tvm_backend: Backend,
                                                   with_celu: FileArtifact) -> None:
    pytest.importorskip("onnxruntime")
    compiled = tvm_backend.compile(with_celu, "fp32", (5,), {})
    r = compiled.report
    assert (r.nodes_total, r.nodes_native, r.fallback_ops) == (4, 3, ["Celu"])
    assert r.details["segments"] == [["tvm", 1], ["onnxruntime", 1], ["tvm", 2]]
    x = batch(5)
    m = x @ W
    celu = np.maximum(m, 0) + np.minimum(0, CELU_ALPHA * (np.exp(m / CELU_ALPHA) - 1))
    np.testing.assert_allclose(compiled.run({"x": x})["y"], np.maximum(celu + B, 0),
                               rtol=1e-5, atol=1e-5)


def test_tvm_without_fallback_names_the_ops(tvm_backend: Backend, with_celu: FileArtifact) -> None:
    with pytest.raises(CompileError, match="cannot convert Celu") as info:
        tvm_backend.compile(with_celu, "fp32", (1,), {"fallback": "none"})
    assert info.value.fallback_ops == ["Celu"]


def test_tvm_declines_int8_and_says_why(tvm_backend: Backend, tiny: FileArtifact) -> None:
    assert "int8" not in tvm_backend.precisions()
    assert "int8" in tvm_backend.info()
    with pytest.raises(CompileError, match="int8.*quantize/dequantize"):
        tvm_backend.compile(tiny, "int8", (1,), {})


def test_tvm_options_reach_the_build(tvm_backend: Backend, tiny: FileArtifact) -> None:
    compiled = tvm_backend.compile(tiny, "fp32", (2,), {
        "opt_level": "2", "target": '{"kind": "llvm", "mcpu": "x86-64"}'})
    assert compiled.report.details["opt_level"] == 2
    assert '"mcpu":"x86-64"' in compiled.report.details["target"].replace(" ", "")
    np.testing.assert_allclose(compiled.run({"x": batch(2)})["y"], tiny_reference(batch(2)),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(CompileError, match="opt_level"):
        tvm_backend.compile(tiny, "fp32", (1,), {"opt_level": "fast"})
    with pytest.raises(CompileError, match="schedule must be one of loops, none"):
        tvm_backend.compile(tiny, "fp32", (1,), {"schedule": "tuned"})


def test_tvm_loop_schedule_keeps_the_results_of_the_unscheduled_build(
        tvm_backend: Backend, tmp_path: Path) -> None:
    """Each branch of backends/tvm/schedule.py's rule: the MatMul (its output column
    moves inside the reduction), the softmax's max and sum over 8 (short: the row
    axis moves inside too), the max over x's 16 (a long row: kept in order) and
    the elementwise ops. Only spatial loops move, so the sums are the same."""
    artifact = _save(tmp_path / "softmax.onnx", [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Add", ["m", "B"], ["a"]),
        helper.make_node("Softmax", ["a"], ["s"], axis=-1),
        helper.make_node("ReduceMax", ["x"], ["top"], keepdims=1, axes=[1]),
        helper.make_node("Add", ["s", "top"], ["y"])], "softmax")
    x = batch(4)
    runs = {}
    for schedule in ("loops", "none"):
        compiled = tvm_backend.compile(artifact, "fp32", (4,), {"schedule": schedule})
        runs[schedule] = compiled.run({"x": x})["y"]
        scheduled, of, kernels = compiled.report.details["kernels_scheduled"].split()
        assert (of, compiled.report.details["schedule"]) == ("of", schedule)
        assert int(scheduled) == (int(kernels) if schedule == "loops" else 0) and int(kernels) > 1
    np.testing.assert_array_equal(runs["loops"], runs["none"])
    logits = x @ W + B
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(runs["loops"], expected / expected.sum(1, keepdims=True)
                               + x.max(1, keepdims=True), rtol=1e-5, atol=1e-6)


def _int64_constant(name: str, values: object) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name],
                            value=numpy_helper.from_array(np.array(values, np.int64)))


@pytest.fixture(scope="module")
def shape_arithmetic(tmp_path_factory: pytest.TempPathFactory) -> FileArtifact:
    """The exporters' batch-size arithmetic (Shape -> Gather -> Concat -> Reshape) and a
    ConstantOfShape of an empty shape, which Relax's frontend fails on unless folded."""
    return _save(tmp_path_factory.mktemp("shapes") / "shapes.onnx", [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Shape", ["m"], ["shape"]),
        _int64_constant("zero", 0), _int64_constant("axes", [0]),
        _int64_constant("split", [2, 4]), _int64_constant("flat", [8]),
        _int64_constant("empty", np.zeros(0, np.int64)),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "split"], ["shape3"], axis=0),
        helper.make_node("Concat", ["batch1", "flat"], ["shape2"], axis=0),
        helper.make_node("Reshape", ["m", "shape3"], ["r"]),
        helper.make_node("ConstantOfShape", ["empty"], ["two"],
                         value=numpy_helper.from_array(np.array([2.0], np.float32))),
        helper.make_node("Mul", ["r", "two"], ["doubled"]),
        helper.make_node("Reshape", ["doubled", "shape2"], ["flat2"]),
        helper.make_node("Add", ["flat2", "B"], ["y"])], "shapes")


def test_tvm_builds_one_static_executable_per_batch_size(tvm_backend: Backend,
                                                         shape_arithmetic: FileArtifact) -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(shape_arithmetic.onnx_path()),
                                   providers=["CPUExecutionProvider"])
    compiled = tvm_backend.compile(shape_arithmetic, "fp32", (2, 3), {})
    r = compiled.report
    assert r.nodes_native == r.nodes_total == 16 and r.fallback_ops == []
    assert r.details["folded_nodes"] > 0  # the shape chain became constants
    for n in (2, 3):
        x = batch(n)
        np.testing.assert_allclose(compiled.run({"x": x})["y"], session.run(["y"], {"x": x})[0],
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"batch size 4.*compiled for batch sizes 2, 3"):
        compiled.run({"x": batch(4)})


def test_tvm_cache_hit_loads_instead_of_compiling(tvm_backend: Backend, with_celu: FileArtifact,
                                                  tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")  # the cached entry holds an onnxruntime segment too
    cold = tvm_backend.compile(with_celu, "fp32", (1, 4), {}, cache_dir=tmp_path)
    warm = tvm_backend.compile(with_celu, "fp32", (1, 4), {}, cache_dir=tmp_path)
    print(f"TVM compile: cold {cold.report.seconds:.3f} s, cached {warm.report.seconds:.3f} s")
    assert not cold.report.cached and warm.report.cached and cold.report.artifact_bytes > 0
    for field in ("precision", "nodes_total", "nodes_native", "fallback_ops", "artifact_bytes"):
        assert getattr(warm.report, field) == getattr(cold.report, field), field
    for n in (1, 4):
        x = batch(n)
        np.testing.assert_array_equal(warm.run({"x": x})["y"], cold.run({"x": x})["y"])


def test_tvm_corrupt_cache_entry_compiles_again(tvm_backend: Backend, tiny: FileArtifact,
                                                tmp_path: Path) -> None:
    tvm_backend.compile(tiny, "fp32", (2,), {}, cache_dir=tmp_path)
    damage(next(tmp_path.glob("*.so")), "truncated")
    again = tvm_backend.compile(tiny, "fp32", (2,), {}, cache_dir=tmp_path)
    assert not again.report.cached
    np.testing.assert_allclose(again.run({"x": batch(2)})["y"], tiny_reference(batch(2)),
                               rtol=1e-5, atol=1e-5)
    assert tvm_backend.compile(tiny, "fp32", (2,), {}, cache_dir=tmp_path).report.cached


def test_tvm_fp16_runs_through_a_pad(tvm_backend: Backend, tmp_path: Path) -> None:
    """The frontend emits Pad as a call_tir, which ToMixedPrecision fails on when an
    fp16 tensor reaches it (the backend puts an astype in between)."""
    artifact = _save(tmp_path / "pad.onnx", [
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Relu", ["m"], ["r"]),
        _int64_constant("pads", [0, 1, 0, 1]), _int64_constant("starts", [1]),
        _int64_constant("ends", [9]), _int64_constant("axes", [1]),
        helper.make_node("Pad", ["r", "pads"], ["padded"]),
        helper.make_node("Slice", ["padded", "starts", "ends", "axes"], ["s"]),
        helper.make_node("Add", ["s", "B"], ["y"])], "pad")
    compiled = tvm_backend.compile(artifact, "fp16", (3,), {})
    assert compiled.report.precision == "fp16"
    x = batch(3)
    np.testing.assert_allclose(compiled.run({"x": x})["y"], np.maximum(x @ W, 0) + B,
                               rtol=5e-2, atol=5e-2)
