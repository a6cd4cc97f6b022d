"""The GPU backend's ONNX graph path: an entry without a torch module of its own
(an ONNX file, a TensorFlow model through its ONNX export) and onnx's per-op
cases, converted to a torch module by onnx2torch, which the backend then places
and compiles in each mode as it does a torch entry's module (fp16 and bf16
under autocast: see Graph).

onnx2torch rather than an importer of the project's own: backends/tvm/onnx_graph.py
and xpuperf/measure/flops.py read graphs but build no torch. On the CPU (onnx
1.23, onnx2torch 1.5.15), with the converters and fixes below, it converts all
11 of the zoo's ONNX and TensorFlow entries (onnx2torch alone: 7) and passes
575 of onnx's 1,855 node cases (318 without the stand-in converters);
benchmarks/gpu_onnx_coverage.py prints the op figures.

Coverage: each ONNX node whose op onnx2torch can convert (at the model's opset,
with the node's attributes) is native. A node it cannot take is named in the
CompileError's fallback_ops, with the counts: the GPU runs no op on the host, so
such a graph does not compile, and the miss is the compile's conversion failure.
"""
from __future__ import annotations

import functools
import sys
import types
from os import PathLike
from typing import Any

import numpy as np
import torch

from backends.base import CompileError

# onnx2torch's converters that import torchvision (NonMaxSuppression, RoiAlign).
_TORCHVISION_CONVERTERS = ("nms", "roialign")
_DEFAULT_DOMAINS = ("", "ai.onnx")


