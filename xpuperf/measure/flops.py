"""FLOPs and bytes of one batch, counted from an ONNX graph (pure: a graph in,
numbers out; onnx is imported inside the functions that need it).

Shapes come from onnx's shape inference on a copy of the graph whose batch axes
are set to the batch size: an input's first axis when its size is not fixed (an
input of fixed shape, such as prompts fed whole with every batch, has none), and
whose other free axes take the sizes the zoo declares (``input_shapes``: a file
with a free sequence axis is counted at the declared length). An axis that stays
free is named in ``free_axes``: what depends on it is missing from the count.
Exported transformers compute shapes at run time
(Shape -> Gather -> Slice of a position table), which inference does not follow,
so tensors small enough to be shapes are first folded to constants with onnx's
reference evaluator, as often as that uncovers more shapes.

FLOPs per node (a multiply-add is 2 FLOPs, as in peak FLOP/s figures):

* MatMul, including the batched, attention-shaped ones (Q x K^T, scores x V):
  2 x output elements x the contracted dimension K.
* Gemm: 2 x M x N x K, + M x N when C is added.
* Conv: 2 x output elements x (input channels / groups) x kernel elements, +
  output elements with a bias; ConvTranspose: 2 x input elements x (output
  channels / groups) x kernel elements (+ bias).
* RNN, GRU, LSTM (1, 3, 4 gates): per step, direction and sample,
  2 x gates x hidden x (input + hidden) for the input and recurrent
  projections, + 3 x gates x hidden for biases, activations and the state.
* Elementwise arithmetic on float tensors: 1 per output element (a
  transcendental counts as one); variadic Sum/Max/Min: inputs - 1 per element.
* Softmax 5, LayerNormalization 7, BatchNormalization 2 per element; reductions
  and global pools 1 per input element; windowed pools kernel elements per
  output element.
* Data movement (Reshape, Transpose, Gather, Concat, Cast, ...): 0.

Any other op with a float output is listed in ``uncounted``.

Bytes are the traffic of an unfused execution: every node reads its inputs
(weights included, so they are amortised over the batch) and writes its
outputs; views (Reshape, Squeeze, Identity, ...) move nothing and a Gather reads
only the rows it gathers. ``float_bytes`` prices float tensors at a precision's
size (2 for fp16, 1 for int8) rather than the graph's fp32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Mapping, Sequence

# Ops that only move or reshape data.
MOVEMENT = frozenset({
    "Reshape", "Transpose", "Gather", "GatherElements", "GatherND", "Concat", "Slice", "Split",
    "Squeeze", "Unsqueeze", "Flatten", "Identity", "Cast", "CastLike", "Expand", "Tile", "Pad",
    "Shape", "Size", "Constant", "ConstantOfShape", "Range", "Resize", "Upsample",
    "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "Trilu", "OneHot",
    "EyeLike", "NonZero", "TopK", "ArgMax", "ArgMin", "Dropout",
})
# Views: an implementation needs no copy for them, so they move no bytes.
VIEWS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size",
                   "Constant", "Dropout"})
ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Abs", "Relu", "LeakyRelu",
    "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Exp",
    "Log", "Sin", "Cos", "Tan", "Floor", "Ceil", "Round", "Clip", "Where", "Mod", "Softplus",
    "Softsign", "Sign", "Mish", "Gelu", "ThresholdedRelu", "Shrink", "IsNaN", "IsInf",
})
VARIADIC = frozenset({"Sum", "Max", "Min", "Mean"})
# FLOPs per output element of normalisations.
PER_ELEMENT = {"Softmax": 5, "LogSoftmax": 5, "LayerNormalization": 7,
               "InstanceNormalization": 7, "GroupNormalization": 7, "BatchNormalization": 2}
REDUCTIONS = frozenset({"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                        "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp",
                        "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
WINDOWED = frozenset({"MaxPool", "AveragePool", "LpPool"})
RECURRENT_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
# Folding stops at tensors this large: shapes and index tables are smaller, and
# folding real activations would run the model.
FOLD_LIMIT = 1 << 16
_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
# Bytes per element by TensorProto data type; 4-bit types are rounded up to one.
_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8,
               14: 8, 15: 16, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1}
_NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike",
                               "RandomUniformLike", "Multinomial", "Bernoulli"})


@dataclass(frozen=True)
class GraphCost:
    """What one batch of ``batch_size`` costs. ``unknown`` counts the nodes whose
    shapes stayed unknown (their cost is missing from the totals); ``free_axes``
    the graph inputs' axes of no size ("x[1]"), the usual cause."""

    batch_size: int
    flops: int
    bytes: int
    flops_by_op: dict[str, int] = field(default_factory=dict)
    uncounted: tuple[str, ...] = ()
    unknown: int = 0
    free_axes: tuple[str, ...] = ()

    @property
    def flops_per_sample(self) -> float:
        return self.flops / self.batch_size

    @property
    def bytes_per_sample(self) -> float:
        return self.bytes / self.batch_size


