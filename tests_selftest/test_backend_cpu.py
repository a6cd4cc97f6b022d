"""The CPU (onnxruntime) backend on tiny models: its compile cache, and fp16 builds
that keep integer ids carried in float tensors exact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests_selftest.artifacts import FileArtifact, damage

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from backends.base import CompileError, Declined  # noqa: E402
from backends import hostcpu  # noqa: E402
from backends.cpu import CpuBackend  # noqa: E402

RNG = np.random.default_rng(3)
W = RNG.standard_normal((16, 8)).astype(np.float32)
# Rows of small integers: exact in fp16, so an fp16 build that gathers the right
# row returns exactly the fp32 result.
TABLE = (np.arange(10000 * 4).reshape(10000, 4) % 1000).astype(np.float32)
IDS = np.array([[3, 2047, 2049, 3001, 4097]], dtype=np.int64)



def _save(path: Path, nodes: list, inputs: list, outputs: list,
          initializers: dict[str, np.ndarray]) -> FileArtifact:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return FileArtifact(path, tuple(i.name for i in inputs), tuple(o.name for o in outputs))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> FileArtifact:
    """MatMul + Relu, with a dynamic batch axis."""
    return _save(tmp_path_factory.mktemp("mlp") / "mlp.onnx",
                 [helper.make_node("MatMul", ["x", "W"], ["m"]),
                  helper.make_node("Relu", ["m"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], {"W": W})


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_second_compile_loads_the_cached_model(mlp: FileArtifact, tmp_path: Path,
                                               precision: str) -> None:
    backend, x = CpuBackend(), RNG.standard_normal((4, 16)).astype(np.float32)
    cold = backend.compile(mlp, precision, (4,), {}, cache_dir=tmp_path)
    warm = backend.compile(mlp, precision, (4,), {}, cache_dir=tmp_path)
    print(f"{precision}: compile {cold.report.seconds:.4f}s, "
          f"cached load {warm.report.seconds:.4f}s")
    assert not cold.report.cached and warm.report.cached
    assert warm.report.seconds > 0
    for field in ("precision", "nodes_total", "nodes_native", "artifact_bytes"):
        assert getattr(warm.report, field) == getattr(cold.report, field), field
    assert warm.report.details["compile_seconds"] == cold.report.seconds
    np.testing.assert_array_equal(warm.run({"x": x})["y"], cold.run({"x": x})["y"])


@pytest.mark.parametrize("file, how", [("model.onnx", "truncated"), ("report.json", "truncated"),
                                       ("model.onnx", "missing")])
def test_unreadable_cache_entry_is_compiled_again(mlp: FileArtifact, tmp_path: Path,
                                                  file: str, how: str) -> None:
    backend = CpuBackend()
    backend.compile(mlp, "fp16", (1,), {}, cache_dir=tmp_path)
    damage(tmp_path / file, how)
    again = backend.compile(mlp, "fp16", (1,), {}, cache_dir=tmp_path)
    assert not again.report.cached and again.report.precision == "fp16"
    assert backend.compile(mlp, "fp16", (1,), {}, cache_dir=tmp_path).report.cached  # repaired


def test_no_cache_dir_writes_nothing(mlp: FileArtifact, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not CpuBackend().compile(mlp, "fp32", (1,), {}).report.cached
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def float_ids(tmp_path_factory: pytest.TempPathFactory) -> FileArtifact:
    """Ids fed as float32 and cast back to int64 for a Gather (a Keras export)."""
    return _save(tmp_path_factory.mktemp("float_ids") / "float_ids.onnx", [
        helper.make_node("Cast", ["ids"], ["ids_int"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "ids_int"], ["rows"], axis=0)],
        [helper.make_tensor_value_info("ids", TensorProto.FLOAT, ["batch", 5])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 5, 4])],
        {"table": TABLE})


@pytest.fixture(scope="module")
def strided_ids(tmp_path_factory: pytest.TempPathFactory) -> FileArtifact:
    """int64 ids cast to float and scaled by a stride (positions computed in float),
    then cast back for a Gather and returned with a trailing axis."""
    return _save(tmp_path_factory.mktemp("strided_ids") / "strided_ids.onnx", [
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "stride"], ["strided"]),
        helper.make_node("Unsqueeze", ["strided", "last"], ["positions"]),
        helper.make_node("Cast", ["strided"], ["strided_int"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "strided_int"], ["rows"], axis=0)],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 5])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 5, 4]),
         helper.make_tensor_value_info("positions", TensorProto.FLOAT, ["batch", 5, 1])],
        {"table": TABLE, "stride": np.array(2.0, np.float32), "last": np.array([2], np.int64)})


def _plain_fp16(artifact: FileArtifact, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the fp16 conversion alone gives (the build before integer nodes were kept)."""
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(artifact.onnx_path())), keep_io_types=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(artifact.output_names, session.run(list(artifact.output_names), feeds)))


@pytest.mark.parametrize("model, feeds", [
    ("float_ids", {"ids": IDS.astype(np.float32)}),
    ("strided_ids", {"ids": IDS}),
])
def test_fp16_keeps_integer_ids_exact(model: str, feeds: dict[str, np.ndarray],
                                      request: pytest.FixtureRequest) -> None:
    artifact = request.getfixturevalue(model)
    backend = CpuBackend()
    full = backend.compile(artifact, "fp32", (1,), {}).run(feeds)
    half = backend.compile(artifact, "fp16", (1,), {})
    assert half.report.precision == "fp16" and half.report.details["integer_nodes_kept_fp32"] > 0
    before = _plain_fp16(artifact, feeds)
    # fp16 holds integers exactly only up to 2048: ids or positions above were rounded.
    assert any(not np.array_equal(before[n], full[n]) for n in artifact.output_names)
    out = half.run(feeds)
    for name in artifact.output_names:
        np.testing.assert_array_equal(out[name], full[name])


