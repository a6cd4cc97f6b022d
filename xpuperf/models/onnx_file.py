"""What an ONNX file says of its inputs and outputs, for a zoo entry that is just
a file (``model: path/to/model.onnx``): names, element types and shapes, read from
the graph alone (external tensor data stays on disk)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileTensor:
    name: str
    dtype: str  # numpy's name ("float32"), or ONNX's for a type numpy lacks ("BFLOAT16")
    shape: tuple[int | None, ...] | None  # None: a free axis; the whole None: rank unknown

    def describe(self) -> str:
        dims = "?" if self.shape is None else ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype} [{dims}]"


def signature(path: Path) -> tuple[list[FileTensor], list[FileTensor]]:
    """The graph's inputs (initializers left out) and outputs. Raises ValueError
    when the file is not a readable ONNX model."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # protobuf's DecodeError is no ValueError
        raise ValueError(f"not a readable ONNX file ({type(e).__name__}: {e})") from e
    initializers = {t.name for t in graph.initializer}
    return ([_tensor(v) for v in graph.input if v.name not in initializers],
            [_tensor(v) for v in graph.output])


def _tensor(value: object) -> FileTensor:
    import numpy as np
    import onnx

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