def count_file(path: str | PathLike[str], batch_size: int = 1, float_bytes: int | None = None,
               input_shapes: Mapping[str, Sequence[int | None]] | None = None) -> GraphCost:
    """``graph_cost`` of an ONNX file; weights stored outside it are not read."""
    import onnx

    return graph_cost(onnx.load(str(path), load_external_data=False), batch_size, float_bytes,
                      input_shapes)


def graph_cost(model: Any, batch_size: int = 1, float_bytes: int | None = None,
               input_shapes: Mapping[str, Sequence[int | None]] | None = None) -> GraphCost:
    """FLOPs and bytes of one batch through ``model`` (an onnx.ModelProto);
    ``input_shapes`` gives inputs' shapes in this batch (a size that is not a
    positive int leaves the axis as the graph has it)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    graph, shapes, dtypes, free_axes = _infer(model, batch_size, input_shapes or {})
    by_op: dict[str, int] = {}
    uncounted: set[str] = set()
    total_bytes = 0
    unknown = 0

    def nbytes(name: str) -> int:
        dtype = dtypes.get(name, 1)
        size = float_bytes if float_bytes is not None and dtype in _FLOAT_TYPES \
            else _ELEM_BYTES.get(dtype, 4)
        return _elements(shapes[name]) * size

    for node in graph.node:
        names = [x for x in (*node.input, *node.output) if x]
        if any(x not in shapes for x in names):
            unknown += 1
            continue
        flops = _node_flops(node, shapes, dtypes)
        if flops is None:
            uncounted.add(node.op_type)
        elif flops:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + flops
        if node.op_type in VIEWS:
            continue
        if node.op_type == "Gather":  # reads the gathered rows and the indices only
            total_bytes += 2 * nbytes(node.output[0]) + nbytes(node.input[1])
        else:
            total_bytes += sum(nbytes(x) for x in names)
    return GraphCost(batch_size=batch_size, flops=sum(by_op.values()), bytes=total_bytes,
                     flops_by_op=by_op, uncounted=tuple(sorted(uncounted)), unknown=unknown,
                     free_axes=free_axes)


def gemm_model(n: int, seed: int = 0) -> Any:
    """An n x n by n x n MatMul (input ``a`` with a batch axis of n rows, weight
    ``w``, output ``c``): 2 n^3 FLOPs per run, the usual peak FLOP/s probe."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(seed).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["c"])], "peak_gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def gemm_flops(n: int) -> int:
    return 2 * n ** 3


def mfu(flops_per_sample: float | None, qps: float | None, peak_flops: float | None) -> float | None:
    """Model FLOP utilisation: FLOPs achieved (per sample x samples/s) over peak."""
    if not flops_per_sample or not qps or not peak_flops:
        return None
    return flops_per_sample * qps / peak_flops


# --------------------------------------------------------------------------- per node

def _node_flops(node: Any, shapes: dict[str, tuple[int, ...]],
                dtypes: dict[str, int]) -> int | None:
    """FLOPs of one node; 0 for data movement, None when no formula applies."""
    op = node.op_type
    out = shapes[node.output[0]] if node.output else ()
    n_out = _elements(out)
    if op == "MatMul":
        a = shapes[node.input[0]]
        return 2 * n_out * a[-1]
    if op == "Gemm":
        a = shapes[node.input[0]]
        k = a[0] if _attr(node, "transA", 0) else a[1]
        with_c = len(node.input) > 2 and bool(node.input[2])
        return 2 * n_out * k + (n_out if with_c else 0)
    if op == "Conv":
        w = shapes[node.input[1]]
        bias = n_out if len(node.input) > 2 and node.input[2] else 0
        return 2 * n_out * w[1] * _elements(w[2:]) + bias
    if op == "ConvTranspose":  # W is (C_in, C_out / groups, kernel...)
        w = shapes[node.input[1]]
        bias = n_out if len(node.input) > 2 and node.input[2] else 0
        return 2 * _elements(shapes[node.input[0]]) * w[1] * _elements(w[2:]) + bias
    if op in RECURRENT_GATES:  # W is (directions, gates x hidden, input)
        w = shapes[node.input[1]]
        directions, gates_hidden, inputs = w
        hidden = gates_hidden // RECURRENT_GATES[op]
        steps_x_batch = _elements(shapes[node.input[0]]) // inputs
        return directions * steps_x_batch * (2 * gates_hidden * (inputs + hidden) + 3 * gates_hidden)
    if op in MOVEMENT:
        return 0
    if dtypes.get(node.output[0]) not in _FLOAT_TYPES:
        return 0  # shape and index arithmetic, comparisons, masks
    if op in ELEMENTWISE:
        return n_out
    if op in VARIADIC:
        return n_out * (len([x for x in node.input if x]) - 1 + (op == "Mean"))
    if op in PER_ELEMENT:
        return n_out * PER_ELEMENT[op]
    if op in REDUCTIONS:
        return _elements(shapes[node.input[0]])
    if op in WINDOWED:
        return n_out * _elements(tuple(_attr(node, "kernel_shape", [])))
    return None


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _has_subgraph(node: Any) -> bool:
    from onnx import AttributeProto

    return any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute)


