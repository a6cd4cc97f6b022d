"""What a model file may hold beyond batched float tensors: outputs without a batch
axis (declared or read from the file, kept whole per batch, checked whole), float64
and string inputs, a float range, elementwise rtol/atol, an OpenVINO input the
frontend renamed, and the compile reports' word on a fixed batch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpuperf.batches import run_in_batches
from xpuperf.datasets import fake, golden
from xpuperf.conformance.numerics import check_close
from xpuperf.worker.contract import ContractError, check_outputs
from xpuperf.zoo import TensorSpec, ZooError, load_zoo

ROOT = Path(__file__).resolve().parents[1]


def onnx_data() -> Path:
    onnx = pytest.importorskip("onnx")
    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def save(path: Path, nodes: list, inputs: list, outputs: list, opset: int = 17) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info(*t) for t in inputs],
                              [helper.make_tensor_value_info(*t) for t in outputs])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def sum_model(path: Path, batch: int | str = "N") -> Path:
    """y = relu(x) [batch, 3] and total = sum(x) [] (no batch axis)."""
    from onnx import TensorProto, helper

    return save(path, [helper.make_node("Relu", ["x"], ["y"]),
                       helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)],
                [("x", TensorProto.FLOAT, [batch, 3])],
                [("y", TensorProto.FLOAT, [batch, 3]), ("total", TensorProto.FLOAT, [])])


# --------------------------------------------------------------------------- outputs without a batch axis

def test_a_batch_free_output_is_kept_whole_once_per_batch() -> None:
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    ds = fake.FakeDataset({"x": x}, ())
    out = run_in_batches(lambda f: {"y": f["x"] * 2, "total": f["x"].sum()}, ds, 2, {"total"})
    np.testing.assert_array_equal(out["y"], x * 2)  # rows: padding cut, batches joined
    # three batches, the last padded with its final sample, each summed whole
    np.testing.assert_array_equal(out["total"], [x[:2].sum(), x[2:4].sum(), x[4].sum() * 2])


def test_the_contract_checks_a_batch_free_output_whole() -> None:
    declared = (TensorSpec("y", (-1, 3), "float32", "y"), TensorSpec("t", (2,), "float32", "t", batched=False))
    good = {"y": np.zeros((4, 3), np.float32), "t": np.zeros(2, np.float32)}
    assert check_outputs(good, declared, 4) is good
    with pytest.raises(ContractError, match=r"output 't': shape \(4, 2\); the zoo declares \(2,\) "
                                            r"\(the output has no batch axis\)"):
        check_outputs({**good, "t": np.zeros((4, 2), np.float32)}, declared, 4)


def test_a_file_output_without_a_batch_axis_is_read_and_checked(tmp_path: Path) -> None:
    sum_model(tmp_path / "m.onnx")
    zoo = tmp_path / "mine.yaml"
    zoo.write_text("models:\n  m:\n    model: m.onnx\n")
    (m,) = load_zoo(zoo, "smoke").models
    assert [(t.name, t.batched) for t in m.outputs] == [("y", True), ("total", False)]
    zoo.write_text("models:\n  m:\n    model: m.onnx\n    outputs: [y, total]\n")
    with pytest.raises(ZooError, match=r"mine.yaml:4: models.m.outputs\[1\]: the file's output total "
                                       r"float32 \[\] has no batch axis: say batched: false"):
        load_zoo(zoo, "smoke")


def test_golden_batch_free_outputs_are_expected_once_per_set(tmp_path: Path) -> None:
    from onnx import numpy_helper

    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    specs = (TensorSpec("x", (-1, 3), "float32", "x"),), (
        TensorSpec("y", (), "float32", "y"), TensorSpec("total", (), "float32", "total", batched=False))
    for n, rows in enumerate((x[:2], x[2:])):
        d = tmp_path / f"test_data_set_{n}"
        d.mkdir()
        for name, value in (("input_0", rows), ("output_0", rows), ("output_1", rows.sum())):
            (d / f"{name}.pb").write_bytes(numpy_helper.from_array(np.asarray(value)).SerializeToString())
    ds = golden.load(None, *specs, {"path": str(tmp_path)})
    np.testing.assert_array_equal(ds.expected["total"], [x[:2].sum(), x[2:].sum()])
    np.testing.assert_array_equal(ds.expected["y"], x)


def test_a_batch_free_output_passes_numerics_and_the_accuracy_audit(tmp_path: Path) -> None:
    """Before: the per-batch sums were cut to the batch's rows and joined (numerics
    compared garbage) and the accuracy audit indexed a scalar (IndexError)."""
    sum_model(tmp_path / "m.onnx")
    (tmp_path / "mine.yaml").write_text(
        "models:\n  m:\n    model: m.onnx\n    batch_sizes: [4]\n    precisions: [fp32]\n"
        "    dataset_options: {samples: 10}\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "suites/accuracy",
         "suites/performance/test_audits.py", "-k", "numerics or audit_accuracy",
         "--zoo", str(tmp_path / "mine.yaml"), "--zoo-tier", "smoke",
         "--cache-dir", str(tmp_path / "cache"), "--report-dir", str(tmp_path / "reports")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "2 passed" in done.stdout and "failed" not in done.stdout, done.stdout[-3000:]


# --------------------------------------------------------------------------- dtypes and ranges

def test_float64_and_string_inputs_are_read_and_generated(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    save(tmp_path / "m.onnx", [helper.make_node("Equal", ["s", "w"], ["eq"]),
                               helper.make_node("Mul", ["d", "d"], ["sq"])],
         [("s", TensorProto.STRING, ["N", 3]), ("w", TensorProto.STRING, [3]),
          ("d", TensorProto.DOUBLE, ["N", 2])],
         [("eq", TensorProto.BOOL, ["N", 3]), ("sq", TensorProto.DOUBLE, ["N", 2])], opset=19)
    zoo = tmp_path / "mine.yaml"
    zoo.write_text("models:\n  m:\n    model: m.onnx\n")
    (m,) = load_zoo(zoo, "smoke").models
    assert [t.dtype for t in m.inputs] == ["string", "string", "float64"]
    ds = fake.load(None, m.inputs, m.outputs, {"samples": 4})
    feeds = ds.feeds([0, 1])
    assert feeds["s"].dtype.kind == "U" and set(feeds["s"].ravel()) <= {"0", "1"}
    assert feeds["d"].dtype == np.float64 and feeds["d"].shape == (2, 2)
    # The artifact's own example inputs (tracing, warm-up, capture) take them too.
    from xpuperf.models.artifact import example_feeds
    examples = example_feeds(m, 2)
    assert examples["s"].dtype.kind == "U" and examples["d"].dtype == np.float64


def test_a_float_range_is_honoured_and_a_bad_range_refused(tmp_path: Path) -> None:
    spec = TensorSpec("x", (-1, 1000), "float32", "x", range=(2.5, 3.0))
    x = fake.generate(np.random.default_rng(0), spec, 2)
    assert x.dtype == np.float32 and 2.5 <= x.min() and x.max() < 3.0
    zoo = tmp_path / "mine.yaml"
    for tensor, message in (("{name: x, shape: [batch, 3], dtype: bool, range: [0, 1]}", "takes no range"),
                            ("{name: x, shape: [batch, 3], dtype: int64, range: [0, 1.5]}",
                             r"must be \[low, high\) integers with low < high for a int64 input")):
        zoo.write_text(f"models:\n  m:\n    family: m\n    framework: onnx\n    domain: other\n"
                       f"    builder: conv2d\n    dataset: fake\n    inputs: [{tensor}]\n"
                       f"    outputs: [y]\n    batch_sizes: [1]\n")
        with pytest.raises(ZooError, match=message):
            load_zoo(zoo, "smoke")


def test_rtol_and_atol_bound_each_element() -> None:
    ref = np.array([1.0, 100.0, 0.0])
    out = ref + np.array([1e-3, 5e-2, 1e-8])
    assert check_close("y", ref, out, {"rtol": 1e-3, "atol": 1e-6}) == []
    (problem,) = check_close("y", ref, out, {"rtol": 1e-4, "atol": 1e-6})
    assert problem.startswith("y: 2 of 3 values beyond atol 1e-06 + rtol 0.0001")
    assert check_close("y", ref, ref + 1, {"max_abs": 0.1}) == []  # neither key: not this check


# --------------------------------------------------------------------------- backends

def _backend(name: str):
    pytest.importorskip({"TVM": "tvm", "OPENVINO": "openvino", "CPU": "onnxruntime"}[name])
    from backends.registry import find

    return find(name).load()()


@pytest.mark.parametrize("hardware, wording", [("OPENVINO", "batch fixed at 2 by the model file"),
                                               ("TVM", "batch fixed at 2 by the model file")])
def test_compile_reports_say_a_fixed_batch(tmp_path: Path, hardware: str, wording: str) -> None:
    from tests_selftest.artifacts import FileArtifact

    compiled = _backend(hardware).compile(FileArtifact(sum_model(tmp_path / "m.onnx", batch=2),
                                                       outputs=("y", "total")), "fp32", (2,), {})
    try:
        assert wording in compiled.report.details["shapes"]
        assert "dynamic" not in compiled.report.details["shapes"]
    finally:
        compiled.close()


def test_openvino_feeds_an_input_its_frontend_renamed() -> None:
    """onnx's test_sequence_model1 passes input Y through to output "out", and
    OpenVINO's frontend names Y's port "out": fed by name, Y was dropped and the
    output was uninitialized memory. Fed by port, the shipped output comes back."""
    import onnx
    from onnx import numpy_helper

    from tests_selftest.artifacts import FileArtifact

    folder = onnx_data() / "simple" / "test_sequence_model1"
    read = lambda p: numpy_helper.to_array(onnx.load_tensor(str(p)))  # noqa: E731
    feeds = {n: read(folder / "test_data_set_0" / f"input_{i}.pb") for i, n in enumerate("XYZ")}
    backend = _backend("OPENVINO")
    compiled = backend.compile(FileArtifact(folder / "model.onnx", ("X", "Y", "Z"), ("out",)),
                               "fp32", (2,), {})
    try:
        np.testing.assert_array_equal(compiled.run(feeds)["out"],
                                      read(folder / "test_data_set_0" / "output_0.pb"))
        with pytest.raises(ValueError, match="no feed for input"):
            compiled.run({"X": feeds["X"], "Z": feeds["Z"]})
    finally:
        compiled.close()


def test_string_inputs_run_on_cpu_and_tvm_and_openvino_says_it_cannot(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from backends.base import CompileError
    from tests_selftest.artifacts import FileArtifact

    path = save(tmp_path / "eq.onnx", [helper.make_node("Equal", ["s", "w"], ["eq"])],
                [("s", TensorProto.STRING, ["N", 3]), ("w", TensorProto.STRING, [3])],
                [("eq", TensorProto.BOOL, ["N", 3])], opset=19)
    artifact = FileArtifact(path, ("s", "w"), ("eq",))
    feeds = {"s": np.array([["a", "b", "c"], ["c", "b", "a"]]), "w": np.array(["a", "b", "x"])}
    for hardware in ("CPU", "TVM"):
        compiled = _backend(hardware).compile(artifact, "fp32", (2,), {})
        np.testing.assert_array_equal(compiled.run(feeds)["eq"], [[1, 1, 0], [0, 1, 0]])
        compiled.close()
    with pytest.raises(CompileError, match=r"OpenVINO: the CPU plugin computes nothing on strings, "
                                           r"and input\(s\) s, w are strings"):
        _backend("OPENVINO").compile(artifact, "fp32", (2,), {})
