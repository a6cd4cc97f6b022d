"""A model that is a file (``model: path/to/model.onnx``): what the file answers
(inputs, outputs, dtypes, a fixed or free batch axis) fills the zoo entry, and
what the entry declares is checked against the file, each error at its file:line
saying what the file has; ``golden:`` names the data and expected outputs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from xpuperf.zoo.specs import DTYPES, TensorSpec
from xpuperf.zoo.validator import Validator


def from_file(v: Validator, where: str, name: str, merged: dict[str, Any]) -> tuple[list, list]:
    """For ``model: FILE``: fill ``merged`` with what the file answers (its inputs
    and outputs, framework onnx, the file as weights) and defaults for what a file
    does not say (family: the entry's name, domain other, dataset fake, batch
    sizes: the fixed batch or [1]). Returns the file's inputs and outputs."""
    from xpuperf.models.onnx_file import signature

    if "builder" in merged:
        v.fail(where, "a model given as a file takes no builder: remove one of the two")
    path = Path(merged["model"])
    path = path if path.is_absolute() else v.path.parent / path
    if path.suffix != ".onnx":
        v.fail(where, f"{path.name}: a model file is an .onnx file")
    if not path.is_file():
        v.fail(where, f"no file {path} (a path relative to {v.path.parent})")
    try:
        file_inputs, file_outputs = signature(path)
    except ValueError as e:
        v.fail(where, f"{path}: {e}")
    others = [t.describe() for t in (*file_inputs, *file_outputs) if t.kind != "tensor"]
    if others:
        v.fail(where, f"{path}: {', '.join(others)}: the suites feed and compare tensors only; "
               "export every input and output as a tensor (skl2onnx gives a classifier's "
               "probabilities as one with convert_sklearn(model, ..., "
               "options={id(model): {'zipmap': False}}))")
    if merged.setdefault("framework", "onnx") != "onnx":
        v.fail(where, f"an .onnx model file is framework onnx, not {merged['framework']!r}")
    merged.update(weights=str(path), builder=None)
    for key, value in (("family", name), ("domain", "other"), ("dataset", "fake")):
        merged.setdefault(key, value)
    batch = _file_batch(file_inputs)
    if "inputs" not in merged:
        merged["inputs"] = [_declared(v, where, t, batch) for t in file_inputs]
        if not any(t["batched"] for t in merged["inputs"]):
            v.fail(where, f"no input of the file has a batch axis "
                   f"({', '.join(t.describe() for t in file_inputs)}), and the suites run a "
                   "model in batches: give it a first axis of the batch")
    merged.setdefault("outputs", [{"name": t.name, **({"dtype": t.dtype} if t.dtype in DTYPES else {}),
                                   **({"batched": False} if _output_batched(t, batch) is False else {})}
                                  for t in file_outputs])
    merged.setdefault("batch_sizes", [batch or 1])
    return file_inputs, file_outputs


def golden(v: Validator, where: str, merged: dict[str, Any]) -> None:
    """``golden: PATH`` (relative to the zoo file): the model's data is that folder
    or .npz file (dataset golden, xpuperf.datasets.golden), and its expected outputs
    are the reference."""
    path = Path(merged["golden"])
    path = path if path.is_absolute() else v.path.parent / path
    if not path.exists():
        v.fail(where, f"no file or folder {path} (a path relative to {v.path.parent})")
    if merged.get("dataset", "golden") not in ("golden", "fake"):
        v.fail(where, f"golden data is the model's dataset: remove dataset: {merged['dataset']}")
    merged["dataset"] = "golden"
    merged["dataset_options"] = {**(merged.get("dataset_options") or {}), "path": str(path)}


def _file_batch(file_inputs: list) -> int | None:
    """The fixed batch size of a file's inputs (the first axis of the first one),
    or None when some input's first axis is free (a dynamic batch)."""
    firsts = [t.shape[0] for t in file_inputs if t.shape]
    return None if not firsts or None in firsts else firsts[0]


