"""What an ONNX file says of its inputs and outputs, for a zoo entry that is just
a file (``model: path/to/model.onnx``): names, element types and shapes, read from
the graph alone (external tensor data stays on disk), and the external data files
its tensors name (a model over 2 GB keeps its weights in files beside it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


@dataclass(frozen=True)
class FileTensor:
    name: str
    dtype: str  # numpy's name ("float32"), or ONNX's for a type numpy lacks ("BFLOAT16")
    shape: tuple[int | None, ...] | None  # None: a free axis; the whole None: rank unknown
    kind: str = "tensor"  # or what else the value is: "sequence of maps" (skl2onnx's ZipMap)

    def describe(self) -> str:
        dims = "?" if self.shape is None else ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype} [{dims}]" if self.kind == "tensor" else \
            f"{self.name} ({self.kind})"


def load_graph(path: Path) -> Any:
    """The file's graph, its external tensor data left on disk. Raises ValueError
    when the file is not a readable ONNX model."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # protobuf's DecodeError is no ValueError
        raise ValueError(f"not a readable ONNX file ({type(e).__name__}: {e})") from e


def signature(path: Path) -> tuple[list[FileTensor], list[FileTensor]]:
    """The graph's inputs (initializers left out) and outputs. Raises ValueError
    when the file is not a readable ONNX model or its external data is not beside
    it (external_files)."""
    graph = load_graph(path)
    external_files(path, graph)
    initializers = {t.name for t in graph.initializer}
    return ([_tensor(v) for v in graph.input if v.name not in initializers],
            [_tensor(v) for v in graph.output])


def external_files(path: Path, graph: Any = None) -> list[str]:
    """The external data files the graph's tensors name, as relative paths from
    the model's folder, each once: what must travel with the model (into the
    cache, into its digest). Raises ValueError, naming the file and the fix, for
    one that is missing or lies outside the model's folder."""
    import onnx

    graph = load_graph(path) if graph is None else graph
    folder = path.parent.resolve()
    locations = sorted({entry.value for tensor in _tensors(graph)
                        if tensor.data_location == onnx.TensorProto.EXTERNAL
                        for entry in tensor.external_data if entry.key == "location"})
    for location in locations:
        target = (path.parent / location).resolve()
        if not target.is_relative_to(folder):
            raise ValueError(f"its external data {location!r} lies outside the model's folder "
                             f"{folder}: keep the data files beside the model (onnx.save_model("
                             "..., save_as_external_data=True, location=a relative file name))")
        if not target.is_file():
            raise ValueError(f"its external data file {location!r} is missing beside it "
                             f"(no {target}): copy the .data file saved with the model next to it")
    return locations


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor a graph holds: its initializers and the tensors of its nodes'
    attributes (Constant values), subgraphs (If, Loop, Scan) included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(sub)


def _tensor(value: object) -> FileTensor:
    import numpy as np
    import onnx

    kind = _kind(value.type)  # type: ignore[attr-defined]
    if kind != "tensor":
        return FileTensor(value.name, "", None, kind)  # type: ignore[attr-defined]
    tensor_type = value.type.tensor_type  # type: ignore[attr-defined]
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
    except (KeyError, TypeError, ValueError):
        dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
    if dtype == "object":
        dtype = "string"
    shape = (tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
             if tensor_type.HasField("shape") else None)
    return FileTensor(value.name, dtype, shape)  # type: ignore[attr-defined]


def _kind(type_proto: Any) -> str:
    """What an ONNX value is: "tensor", "map", "sequence of maps", ..."""
    kind = type_proto.WhichOneof("value")
    if kind == "sequence_type":
        return f"sequence of {_kind(type_proto.sequence_type.elem_type)}s"
    if kind == "optional_type":
        return f"optional {_kind(type_proto.optional_type.elem_type)}"
    return {"tensor_type": "tensor", "map_type": "map", "sparse_tensor_type": "sparse tensor"}.get(
        kind, str(kind))
