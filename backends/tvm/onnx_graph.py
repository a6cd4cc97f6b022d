"""The ONNX graph surgery the TVM backend does before Relax sees a graph: a fixed
batch axis, shape inference, constant folding, and the partition into runs of
nodes for TVM and for onnxruntime, each cut out as a model of its own. Pure
onnx and numpy: no TVM here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

DEFAULT_DOMAINS = ("", "ai.onnx")
# Never folded: their value is drawn anew at every run.
_RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform",
                         "RandomUniformLike", "Multinomial", "Bernoulli"})
# Folding is for shape arithmetic; a larger result (a mask or a weight transform)
# stays computed at run time rather than stored in every executable.
_FOLD_MAX_ELEMENTS = 1 << 16


@dataclass
class Segment:
    """A run of nodes executed by one engine, in topological order."""

    native: bool
    nodes: list[Any] = field(default_factory=list)  # onnx.NodeProto
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def subgraphs(node: Any) -> list[Any]:
    import onnx

    graphs = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def node_reads(node: Any) -> set[str]:
    """Tensors a node reads, including outer-scope names used inside its subgraphs."""
    reads = {name for name in node.input if name}
    for graph in subgraphs(node):
        local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
        inner: set[str] = set()
        for sub in graph.node:
            inner |= node_reads(sub)
            local |= set(sub.output)
        reads |= inner - local
    return reads


def batch_axis_inputs(model: Any) -> list[str]:
    """The graph inputs whose first dimension is symbolic: those with a batch axis."""
    initializers = {t.name for t in model.graph.initializer}
    return [v.name for v in model.graph.input
            if v.name not in initializers and v.type.tensor_type.shape.dim
            and not v.type.tensor_type.shape.dim[0].HasField("dim_value")]


def _with_static_batch(model: Any, batch_inputs: list[str], batch: int) -> Any:
    """A copy of ``model`` whose batch axis is ``batch``, in the inputs and wherever
    the outputs name the same dimension."""
    import onnx

    static = onnx.ModelProto()
    static.CopyFrom(model)
    graph = static.graph
    batch_dims = [v.type.tensor_type.shape.dim[0] for v in graph.input if v.name in batch_inputs]
    symbols = {d.dim_param for d in batch_dims} - {""}
    for dim in batch_dims:
        dim.dim_value = batch
    for v in graph.output:
        for dim in v.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in symbols:
                dim.dim_value = batch
    return static


def static_graph(model: Any, batch_inputs: list[str], batch: int) -> tuple[Any, int]:
    """``model`` at batch size ``batch``, shapes inferred and constants folded; and
    how many nodes were folded.

    Inference and folding alternate until nothing more folds: a Slice or Range whose
    bounds were just folded has a static shape only in the next round of inference.
    """
    static = _with_static_batch(model, batch_inputs, batch)
    folded = 0
    while True:
        # The exporter's (or the last round's) shapes are less static: infer them anew.
        del static.graph.value_info[:]
        static = infer_shapes(static)
        count = _fold_constants(static)
        if not count:
            return static, folded
        folded += count


def infer_shapes(model: Any) -> Any:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is best effort; the graph's own infos remain
        return model


def value_infos(inferred: Any) -> dict[str, Any]:
    g = inferred.graph
    return {vi.name: vi for vi in [*g.value_info, *g.input, *g.output]}


def _fold_constants(model: Any) -> int:
    """Replace, in place, the nodes whose results are known at compile time (from
    initializers, Constants and the Shape of a tensor whose shape inference made
    static) by initializers; return how many nodes went.

    Relax's frontend folds such chains only partly (a ConstantOfShape of an empty
    shape breaks broadcast_to; shape tensors it cannot fold reach the VM code
    generator as ops it cannot emit); onnx's reference evaluator computes them all.
    """
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    graph_inputs = {v.name for v in g.input}
    # An initializer that is also a graph input is a default the caller may override.
    initializers = {t.name: t for t in g.initializer if t.name not in graph_inputs}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*g.value_info, *g.input, *g.output]
              if v.type.tensor_type.HasField("shape")
              and all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)}
    opsets = {o.domain: o.version for o in model.opset_import}
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:  # initializers are converted only when read
        if name not in values:
            values[name] = numpy_helper.to_array(initializers[name])
        return values[name]

    folded: set[int] = set()
    for i, node in enumerate(g.node):
        if node.domain not in DEFAULT_DOMAINS or node.op_type in _RANDOM_OPS or subgraphs(node):
            continue
        inputs = [n for n in node.input if n]
        try:
            if node.op_type == "Shape" and inputs[0] in shapes:
                attrs = {a.name: a.i for a in node.attribute}
                dims = shapes[inputs[0]][attrs.get("start", 0):attrs.get("end")]
                results = [np.array(dims, dtype=np.int64)]
            elif all(n in values or n in initializers for n in inputs):
                results = ReferenceEvaluator(node, opsets=opsets).run(
                    None, {n: value(n) for n in inputs})
            else:
                continue
        except Exception:  # noqa: BLE001, S112 - an op the reference evaluator lacks is left to TVM
            continue
        if len(results) != len(node.output) or not all(isinstance(r, np.ndarray) for r in results):
            continue  # a sequence, or an optional output left out: no initializer holds it
        values.update((name, v) for name, v in zip(node.output, results) if name)
        folded.add(i)

    # Backwards, so that a node's readers are settled before it: a folded node whose
    # result is too large, or is a graph output, stays (and its inputs are then read).
    outputs = {o.name for o in g.output}
    needed = set(outputs)
    for i in reversed(range(len(g.node))):
        node = g.node[i]
        if i in folded:
            made = [n for n in node.output if n in needed]
            if not any(n in outputs or values[n].size > _FOLD_MAX_ELEMENTS for n in made):
                continue
            folded.discard(i)
        needed |= node_reads(node)
    constants = [numpy_helper.from_array(values[n], n)
                 for i in sorted(folded) for n in g.node[i].output if n in needed]
    kept = [node for i, node in enumerate(g.node) if i not in folded]
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(constants)
    return len(folded)


def partition(graph: Any, native: list[bool]) -> list[Segment]:
    """Split the nodes into as few single-engine runs as a greedy schedule finds.

    Kahn's algorithm with one ready queue per engine: stay on the current
    engine while it has ready nodes, switch only when it has none.
    """
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    reads = [node_reads(node) for node in graph.node]
    users: list[list[int]] = [[] for _ in graph.node]
    pending = [0] * len(graph.node)
    for i, names in enumerate(reads):
        deps = {producer[n] for n in names if n in producer}
        pending[i] = len(deps)
        for d in deps:
            users[d].append(i)
    ready: dict[bool, list[int]] = {True: [], False: []}
    for i, count in enumerate(pending):
        if count == 0:
            ready[native[i]].append(i)
    segments: list[Segment] = []
    current = bool(ready[True]) or not ready[False]
    while ready[True] or ready[False]:
        if not ready[current]:
            current = not current
        segment = Segment(native=current)
        while ready[current]:
            i = ready[current].pop(0)
            segment.nodes.append(graph.node[i])
            for u in users[i]:
                pending[u] -= 1
                if pending[u] == 0:
                    ready[native[u]].append(u)
        segments.append(segment)

    initializers = {t.name for t in graph.initializer}
    graph_outputs = [o.name for o in graph.output]
    produced = [{o for node in s.nodes for o in node.output if o} for s in segments]
    for segment, made in zip(segments, produced):
        read = set().union(*(node_reads(n) for n in segment.nodes))
        segment.inputs = sorted(read - made - initializers)
    for k, (segment, made) in enumerate(zip(segments, produced)):
        later = set(graph_outputs).union(*(s.inputs for s in segments[k + 1:]))
        segment.outputs = sorted(made & later)
    # A run whose results nothing reads computes nothing: it is not built.
    return [s for s in segments if s.outputs]


def segment_model(model: Any, segment: Segment, value_info: Mapping[str, Any]) -> Any:
    """A standalone ONNX model of one segment (initializers it reads copied in)."""
    from onnx import helper

    def info(name: str) -> Any:
        if name in value_info:
            return value_info[name]
        return helper.make_empty_tensor_value_info(name)

    read = set().union(*(node_reads(n) for n in segment.nodes))
    graph = helper.make_graph(
        segment.nodes, f"{model.graph.name}_part",
        [info(n) for n in segment.inputs], [info(n) for n in segment.outputs],
        [t for t in model.graph.initializer if t.name in read])
    part = helper.make_model(graph, opset_imports=list(model.opset_import),
                             functions=list(model.functions))
    part.ir_version = model.ir_version
    return part