# --------------------------------------------------------------------------- shapes

def _infer(model: Any, batch_size: int, input_shapes: Mapping[str, Sequence[int | None]]
           ) -> tuple[Any, dict[str, tuple[int, ...]], dict[str, int], tuple[str, ...]]:
    """(graph with small constants folded, {tensor: shape}, {tensor: TensorProto
    data type}, the inputs' axes left free) with every graph input's free axes
    bound: to ``input_shapes``' sizes, and a first axis it does not give (the
    batch axis) to ``batch_size``."""
    import onnx
    from onnx import shape_inference

    m = onnx.ModelProto()
    m.CopyFrom(model)
    weights = {i.name for i in m.graph.initializer}
    free_axes = []
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in weights:
            continue
        declared = list(input_shapes.get(inp.name, ()))
        sizes = declared if len(declared) == len(dims) else [batch_size] + [None] * (len(dims) - 1)
        for i, (dim, size) in enumerate(zip(dims, sizes)):
            if dim.HasField("dim_value"):
                continue
            if isinstance(size, int) and size > 0:
                dim.Clear()
                dim.dim_value = size
            else:
                free_axes.append(f"{inp.name}[{i}]")
    while True:
        inferred = shape_inference.infer_shapes(m, data_prop=True)
        shapes, types = _shapes(inferred.graph)
        if not _fold(m, shapes, types):
            break
    return inferred.graph, shapes, types, tuple(free_axes)


def _shapes(graph: Any) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        types[vi.name] = t.elem_type
        if all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
        types[init.name] = init.data_type
    return shapes, types


def _fold(model: Any, shapes: dict[str, tuple[int, ...]], types: dict[str, int]) -> bool:
    """Replace nodes whose outputs are small constants by initializers; True when
    any was folded (inference may then find more shapes)."""
    import numpy as np
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    opsets = {o.domain: o.version for o in model.opset_import}
    values: dict[str, Any] = {}
    for init in graph.initializer:
        if _elements(tuple(init.dims)) <= FOLD_LIMIT and not init.external_data:
            values[init.name] = numpy_helper.to_array(init)
    kept, folded = [], []
    for node in graph.node:
        result = None
        if node.op_type == "Shape" and node.input[0] in shapes:
            dims = np.array(shapes[node.input[0]], dtype=np.int64)
            result = [dims[_attr(node, "start", 0):_attr(node, "end", None)]]
        elif node.domain in ("", "ai.onnx") and node.op_type not in _NONDETERMINISTIC and \
                all(x in values for x in node.input if x) and not _has_subgraph(node):
            try:
                result = ReferenceEvaluator(node, opsets=opsets).run(
                    None, {x: values[x] for x in node.input if x})
            except Exception:  # noqa: BLE001 - an op the evaluator lacks stays in the graph
                result = None
        if result is None or any(np.asarray(r).size > FOLD_LIMIT for r in result):
            kept.append(node)
            continue
        for name, value in zip(node.output, result):
            values[name] = np.asarray(value)
        folded.append(node)
    if not folded:
        return False
    produced = {o for n in folded for o in n.output}
    needed = {x for n in kept for x in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(values[name], name)
                             for name in sorted(produced & needed))
    # A folded tensor's stale value_info would contradict its new initializer.
    stale = [vi for vi in graph.value_info if vi.name in produced]
    for vi in stale:
        graph.value_info.remove(vi)
    return True
