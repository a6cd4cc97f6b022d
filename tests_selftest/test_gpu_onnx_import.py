"""The GPU backend's ONNX graph path (backends/gpu/onnx_import.py) on the CPU
(device=cpu): onnx's own node cases converted by onnx2torch and matched against
their expected outputs, an ONNX-only zoo entry against its reference, and an op
the converter cannot take counted as a coverage miss with the op named."""
from __future__ import annotations

import importlib.util
from pathlib import Path
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("onnx2torch") is None:  # importing it needs onnx_import's care
    pytest.skip("onnx2torch is not installed (pip install onnx2torch --no-deps)",
                allow_module_level=True)

from backends.base import CompileError  # noqa: E402
from backends.gpu import GpuBackend  # noqa: E402
from xpuperf.cache import Cache  # noqa: E402
from xpuperf.conformance import opconformance  # noqa: E402
from xpuperf.conformance.numerics import diff_stats  # noqa: E402
from xpuperf.models.artifact import ModelArtifact  # noqa: E402
from xpuperf.zoo import load_zoo  # noqa: E402
from tests_selftest.sessions import SHARED_CACHE  # noqa: E402

CPU = {"device": "cpu"}
ROOT = Path(__file__).resolve().parents[1]


def _case(case_id: str) -> opconformance.OpCase:
    return opconformance.load_case(opconformance.case_store(SHARED_CACHE), case_id)


# An elementwise op with broadcasting, a weight read as a constant, a reshape
# at opset 25 (onnx2torch knows Reshape to 14: a stand-in converter), a
# multi-output op, and Trilu (the converter this path adds).
@pytest.mark.parametrize("case_id", ["test_add_bcast", "test_gemm_default_no_bias",
                                     "test_reshape_reordered_all_dims", "test_split_equal_parts_1d_opset18",
                                     "test_triu_one_row", "test_softmax_example"])
def test_node_cases_convert_and_match(case_id: str) -> None:
    result = opconformance.run_case(GpuBackend(), _case(case_id), "fp32", CPU)
    assert (result.outcome, result.reason) == ("pass", "")


def test_a_stand_in_converter_is_named_in_the_report(tmp_path: Path) -> None:
    artifact = opconformance.CaseArtifact(_case("test_reshape_reordered_all_dims"), tmp_path)
    report = GpuBackend().compile(artifact, "fp32", (), CPU).report
    assert report.details["onnx_converter_stand_ins"] == ["Reshape-25 by Reshape-14"]
    assert report.details["onnx_nodes"] == 1 and report.nodes_total == report.nodes_native > 0


def _graph(tmp_path: Path) -> opconformance.CaseArtifact:
    """Relu, then Det (no onnx2torch converter), then Relu again."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Det", ["a"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    graph = helper.make_graph(nodes, "det", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2, 3, 3])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    x = np.random.default_rng(0).normal(size=(2, 3, 3)).astype(np.float32)
    case = opconformance.OpCase("det_between_relus", "Det", False, model,
                                (((x,), (np.maximum(np.linalg.det(np.maximum(x, 0)), 0),)),),
                                1e-3, 1e-7)
    return opconformance.CaseArtifact(case, tmp_path)


def test_an_op_it_cannot_take_is_a_counted_coverage_miss(tmp_path: Path) -> None:
    artifact = _graph(tmp_path)
    with pytest.raises(CompileError, match="cannot convert 1 of 3 ONNX node.*Det") as e:
        GpuBackend().compile(artifact, "fp32", (), CPU)
    assert (e.value.fallback_ops, e.value.nodes_total, e.value.nodes_native) == (["Det"], 3, 2)
    # The per-op item files it as a conversion failure naming the op, not a skip.
    result = opconformance.run_case(GpuBackend(), artifact._case, "fp32", CPU)
    assert result.outcome == "conversion" and "Det" in result.reason


def test_a_real_case_without_a_converter_is_a_conversion_failure() -> None:
    result = opconformance.run_case(GpuBackend(), _case("test_det_2d"), "fp32", CPU)
    assert result.outcome == "conversion" and "Det:" in result.reason


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnx_only_entry_agrees_with_its_reference(tmp_path: Path, precision: str) -> None:
    zoo = load_zoo(ROOT / "zoo.yaml", "smoke")
    spec = next(m for m in zoo.models if m.name == "vae-encoder-onnx")
    artifact = ModelArtifact(spec, Cache(tmp_path), zoo.path.parent, calibration=lambda n: [])
    assert artifact.torch_module() is None  # it reaches the backend as ONNX only
    compiled = GpuBackend().compile(artifact, precision, spec.batch_sizes, CPU)
    report = compiled.report
    assert report.status == "ok" and report.precision == precision
    assert report.details["onnx_nodes"] > 100 and report.nodes_total == report.nodes_native
    assert report.details.get("autocast") == (None if precision == "fp32" else "float16")
    feeds = {k: np.random.default_rng(1).normal(size=v.shape).astype(v.dtype)
             for k, v in artifact.example_feeds(spec.batch_sizes[-1]).items()}
    out, ref = compiled.run(feeds), artifact.reference(feeds)
    for name in artifact.output_names:
        assert out[name].dtype == ref[name].dtype == np.float32
        stats = diff_stats(ref[name], out[name])
        assert stats.cosine > (0.99999 if precision == "fp32" else 0.999), (name, stats)


def test_the_worker_keeps_a_misses_counts_in_the_failed_report() -> None:
    from xpuperf.worker.host import _coverage_of

    miss = CompileError("cannot convert Det", fallback_ops=["Det"], nodes_total=3,
                        nodes_native=2)
    assert _coverage_of(miss) == {"fallback_ops": ["Det"], "nodes_total": 3, "nodes_native": 2}
    assert _coverage_of(CompileError("the compiler crashed")) == {}
    assert _coverage_of(RuntimeError("not the backend's error")) == {}
