"""The TVM and OpenVINO backends on a tiny model: numerics, report fields, precision
honesty, errors, caching, and TVM's onnxruntime partitioning. Each backend's tests
skip when its SDK is not installed."""
from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pytest

from backends.base import Backend, CompileError, ModelArtifactLike

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(7)
W = RNG.standard_normal((16, 8)).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)
CELU_ALPHA = 1.0


class FileArtifact(ModelArtifactLike):
    def __init__(self, path: Path, inputs: tuple[str, ...] = ("x",),
                 outputs: tuple[str, ...] = ("y",)):
        self.name, self._path = path.stem, path
        self.input_names, self.output_names = inputs, outputs

    def onnx_path(self) -> PathLike[str]:
        return self._path

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(0)
        return [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(count)]


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
        for n in (1, 4, 3):  # 3: the batch axis is dynamic, not a list of compiled sizes
            out = compiled.run({"x": batch(n)})
            assert set(out) == {"y"}
            np.testing.assert_allclose(out["y"], tiny_reference(batch(n)), rtol=1e-5, atol=1e-5)
        r = compiled.report
        assert r.status == "ok" and r.seconds > 0 and r.precision == "fp32"
        assert (r.nodes_total, r.nodes_native, r.fallback_ops) == (3, 3, [])
        assert r.artifact_bytes > 0 and not r.cached
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


def test_openvino_cache_hit_is_reported_as_cached(openvino_backend: Backend, tiny: FileArtifact,
                                                  tmp_path: Path) -> None:
    options = {"cache_dir": str(tmp_path / "ov-cache")}
    first = openvino_backend.compile(tiny, "fp32", (1,), options)
    second = openvino_backend.compile(tiny, "fp32", (1,), options)
    assert not first.report.cached and second.report.cached
    x = batch(2)
    np.testing.assert_array_equal(first.run({"x": x})["y"], second.run({"x": x})["y"])


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
    compiled = tvm_backend.compile(with_celu, "fp32", (1,), {})
    r = compiled.report
    assert (r.nodes_total, r.nodes_native, r.fallback_ops) == (4, 3, ["Celu"])
    assert r.details["segments"] == [("tvm", 1), ("onnxruntime", 1), ("tvm", 2)]
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
    compiled = tvm_backend.compile(tiny, "fp32", (1,), {
        "opt_level": "2", "target": '{"kind": "llvm", "mcpu": "x86-64"}'})
    assert compiled.report.details["opt_level"] == 2
    assert '"mcpu":"x86-64"' in compiled.report.details["target"].replace(" ", "")
    np.testing.assert_allclose(compiled.run({"x": batch(2)})["y"], tiny_reference(batch(2)),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(CompileError, match="opt_level"):
        tvm_backend.compile(tiny, "fp32", (1,), {"opt_level": "fast"})
