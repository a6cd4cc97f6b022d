"""A model that is a file (zoo.yaml's ``model:``) and a user's zoo that layers on
the built-in one: what is read from the file, what is checked against it, and
what a zoo of only ``models:`` inherits."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xpuperf.zoo import ZooError, load_zoo

ROOT = Path(__file__).resolve().parents[1]


def write_model(path: Path, batch: int | str, dtype: int | None = None) -> Path:
    """y = x + 1 over x [batch, 3], with a second input ``mask`` [batch, 3] (bool)."""
    import onnx
    from onnx import TensorProto, helper

    dtype = dtype or TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "m",
        [helper.make_tensor_value_info("x", dtype, [batch, 3]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, [batch, 3])],
        [helper.make_tensor_value_info("y", dtype, [batch, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def user_zoo(tmp_path: Path, entry: str, extra: str = "", batch: int | str = "N") -> Path:
    write_model(tmp_path / "m.onnx", batch)
    zoo = tmp_path / "mine.yaml"
    zoo.write_text(f"{extra}models:\n  m:\n    model: m.onnx\n{entry}")
    return zoo


def test_a_file_alone_is_a_model(tmp_path: Path) -> None:
    zoo = load_zoo(user_zoo(tmp_path, ""), "smoke")
    (m,) = zoo.models
    assert [(t.name, t.shape, t.dtype) for t in m.inputs] == [("x", (-1, 3), "float32"),
                                                               ("mask", (-1, 3), "bool")]
    assert [t.name for t in m.outputs] == ["y"]
    assert (m.framework, m.builder, m.family, m.dataset, m.batch_sizes, m.fixed_batch) == \
        ("onnx", None, "m", "fake", (1,), None)
    assert m.weights == str(tmp_path / "m.onnx")


def test_a_fixed_batch_is_read_and_honoured(tmp_path: Path) -> None:
    (m,) = load_zoo(user_zoo(tmp_path, "", batch=4), "smoke").models
    assert (m.batch_sizes, m.fixed_batch) == ((4,), 4)
    with pytest.raises(ZooError, match=r"mine.yaml:4: models.m.batch_sizes: the file's batch axis "
                                       r"is fixed at 4: batch_sizes can only be \[4\]"):
        load_zoo(user_zoo(tmp_path, "    batch_sizes: [1, 4]\n", batch=4), "smoke")


@pytest.mark.parametrize("entry, message", [
    ("    inputs:\n      - {name: x, shape: [batch, 3], dtype: float16}\n"
     "      - {name: mask, shape: [batch, 3], dtype: bool}\n",
     r"mine.yaml:5: models.m.inputs\[0\].dtype: declared float16, the file has x float32 \[\?, 3\]"),
    ("    inputs:\n      - {name: x, shape: [batch, 5], dtype: float32}\n"
     "      - {name: mask, shape: [batch, 3], dtype: bool}\n",
     r"mine.yaml:5: models.m.inputs\[0\].shape: declared \[-1, 5\], the file has x float32 \[\?, 3\]"),
    ("    inputs: [{name: x, shape: [batch, 3], dtype: float32}]\n",
     r"mine.yaml:4: models.m.inputs: the file also takes mask bool \[\?, 3\]: declare it"),
    ("    outputs: [z]\n", r"mine.yaml:4: models.m.outputs\[0\]: the file has no output 'z' "
                          r"\(it has: y float32 \[\?, 3\]\)"),
    ("    builder: conv2d\n", r"mine.yaml:3: models.m.model: a model given as a file takes no builder"),
])
def test_what_the_zoo_declares_is_checked_against_the_file(tmp_path: Path, entry: str,
                                                           message: str) -> None:
    with pytest.raises(ZooError, match=message):
        load_zoo(user_zoo(tmp_path, entry), "smoke")


def test_a_missing_or_foreign_file_is_named(tmp_path: Path) -> None:
    zoo = tmp_path / "mine.yaml"
    zoo.write_text("models:\n  m:\n    model: absent.onnx\n")
    with pytest.raises(ZooError, match=r"mine.yaml:3: models.m.model: no file .*absent.onnx"):
        load_zoo(zoo)
    zoo.write_text("models:\n  m:\n    model: m.pb\n")
    with pytest.raises(ZooError, match=r"m.pb: a model file is an .onnx file"):
        load_zoo(zoo)


def test_a_user_zoo_layers_on_the_builtin_one(tmp_path: Path) -> None:
    builtin = load_zoo(ROOT / "zoo.yaml", "smoke")
    zoo = load_zoo(user_zoo(tmp_path, "", "defaults:\n  precisions: [fp32]\n"
                                          "tiers:\n  smoke: {timeout_s: 77}\n"), "smoke")
    assert zoo.datasets == builtin.datasets
    assert (zoo.perf, zoo.audits, zoo.scenarios) == (builtin.perf, builtin.audits, builtin.scenarios)
    assert zoo.timeout_s == 77 != builtin.timeout_s
    (m,) = zoo.models
    assert m.precisions == ("fp32",)
    builtin_defaults = yaml.safe_load((ROOT / "zoo.yaml").read_text())["defaults"]
    assert m.tolerances == builtin_defaults["tolerances"]


def test_a_user_zoo_does_not_collect_the_per_op_cases(tmp_path: Path) -> None:
    zoo = user_zoo(tmp_path, "    precisions: [fp32]\n")

    def collected(*targets: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
             *targets, "--zoo", str(zoo), "--report-dir", str(tmp_path / "reports")],
            cwd=ROOT, capture_output=True, text=True, timeout=120).stdout

    everything = collected("suites/compiler_coverage")
    assert "test_compile[m-fake-fp32]" in everything and "test_op[" not in everything
    assert "test_op[abs]" in collected("suites/compiler_coverage/test_ops.py")


def write_external_model(folder: Path, location: str) -> Path:
    """y = x @ w over x [N, 3], the 3x3 weights ``w`` stored as external data at
    ``location`` (relative to the model), as onnx saves every model over 2 GB."""
    import numpy as np
    import onnx
    from onnx import TensorProto, external_data_helper, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(9, dtype=np.float32).reshape(3, 3), "w")
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    (folder / location).write_bytes(w.raw_data)
    external_data_helper.set_external_data(w, location=location)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], initializer=[w])
    path = folder / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_external_data_travels_into_the_cache_and_its_digest(tmp_path: Path) -> None:
    import numpy as np

    from xpuperf.cache import Cache
    from xpuperf.models.artifact import ModelArtifact

    write_external_model(tmp_path, "weights/m.data")
    zoo = tmp_path / "mine.yaml"
    zoo.write_text("models:\n  m:\n    model: m.onnx\n    precisions: [fp32]\n")
    (spec,) = load_zoo(zoo, "smoke").models
    cache = Cache(tmp_path / "cache")
    artifact = ModelArtifact(spec, cache, tmp_path, calibration=lambda n: [])
    cached = artifact.onnx_path()
    data = "weights/m.data"
    assert (cached.parent / data).read_bytes() == (tmp_path / data).read_bytes()
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(artifact.reference({"x": x})["y"],
                                  x @ np.arange(9, dtype=np.float32).reshape(3, 3))
    (tmp_path / "weights/m.data").write_bytes(np.zeros(9, np.float32).tobytes())
    assert ModelArtifact(spec, cache, tmp_path, calibration=lambda n: []).key != artifact.key


@pytest.mark.parametrize("location, message", [
    ("m.data", r"mine.yaml:3: models.m.model: .*m.onnx: its external data file 'm.data' is missing"),
    ("../outside.data", r"mine.yaml:3: models.m.model: .*m.onnx: its external data "
                        r"'../outside.data' lies outside the model's folder"),
])
def test_external_data_missing_or_outside_is_refused_at_load(tmp_path: Path, location: str,
                                                             message: str) -> None:
    folder = tmp_path / "model"
    write_external_model(folder, location)
    (folder / "m.data").unlink(missing_ok=True)
    zoo = folder / "mine.yaml"
    zoo.write_text("models:\n  m:\n    model: m.onnx\n")
    with pytest.raises(ZooError, match=message):
        load_zoo(zoo)


def test_a_non_tensor_output_is_refused_at_load_with_the_fix(tmp_path: Path) -> None:
    """skl2onnx's default classifier: a label tensor and the probabilities as a
    sequence of maps (ZipMap), which no suite can compare."""
    import onnx
    from onnx import TensorProto, helper

    ml = "ai.onnx.ml"
    graph = helper.make_graph(
        [helper.make_node("LinearClassifier", ["x"], ["label", "scores"], domain=ml,
                          classlabels_ints=[0, 1], coefficients=[1.0, 2.0, 3.0, 4.0],
                          intercepts=[0.0, 0.0], post_transform="SOFTMAX"),
         helper.make_node("ZipMap", ["scores"], ["probabilities"], domain=ml,
                          classlabels_int64s=[0, 1])],
        "classifier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_value_info("probabilities", helper.make_sequence_type_proto(
             helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(
                 TensorProto.FLOAT, []))))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid(ml, 1)]),
              str(tmp_path / "m.onnx"))
    zoo = tmp_path / "mine.yaml"
    zoo.write_text("models:\n  m:\n    model: m.onnx\n")
    with pytest.raises(ZooError, match=r"mine.yaml:3: models.m.model: .*m.onnx: probabilities "
                                       r"\(sequence of maps\): the suites feed and compare "
                                       r"tensors only;.*'zipmap': False"):
        load_zoo(zoo)


def test_a_models_only_zoo_runs_at_the_builtin_precisions(tmp_path: Path) -> None:
    """docs/zoo.md (A zoo of your own): a model that names no precisions takes the
    built-in defaults' (fp32, fp16, int8), as the built-in models do."""
    (m,) = load_zoo(user_zoo(tmp_path, ""), "smoke").models
    builtin_defaults = yaml.safe_load((ROOT / "zoo.yaml").read_text())["defaults"]
    assert m.precisions == tuple(builtin_defaults["precisions"]) == ("fp32", "fp16", "int8")