def _output_batched(t: Any, batch: int | None) -> bool | None:
    """Whether a file's output has the batch axis first: not when it is a scalar or
    its first size is fixed at another size than the batch (any fixed size, for a
    free batch); None when the file does not say (rank or first axis unknown)."""
    if t.shape is None or (t.shape and t.shape[0] is None):
        return None if t.shape is None or batch is not None else True
    return bool(t.shape) and t.shape[0] == batch


def _declared(v: Validator, where: str, t: Any, batch: int | None) -> dict[str, Any]:
    """A file's input as the zoo would declare it: batched on its first axis when
    that axis is the (free or fixed) batch axis, fed whole otherwise."""
    if t.dtype not in DTYPES:
        v.fail(where, f"the file's input {t.describe()} has a type the zoo cannot feed "
               f"(it feeds {', '.join(DTYPES)})")
    if t.shape is None or None in t.shape[1:]:
        v.fail(where, f"the file's input {t.describe()} has a free axis besides the batch axis: "
               "declare its shape under inputs")
    batched = bool(t.shape) and t.shape[0] in (None, batch)
    shape = ["batch", *t.shape[1:]] if batched else list(t.shape)
    return {"name": t.name, "shape": shape, "dtype": t.dtype, "batched": batched}


def _in_file(v: Validator, at: str, kind: str, name: str, tensors: list) -> Any:
    """The file's ``kind`` tensor named ``name``; a failure at ``at`` that lists the
    file's own where it has none."""
    found = next((t for t in tensors if t.name == name), None)
    if found is None:
        v.fail(at, f"the file has no {kind} {name!r} "
                   f"(it has: {', '.join(t.describe() for t in tensors)})")
    return found


def check_against_file(v: Validator, inputs_at: str, outputs_at: str, batch_at: str,
                       inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                       batch_sizes: list[int], file_inputs: list, file_outputs: list) -> int | None:
    """What the zoo declares must be what the file has; returns the file's fixed
    batch size (None: free)."""
    for i, spec in enumerate(inputs):
        t = _in_file(v, f"{inputs_at}.inputs[{i}].name", "input", spec.name, file_inputs)
        if spec.dtype != t.dtype:
            v.fail(f"{inputs_at}.inputs[{i}].dtype", f"declared {spec.dtype}, the file has {t.describe()}")
        rest = spec.shape[1:] if spec.batched else spec.shape
        file_rest = None if t.shape is None else (t.shape[1:] if spec.batched else t.shape)
        if file_rest is not None and (len(rest) != len(file_rest) or any(
                f is not None and f != d for d, f in zip(rest, file_rest))):
            v.fail(f"{inputs_at}.inputs[{i}].shape", f"declared {list(spec.shape)}, "
                   f"the file has {t.describe()}")
    undeclared = [t.describe() for t in file_inputs if t.name not in {s.name for s in inputs}]
    if undeclared:
        v.fail(f"{inputs_at}.inputs", f"the file also takes {', '.join(undeclared)}: declare it, "
               "or leave inputs out to take the file's")
    batch = _file_batch([t for t in file_inputs
                         if any(s.name == t.name and s.batched for s in inputs)])
    for i, spec in enumerate(outputs):
        t = _in_file(v, f"{outputs_at}.outputs[{i}]", "output", spec.name, file_outputs)
        if _output_batched(t, batch) not in (None, spec.batched):
            v.fail(f"{outputs_at}.outputs[{i}]", f"the file's output {t.describe()} has "
                   f"{'a' if spec.batched is False else 'no'} batch axis: say batched: "
                   f"{'true' if spec.batched is False else 'false'}")
    if batch is not None and any(bs != batch for bs in batch_sizes):
        v.fail(f"{batch_at}.batch_sizes", f"the file's batch axis is fixed at {batch}: "
               f"batch_sizes can only be [{batch}]")
    return batch
