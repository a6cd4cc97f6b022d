"""Golden data (zoo.yaml's ``golden:``): a model's own inputs and expected outputs,
in onnx's test_data_set_N/ layout or one .npz, are its data and its reference."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpuperf.datasets import golden
from xpuperf.zoo import TensorSpec

ROOT = Path(__file__).resolve().parents[1]
X = TensorSpec("x", (-1, 3), "float32", "x")
W = TensorSpec("w", (3,), "float32", "w", batched=False)
Y = TensorSpec("y", (), "float32", "y")


def write_pb(path: Path, value: np.ndarray, name: str = "") -> None:
    from onnx import numpy_helper

    path.write_bytes(numpy_helper.from_array(value, name).SerializeToString())


def write_sets(folder: Path, xs: list[np.ndarray], w: np.ndarray, ys: list[np.ndarray]) -> None:
    for n, (x, y) in enumerate(zip(xs, ys)):
        d = folder / f"test_data_set_{n}"
        d.mkdir(parents=True)
        write_pb(d / "input_0.pb", x)  # unnamed: matched by position
        write_pb(d / "input_1.pb", w, "w")
        write_pb(d / "output_0.pb", y, "y")


def test_onnx_layout_sets_are_joined_on_the_batch_axis(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2)]
    w = np.ones(3, np.float32)
    write_sets(tmp_path, xs, w, [x * 2 for x in xs])
    ds = golden.load(None, (X, W), (Y,), {"path": str(tmp_path)})
    assert len(ds) == 4
    np.testing.assert_array_equal(ds.feeds([1, 2])["x"], np.stack([xs[0][1], xs[1][0]]))
    np.testing.assert_array_equal(ds.feeds([0])["w"], w)
    np.testing.assert_array_equal(ds.expected["y"], np.concatenate(xs) * 2)


def test_npz_and_what_is_wrong_with_a_golden_file(tmp_path: Path) -> None:
    x = np.zeros((2, 3), np.float32)
    np.savez(tmp_path / "g.npz", x=x, w=np.ones(3, np.float32), y=x)
    ds = golden.load(None, (X, W), (Y,), {"path": str(tmp_path / "g.npz")})
    assert len(ds) == 2 and set(ds.expected) == {"y"}
    np.savez(tmp_path / "bad.npz", x=x.astype(np.float64), w=np.ones(3, np.float32), y=x)
    with pytest.raises(ValueError, match="input 'x' is float64, the model takes float32"):
        golden.load(None, (X, W), (Y,), {"path": str(tmp_path / "bad.npz")})
    np.savez(tmp_path / "short.npz", x=x, y=x)
    with pytest.raises(ValueError, match=r"no tensor for 'w' \(it has: x, y\)"):
        golden.load(None, (X, W), (Y,), {"path": str(tmp_path / "short.npz")})


@pytest.mark.parametrize("offset, verdict", [(0.0, "1 passed"), (0.5, "1 failed")])
def test_golden_outputs_are_the_reference(tmp_path: Path, offset: float, verdict: str) -> None:
    """y = relu(x) on the CPU backend, judged against the golden outputs: right
    ones pass, ones off by 0.5 fail (the framework's own run is not the reference)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(tmp_path / "relu.onnx"))
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    np.savez(tmp_path / "golden.npz", x=x, y=np.maximum(x, 0) + offset)
    (tmp_path / "mine.yaml").write_text("models:\n  relu:\n    model: relu.onnx\n"
                                        "    golden: golden.npz\n    precisions: [fp32]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "suites/accuracy/test_accuracy.py", "-k", "numerics", "--zoo", str(tmp_path / "mine.yaml"),
         "--zoo-tier", "smoke", "--cache-dir", str(tmp_path / "cache"),
         "--report-dir", str(tmp_path / "reports")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert verdict in done.stdout, done.stdout[-3000:]
    assert "relu-golden-fp32" in done.stdout
    result = json.loads((tmp_path / "reports" / "relu" / "result-fp32.json").read_text())
    assert result["Accuracy"]["Data Source"] == "golden"


def test_onnx_light_layout_outputs_beside_the_model_and_the_runner_s_inputs(tmp_path: Path) -> None:
    """onnx/backend/test/data/light ships <model>_output_0.pb and no inputs: they
    are what onnx's runner feeds, arange(size) / size in the input's shape."""
    y = np.array([[0.25, 0.75]], np.float32)
    write_pb(tmp_path / "light_m_output_0.pb", y)
    ds = golden.load(None, (TensorSpec("data", (-1, 2, 2), "float32", "data"),), (Y,),
                     {"path": str(tmp_path / "light_m_output_0.pb")})
    np.testing.assert_array_equal(ds.feeds([0])["data"], [[[0, 0.25], [0.5, 0.75]]])
    np.testing.assert_array_equal(ds.expected["y"], y)
    with pytest.raises(ValueError, match="input 'ids' is int64"):
        golden.load(None, (TensorSpec("ids", (-1, 2), "int64", "ids"),), (Y,),
                    {"path": str(tmp_path / "light_m_output_0.pb")})


def test_golden_data_without_samples_is_refused(tmp_path: Path) -> None:
    write_sets(tmp_path, [np.zeros((0, 3), np.float32)], np.ones(3, np.float32),
               [np.zeros((0, 3), np.float32)])
    with pytest.raises(ValueError, match="holds no samples: its batched inputs \\(x\\) have 0 rows"):
        golden.load(None, (X, W), (Y,), {"path": str(tmp_path)})


def test_a_set_whose_rows_disagree_is_refused_naming_file_and_counts(tmp_path: Path) -> None:
    """Three samples of input and two expected outputs: refused when the data is
    loaded, not later as a bare shape mismatch of the numerics."""
    x = np.ones((3, 3), np.float32)
    write_sets(tmp_path, [x], np.ones(3, np.float32), [np.ones((2, 3), np.float32)])
    with pytest.raises(ValueError, match=r"test_data_set_0: the batched inputs and expected outputs "
                                         r"hold different numbers of samples \(rows: x: 3, y: 2\)"):
        golden.load(None, (X, W), (Y,), {"path": str(tmp_path)})
    np.savez(tmp_path / "g.npz", x=x, w=np.ones(3, np.float32), y=np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"g.npz: .*\(rows: x: 3, y: 4\)"):
        golden.load(None, (X, W), (Y,), {"path": str(tmp_path / "g.npz")})
