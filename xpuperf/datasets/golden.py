"""Golden data: a model's own inputs and expected outputs, which are then the
reference its numerics are judged against (zoo.yaml's ``golden: PATH``).

Three layouts: onnx's, a folder holding ``test_data_set_N/`` folders (or one such
folder) of ``input_K.pb`` and ``output_K.pb`` TensorProtos, K in the model's input
and output order (a tensor that carries a name of the model's is matched by that
name); onnx's light models' ``<model>_output_0.pb`` (the file named; inputs as
onnx's runner makes them); or one ``.npz`` file whose arrays are named after the
model's inputs and outputs. Sets are concatenated along the batch axis; an input without one must be
the same in every set. An output without one is expected once per set, so each set
must then be one batch of the size the model is run at (a model file's fixed batch).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from xpuperf.datasets.base import ArrayDataset, numpy_dtype
from xpuperf.zoo import TensorSpec

NAME = "golden"
_PB = re.compile(r"^(input|output)_(\d+)\.pb$")


class GoldenDataset(ArrayDataset):
    name = NAME
    source = NAME
    primary_metric = None

    def __init__(self, path: Path, arrays: dict[str, np.ndarray], shared: tuple[str, ...],
                 expected: dict[str, np.ndarray]):
        self.path = str(path)
        self.expected = expected  # the reference outputs, one row per sample
        super().__init__(arrays, shared)

    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return {}


def load(path: Path | None, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
         options: dict[str, Any]) -> GoldenDataset:
    """Options: path (the folder or .npz file; zoo.yaml's ``golden:`` sets it)."""
    source = Path(options["path"])
    if source.suffix == ".npz":
        located = [(source, _read_npz(source))]
    elif source.is_file():
        located = [(source, _read_light(source, inputs, outputs))]
    else:
        located = [(folder, _read_pb_set(folder, inputs, outputs))
                   for folder in _set_folders(source)]
    for where, found in located:
        _check_rows(where, found, inputs, outputs)
    sets = [found for _, found in located]
    shared = tuple(t.name for t in inputs if not t.batched)
    arrays: dict[str, np.ndarray] = {}
    for spec in inputs:
        values = [_named(s, spec.name, source) for s in sets]
        if not spec.batched:
            if any(not np.array_equal(values[0], v) for v in values[1:]):
                raise ValueError(f"{source}: input {spec.name!r} has no batch axis but differs "
                                 "between the sets")
            arrays[spec.name] = values[0]
        else:
            arrays[spec.name] = np.concatenate(values)
        if spec.dtype == "string" and arrays[spec.name].dtype.kind in "OU":
            arrays[spec.name] = arrays[spec.name].astype(numpy_dtype(spec.dtype))  # onnx's: objects
        elif arrays[spec.name].dtype != np.dtype(numpy_dtype(spec.dtype)):
            raise ValueError(f"{source}: input {spec.name!r} is {arrays[spec.name].dtype}, "
                             f"the model takes {spec.dtype}")
    expected = {}
    sizes = {len(_named(s, t.name, source)) for s in sets for t in inputs if t.batched}
    if sizes == {0}:  # the suites would run no batch and judge nothing
        raise ValueError(f"{source}: the golden data holds no samples: its batched inputs "
                         f"({', '.join(t.name for t in inputs if t.batched)}) have 0 rows; if "
                         "their first axis is not a batch axis, declare the inputs with "
                         "batched: false")
    for spec in outputs:
        values = [_named(s, spec.name, source) for s in sets]
        if not spec.batched:
            # One value per set, as run_in_batches gives one per batch: a set is a batch.
            if len(sizes) > 1:
                raise ValueError(f"{source}: output {spec.name!r} has no batch axis, so each set "
                                 f"must be one batch, of one size; the sets hold {sorted(sizes)} "
                                 "samples")
            expected[spec.name] = np.stack(values)
        elif any(v.ndim == 0 for v in values):
            raise ValueError(f"{source}: expected output {spec.name!r} is a scalar: declare it "
                             "batched: false (it has no batch axis)")
        else:
            expected[spec.name] = np.concatenate(values)
    return GoldenDataset(source, arrays, shared, expected)


def _check_rows(where: Path, found: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...],
                outputs: tuple[TensorSpec, ...]) -> None:
    """Within one set, every batched tensor has one row per sample: as many rows
    in each input and each expected output."""
    rows = {t.name: len(found[t.name]) for t in (*inputs, *outputs)
            if t.batched and t.name in found and np.ndim(found[t.name]) > 0}
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"{name}: {n}" for name, n in rows.items())
        raise ValueError(f"{where}: the batched inputs and expected outputs hold different numbers "
                         f"of samples (rows: {counts}); each sample needs one row in every one")


def _set_folders(source: Path) -> list[Path]:
    if any(_PB.match(p.name) for p in source.iterdir()):
        return [source]
    folders = sorted((p for p in source.iterdir() if p.is_dir() and p.name.startswith("test_data_set_")),
                     key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not folders:
        raise ValueError(f"{source}: no test_data_set_N/ folder and no input_K.pb file in it")
    return folders


def _read_pb_set(folder: Path, inputs: tuple[TensorSpec, ...],
                 outputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    found: dict[str, np.ndarray] = {}
    for path in sorted(folder.iterdir()):
        match = _PB.match(path.name)
        if not match:
            continue
        kind, k = match.group(1), int(match.group(2))
        specs = inputs if kind == "input" else outputs
        tensor = onnx.TensorProto()
        tensor.ParseFromString(path.read_bytes())
        names = {t.name for t in specs}
        if tensor.name in names:
            name = tensor.name
        elif k < len(specs):
            name = specs[k].name
        else:
            raise ValueError(f"{path}: the model has {len(specs)} {kind}s, so no {kind}_{k}")
        found[name] = numpy_helper.to_array(tensor)
    return found


def _read_light(path: Path, inputs: tuple[TensorSpec, ...],
                outputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """onnx's light layout (onnx/backend/test/data/light): ``<model>_output_K.pb``
    beside the model and no inputs, which are what onnx's backend test runner
    feeds such a model: arange(size) / size in each float32 input's shape."""
    import onnx
    from onnx import numpy_helper

    match = re.match(r"^(.+)_output_0\.pb$", path.name)
    if not match:
        raise ValueError(f"{path}: a golden file is an .npz or onnx's <model>_output_0.pb")
    found = {}
    for spec in inputs:
        if spec.dtype != "float32":
            raise ValueError(f"{path}: onnx's light layout has no inputs, and generates only "
                             f"float32 ones; input {spec.name!r} is {spec.dtype}")
        shape = spec.batch_shape(1)
        size = int(np.prod(shape))
        found[spec.name] = (np.arange(size).reshape(shape) / size).astype(np.float32)
    for k, spec in enumerate(outputs):
        found[spec.name] = numpy_helper.to_array(
            onnx.load_tensor(str(path.with_name(f"{match.group(1)}_output_{k}.pb"))))
    return found


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _named(arrays: dict[str, np.ndarray], name: str, source: Path) -> np.ndarray:
    if name not in arrays:
        raise ValueError(f"{source}: no tensor for {name!r} (it has: {', '.join(sorted(arrays))})")
    return arrays[name]