@functools.lru_cache(maxsize=1)
def _load() -> Any:
    """onnx2torch, imported without the converters that need torchvision where
    torchvision does not load (none installed, or one built for another torch:
    it raises RuntimeError at import); their two ops are then misses like any
    op without a converter."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a build for another torch
        for name in _TORCHVISION_CONVERTERS:
            # An empty module in its place: `from ... import *` then registers nothing.
            sys.modules.setdefault(f"onnx2torch.node_converters.{name}",
                                   types.ModuleType(f"onnx2torch.node_converters.{name}"))
    try:
        import onnx2torch
        from onnx2torch.node_converters.registry import add_converter
    except ImportError as e:
        raise CompileError(f"the GPU backend's ONNX path needs onnx2torch ({e}): "
                           "pip install 'xpuperf[gpu]' (or pip install onnx2torch --no-deps)"
                           ) from None
    # Ops of the zoo's graphs that onnx2torch lacks (CLIP's and VideoBERT's causal masks).
    add_converter(operation_type="Trilu", version=14)(_trilu)
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    layer_norm = OperationDescription("", "LayerNormalization", 17)
    _CONVERTER_REGISTRY[layer_norm] = _normalized_as_weighted(_CONVERTER_REGISTRY[layer_norm])
    return onnx2torch


def _normalized_as_weighted(convert: Any) -> Any:
    """onnx2torch's LayerNormalization, its normalized shape taken from the scale:
    it reads it from the input's inferred shape, whose symbolic dimensions it
    takes as 0 (UNet's norms after a dynamic reshape)."""
    def converter(node: Any, graph: Any) -> Any:
        result = convert(node, graph)
        if isinstance(result.torch_module, torch.nn.LayerNorm):
            result.torch_module.normalized_shape = tuple(result.torch_module.weight.shape)
        return result
    return converter


class _Trilu(torch.nn.Module):
    def __init__(self, upper: bool, k: int | None):
        super().__init__()
        self.upper, self.k = upper, k

    def forward(self, x: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        # k read at run time only where the graph computes it (a graph break under compile).
        diagonal = self.k if self.k is not None else (0 if k is None else int(k))
        return torch.triu(x, diagonal) if self.upper else torch.tril(x, diagonal)


def _trilu(node: Any, graph: Any) -> Any:
    """ONNX Trilu (opset 14): torch.triu or torch.tril, its k a constant where
    the graph holds it as a weight."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    upper = bool(node.attributes.get("upper", 1))
    inputs = node.input_values
    if len(inputs) > 1 and inputs[1] in graph.initializers:
        k = int(graph.initializers[inputs[1]].to_torch())
        return OperationConverterResult(_Trilu(upper, k), OnnxMapping(inputs[:1],
                                                                      node.output_values))
    return OperationConverterResult(_Trilu(upper, None if len(inputs) > 1 and inputs[1] else 0),
                                    OnnxMapping(inputs, node.output_values))


def op_name(domain: str, op_type: str) -> str:
    """An op as xpuperf's op table names it: qualified outside ai.onnx."""
    return op_type if domain in _DEFAULT_DOMAINS else f"{domain}.{op_type}"


def _without_initializer_inputs(model: Any) -> None:
    """Drop graph inputs that are initializers (old exporters list them as
    inputs): they are weights, not feeds, for onnx2torch as for the artifact."""
    initialized = {t.name for t in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in initialized]
    del model.graph.input[:]
    model.graph.input.extend(kept)


# (domain, op, schema version) -> "Cast-25 by Cast-13", for each stand-in registered.
_STAND_INS: dict[tuple[str, str, int], str] = {}


def _since(domain: str, op_type: str, version: int) -> int | None:
    """The version of ``op_type``'s schema in force at opset ``version``."""
    from onnx import defs

    try:
        return defs.get_schema(op_type, domain=domain, max_inclusive_version=version
                               ).since_version
    except (RuntimeError, defs.SchemaError):
        return None


def _stand_in(domain: str, op_type: str, version: int) -> bool:
    """Registers, for an op whose schema at ``version`` is newer than every
    converter onnx2torch has of it, the converter of its newest earlier version;
    False where there is none. onnx2torch knows the opsets to 17 and onnx's
    cases reach 28, where most versions only add types: a version that changed
    what the op computes fails its cases (a mismatch), which the per-op items
    show."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    since = _since(domain, op_type, version)
    known = [d for d in _CONVERTER_REGISTRY
             if (d.domain, d.operation_type) == (domain, op_type) and since and d.version < since]
    if not known:
        return False
    newest = max(known, key=lambda d: d.version)
    _CONVERTER_REGISTRY[OperationDescription(domain, op_type, since)] = \
        _CONVERTER_REGISTRY[newest]
    name = op_name(domain, op_type)
    _STAND_INS[(domain, op_type, since)] = f"{name}-{since} by {name}-{newest.version}"
    return True


def _weights_as_initializers(model: Any) -> None:
    """An Identity of a weight (torch's export of a shared weight) becomes a weight
    of its own name: onnx2torch reads Conv's and Gemm's weights from the graph's
    initializers only."""
    weights = {t.name: t for t in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in weights:
            copy = model.graph.initializer.add()
            copy.CopyFrom(weights[node.input[0]])
            copy.name = node.output[0]
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)


def misses(model: Any) -> tuple[int, dict[str, str], list[str]]:
    """(nodes in the graph, {op: why onnx2torch cannot convert it}, the stand-in
    converters registered for it) of ``model`` (a shape-inferred onnx.ModelProto)."""
    _load()
    from onnx2torch.node_converters import get_converter
    from onnx2torch.onnx_graph import OnnxGraph

    graph = OnnxGraph(model.graph)
    opsets = {o.domain: o.version for o in model.opset_import}
    missed: dict[str, str] = {}
    stand_ins: list[str] = []
    for node in graph.nodes.values():
        op = op_name(node.domain, node.operation_type)
        if op in missed:
            continue
        version = opsets.get(node.domain, 1)
        try:
            try:
                converter = get_converter(domain=node.domain, operation_type=node.operation_type,
                                          version=version)
            except NotImplementedError:
                if not _stand_in(node.domain, node.operation_type, version):
                    raise
                converter = get_converter(domain=node.domain, operation_type=node.operation_type,
                                          version=version)
            since = _since(node.domain, node.operation_type, version)
            if (node.domain, node.operation_type, since) in _STAND_INS:
                stand_ins.append(_STAND_INS[(node.domain, node.operation_type, since)])
            # A converter may refuse a node's attributes as well as its op.
            converter(node, graph)
        except Exception as e:  # noqa: BLE001 - each converter raises its own kind
            missed[op] = " ".join(str(e).split())[:200] or type(e).__name__
    return len(graph.nodes), missed, sorted(set(stand_ins))


def convert(path: PathLike[str], input_names: tuple[str, ...], output_names: tuple[str, ...]
            ) -> tuple[Any, dict[str, Any]]:
    """The ONNX model at ``path`` as a torch module taking ``input_names``
    positionally and returning a tuple in ``output_names`` order, each output in
    the graph's declared dtype; and what the conversion took (for the compile
    report's details). CompileError, with the ops it could not take as
    fallback_ops, where it cannot convert a node."""
    import onnx
    from onnx.shape_inference import infer_shapes

    _load()
    try:
        model = infer_shapes(onnx.load(str(path)))
    except Exception as e:  # noqa: BLE001 - a protobuf or checker error of the file
        raise CompileError(f"{path}: not a readable ONNX model ({e})") from None
    _without_initializer_inputs(model)
    _weights_as_initializers(model)
    total, missed, stand_ins = misses(model)
    if missed:
        reasons = "; ".join(f"{op}: {why}" for op, why in sorted(missed.items()))
        native = total - sum(1 for n in model.graph.node
                             if op_name(n.domain, n.op_type) in missed)
        raise CompileError(f"onnx2torch cannot convert {total - native} of {total} ONNX node(s) "
                           f"({reasons})", fallback_ops=missed, nodes_total=total,
                           nodes_native=native)
    graph_inputs = [i.name for i in model.graph.input]
    if sorted(graph_inputs) != sorted(input_names):
        raise CompileError(f"{path}: the graph's inputs {graph_inputs} are not the model's "
                           f"{list(input_names)}")
    from onnx2torch import convert as onnx2torch_convert

    try:
        module = onnx2torch_convert(model)
    except Exception as e:  # noqa: BLE001 - what the node scan above did not catch
        raise CompileError(f"onnx2torch failed on {path}: {type(e).__name__}: {e}") from None
    declared = [o.name for o in model.graph.output]
    if sorted(declared) != sorted(output_names):
        raise CompileError(f"{path}: the graph's outputs {declared} are not the model's "
                           f"{list(output_names)}")
    _outputs_by_name(module, model, output_names)
    module.eval()  # fx builds it in training mode: Dropout and BatchNormalization would train
    # The graph's k-th input is the artifact's order[k]-th.
    order = [input_names.index(name) for name in graph_inputs]
    return Graph(module, order, _declared_dtypes(model, output_names)), {
        "onnx_nodes": total, "onnx_converter": f"onnx2torch {_version()}",
        **({"onnx_converter_stand_ins": stand_ins} if stand_ins else {})}


class Graph(torch.nn.Module):
    """A converted graph taking the artifact's inputs in the artifact's order and
    returning each output in the dtype the graph declares.

    At fp16 and bf16 (``autocast``) it runs under torch.autocast, its weights and
    inputs left in fp32: an exported graph holds fp32 constants and Casts to
    float that a cast of the weights would leave mixed with fp16 tensors, and
    autocast runs matmuls and convolutions in the precision whatever they meet."""

    def __init__(self, module: torch.nn.Module, order: list[int], dtypes: list[Any]):
        super().__init__()
        self.graph, self.order, self.dtypes = module, order, dtypes
        self.autocast: torch.dtype | None = None

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = [args[k] for k in self.order]
        if self.autocast is None:
            out = self.graph(*inputs)
        else:
            with torch.autocast(args[0].device.type, dtype=self.autocast):
                out = self.graph(*inputs)
        return tuple(o if d is None or o.dtype == d else o.to(d) for o, d in zip(out, self.dtypes))


def _version() -> str:
    from importlib.metadata import version

    return version("onnx2torch")


def _outputs_by_name(module: Any, model: Any, names: tuple[str, ...]) -> None:
    """Rewrites the traced graph's output as a tuple of the graph outputs
    ``names``, in that order: onnx2torch returns them in the graph's order, and returns a multi-output node whole (TopK's values and
    indices where the graph outputs one of them) and a single output bare."""
    from onnx2torch.onnx_graph import OnnxGraph, ValueType

    graph = OnnxGraph(model.graph)
    fx_graph = module.graph
    by_target = {n.target: n for n in fx_graph.nodes if n.op == "call_module"}
    output = next(n for n in fx_graph.nodes if n.op == "output")
    values = []
    with fx_graph.inserting_before(output):
        for name in names:
            if graph.value_type(name) != ValueType.NODE_OUTPUT:
                raise CompileError(f"graph output {name!r} is an input or a weight, not a "
                                   "node's output: onnx2torch cannot return it",
                                   fallback_ops=["graph output of an input"])
            node, index = graph.value_as_node_output(name)
            value = by_target[node.unique_name]
            if len(node.output_values) > 1:
                value = fx_graph.call_function(_nth_output, (value, index,
                                                             op_name(node.domain,
                                                                     node.operation_type)))
            values.append(value)
    output.args = (tuple(values),)
    fx_graph.eliminate_dead_code()
    module.recompile()


def _nth_output(value: Any, index: int, op: str) -> Any:
    """Output ``index`` of a node whose converter returns a tuple, or returns its
    first output alone (LayerNormalization's Y without Mean and InvStdDev)."""
    if isinstance(value, (tuple, list)) and index < len(value):
        return value[index]
    if index == 0:
        return value
    raise CompileError(f"onnx2torch's {op} gives no output {index}, which the graph returns",
                       fallback_ops=[op])


def _declared_dtypes(model: Any, names: tuple[str, ...]) -> list[Any]:
    """Each of the graph outputs ``names``' dtype as torch names it (None where
    torch has none)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    out = []
    declared = {o.name: o for o in model.graph.output}
    for value in (declared[name] for name in names):
        try:
            np_dtype = tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
            out.append(torch.from_numpy(np.zeros(0, np_dtype)).dtype)
        except (KeyError, TypeError, ValueError):
            out.append(None)
    return out