def test_int8_scheme_follows_the_host_profile(mlp: FileArtifact,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Capped at AVX2 (no VNNI) the backend tries the schemes exact there and keeps
    the closer to fp32, saying why; the option overrides the choice; an unknown
    scheme is refused by name."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    details = CpuBackend().compile(mlp, "int8", (1,), {}).report.details
    cosines = details["int8_scheme_cosines"]
    assert set(cosines) == {"u8u8", "s8s8-w7"} and all(0.9 < c <= 1 for c in cosines.values())
    assert details["int8_scheme"] == max(cosines, key=cosines.__getitem__)
    assert details["int8_scheme_why"].startswith("no VNNI")
    assert details["cpu_capabilities"].endswith("(capped at AVX2 by ONEDNN_MAX_CPU_ISA)")
    assert "vnni" not in details["cpu_capabilities"]
    forced = CpuBackend().compile(mlp, "int8", (1,), {"int8_scheme": "s8s8"})
    assert forced.report.details["int8_scheme"] == "s8s8"
    with pytest.raises(CompileError, match="int8_scheme='s4s4': use one of s8s8, u8u8, s8s8-w7"):
        CpuBackend().compile(mlp, "int8", (1,), {"int8_scheme": "s4s4"})


def test_fp16_of_a_graph_without_fp16_kernels_reports_fp32(tmp_path: Path) -> None:
    """A scikit-learn pipeline's graph (ai.onnx.ml's Scaler and LinearRegressor,
    which have no fp16 kernel) converts to fp32 plus Casts: what ran is fp32, and
    the report says so (the contract kit's test_precision_really_used)."""
    ml = helper.make_opsetid("ai.onnx.ml", 3)
    graph = helper.make_graph(
        [helper.make_node("Scaler", ["x"], ["s"], domain="ai.onnx.ml", offset=[0.5] * 4,
                          scale=[2.0] * 4),
         helper.make_node("LinearRegressor", ["s"], ["y"], domain="ai.onnx.ml",
                          coefficients=[0.1, 0.2, 0.3, 0.4], intercepts=[0.7])],
        "pipeline", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])])
    path = tmp_path / "pipeline.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), ml],
                                ir_version=8), str(path))
    artifact = FileArtifact(path, ("x",), ("y",))
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    fp16 = CpuBackend().compile(artifact, "fp16", (3,), {})
    fp32 = CpuBackend().compile(artifact, "fp32", (3,), {})
    np.testing.assert_array_equal(fp16.run({"x": x})["y"], fp32.run({"x": x})["y"])
    assert (fp16.report.precision, fp16.report.details["fp16_nodes"]) == ("fp32", 0)


def test_fp16_that_ran_reports_fp16(mlp: FileArtifact) -> None:
    report = CpuBackend().compile(mlp, "fp16", (4,), {}).report
    assert report.precision == "fp16" and report.details["fp16_nodes"] == 2


class _OnnxTestModel(FileArtifact):
    """onnx's own pytorch-converted/test_Conv2d (opset 6, as a user's models-only
    zoo names it), calibrated on random inputs of its shape."""

    def __init__(self) -> None:
        data = Path(onnx.__file__).parent / "backend/test/data/pytorch-converted"
        super().__init__(data / "test_Conv2d" / "model.onnx", ("0",), ("3",))

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(0)
        return [{"0": rng.standard_normal((2, 3, 7, 5)).astype(np.float32)} for _ in range(count)]


@pytest.mark.parametrize("scheme", ["s8s8", "u8u8", "s8s8-w7"])  # VNNI host's, and the others'
def test_int8_of_an_old_opset_model_is_valid_on_every_host_profile(scheme: str) -> None:
    """Per-channel DequantizeLinear (axis) exists from opset 13: an opset 6 model
    is converted up before quantizing, so its int8 graph loads whichever scheme
    the host profile picks, and agrees with fp32."""
    model = _OnnxTestModel()
    assert model.onnx_path() and onnx.load(str(model.onnx_path())).opset_import[0].version < 13
    x = model.calibration_feeds(1)[0]
    int8 = CpuBackend().compile(model, "int8", (2,), {"int8_scheme": scheme})
    fp32 = CpuBackend().compile(model, "fp32", (2,), {})
    assert int8.report.precision == "int8" and int8.report.details["quantized_nodes"] > 0
    a, b = (c.run(x)["3"].ravel().astype(np.float64) for c in (int8, fp32))
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    print(f"{scheme}: cosine to fp32 {cosine:.5f}")
    if scheme != "s8s8" or hostcpu.capabilities()["vnni"]:  # s8s8 saturates without VNNI
        assert cosine > 0.99


def test_int8_of_an_old_opset_model_onnx_cannot_convert_is_declined(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "old",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
    path = tmp_path / "old.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)]), str(path))
    with pytest.raises(Declined, match=r"int8: the model is opset 6, per-channel int8 needs "
                                       r"opset 13, and onnx's version converter could not "
                                       r"convert it: .*NoSuchOp"):
        CpuBackend().compile(FileArtifact(path), "int8", (1,), {})
