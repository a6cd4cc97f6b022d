"""ONNX: a model the project exports to ONNX from a torch definition (or an .onnx
file given as weights), then handles as an ONNX model.

The ONNX file is the model: its reference outputs are onnxruntime's, in fp32, with
every graph optimization disabled, so the ground truth is the graph exactly as
exported and not onnxruntime's rewrite of it (which is what backends compile).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from xpuperf.models import torch_fw
from xpuperf.models.onnx_file import external_files, load_graph
from xpuperf.zoo import ModelSpec

PACKAGES = ("torch", "transformers", "diffusers", "onnx", "onnxruntime")
OPSET = torch_fw.OPSET


def materialize(build: Callable, spec: ModelSpec, weights: Path | None) -> Any:
    """The torch module to export, or the path of an .onnx file used as is."""
    if weights is not None and weights.suffix == ".onnx":
        _check_io(weights, spec)
        return weights
    return torch_fw.materialize(build, spec, weights)


def weights_files(weights: Path) -> list[Path]:
    """The files a weights path stands for: an .onnx file and the external data
    files its graph names (ValueError for one missing or outside its folder)."""
    if weights.suffix != ".onnx":
        return [weights]
    return [weights, *(weights.parent / f for f in external_files(weights))]


def export_onnx(model: Any, spec: ModelSpec, path: Path, example: dict[str, np.ndarray]) -> None:
    if isinstance(model, Path):
        # The external data travels too, at the place the graph names it.
        shutil.copyfile(model, path)
        for location in external_files(model):
            (path.parent / location).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model.parent / location, path.parent / location)
    else:
        torch_fw.export_onnx(model, spec, path, example)


def open_reference(path: Path) -> Any:
    """The reference runner: onnxruntime on the exported file, unoptimized, fp32."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(session: Any, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [t.name for t in spec.outputs]
    out = session.run(names, {t.name: feeds[t.name] for t in spec.inputs})
    return {name: np.asarray(o, dtype=np.float32) for name, o in zip(names, out)}


def _check_io(path: Path, spec: ModelSpec) -> None:
    """A given .onnx file must take and give the zoo's tensors, by name; otherwise
    every backend would fail later with a less helpful message."""
    try:
        # Only the graph's structure is needed; external tensor data stays on disk.
        graph = load_graph(path)
        external_files(path, graph)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    initializers = {i.name for i in graph.initializer}
    have_in = {i.name for i in graph.input} - initializers
    have_out = {o.name for o in graph.output}
    missing = [t.name for t in spec.inputs if t.name not in have_in]
    missing += [t.name for t in spec.outputs if t.name not in have_out]
    if missing:
        raise ValueError(f"{path}: the graph has no tensor named {', '.join(missing)} "
                         f"(inputs: {', '.join(sorted(have_in))}; outputs: {', '.join(sorted(have_out))})")
