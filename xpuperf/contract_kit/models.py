"""The tiny ONNX models the contract kit compiles, written by the kit itself, and
the artifact that hands them to a backend (the ONNX file, calibration and example
feeds, and the same computation as a torch module for backends that compile one).

``affine``: y = alpha @ W - beta (float32 [N, 4]) and k = argmax(y, axis 1) (int64 [N]).
Its two inputs have the same shape and dtype, so a backend that feeds by position
instead of by name computes a wrong y without any error.
``unused``: y = relu(x); input ``u`` is declared but never read (frontends drop
such inputs, and a backend must still accept a feed for it).
"""
from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backends.base import ModelArtifactLike

WIDTH = 4
WEIGHT = np.random.default_rng(7).standard_normal((WIDTH, WIDTH)).astype(np.float32)


@dataclass(frozen=True)
class TinyModel:
    name: str
    inputs: tuple[str, ...]
    outputs: dict[str, tuple[np.dtype, Callable[[int], tuple[int, ...]]]]  # name -> dtype, shape(N)
    expect: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # numpy's result


def _affine(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    y = feeds["alpha"] @ WEIGHT - feeds["beta"]
    return {"y": y, "k": y.argmax(axis=1)}


MODELS = {
    "affine": TinyModel("affine", ("alpha", "beta"),
                        {"y": (np.dtype(np.float32), lambda n: (n, WIDTH)),
                         "k": (np.dtype(np.int64), lambda n: (n,))}, _affine),
    "unused": TinyModel("unused", ("x", "u"),
                        {"y": (np.dtype(np.float32), lambda n: (n, WIDTH))},
                        lambda feeds: {"y": np.maximum(feeds["x"], 0)}),
}


def write_onnx(model: TinyModel, path: Path) -> Path:
    """Write ``model`` as an ONNX file with a free batch axis ``N`` at ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def value(name: str, dtype: int, shape: list[Any]) -> Any:
        return helper.make_tensor_value_info(name, dtype, shape)

    inputs = [value(n, TensorProto.FLOAT, ["N", WIDTH]) for n in model.inputs]
    if model.name == "affine":
        nodes = [helper.make_node("MatMul", ["alpha", "W"], ["aw"]),
                 helper.make_node("Sub", ["aw", "beta"], ["y"]),
                 helper.make_node("ArgMax", ["y"], ["k"], axis=1, keepdims=0)]
        initializers = [numpy_helper.from_array(WEIGHT, "W")]
        outputs = [value("y", TensorProto.FLOAT, ["N", WIDTH]), value("k", TensorProto.INT64, ["N"])]
    else:
        nodes = [helper.make_node("Relu", ["x"], ["y"])]
        initializers = []
        outputs = [value("y", TensorProto.FLOAT, ["N", WIDTH])]
    graph = helper.make_graph(nodes, model.name, inputs, outputs, initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def feeds(model: TinyModel, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Values in [-1, 1]: a bounded range that int8 calibration can cover."""
    rng = np.random.default_rng(seed)
    return {n: rng.uniform(-1, 1, (batch, WIDTH)).astype(np.float32) for n in model.inputs}


class ContractArtifact(ModelArtifactLike):
    """What the suite's ModelArtifact gives a backend, for a tiny model."""

    def __init__(self, model: TinyModel, path: Path):
        self.name, self._model, self._path = model.name, model, path
        self.input_names, self.output_names = model.inputs, tuple(model.outputs)

    def onnx_path(self) -> PathLike[str]:
        return self._path

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        # Signs alone (the corners of [-1, 1]^n) reach the extremes of every output.
        return [{k: np.sign(v) for k, v in feeds(self._model, 1, 100 + i).items()}
                for i in range(count)]

    def example_feeds(self, batch_size: int) -> dict[str, np.ndarray]:
        return feeds(self._model, batch_size, 0)

    def torch_module(self) -> Any:
        import torch

        weight = torch.from_numpy(WEIGHT.copy())

        class Affine(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.weight = torch.nn.Parameter(weight, requires_grad=False)

            def forward(self, alpha: Any, beta: Any) -> Any:
                y = alpha @ self.weight - beta
                return y, y.argmax(dim=1)

        class Unused(torch.nn.Module):
            def forward(self, x: Any, u: Any) -> Any:
                return torch.relu(x)

        return (Affine() if self._model.name == "affine" else Unused()).eval()
