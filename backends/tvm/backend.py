"""Apache TVM (Relax) on the host CPU.

The ONNX graph is imported with ``tvm.relax.frontend.onnx.from_onnx``, built by
``tvm.compile`` for an llvm target and run by ``relax.VirtualMachine``.

Dynamic batch: one executable per precision with a symbolic batch dimension
(the frontend turns the ONNX ``dim_param`` into a Relax shape variable), so
every batch size shares one compile; ``batch_sizes`` is not needed.

Coverage: a node whose op the frontend has no converter for, or whose converter
fails on it, is a fallback node. By default the graph is partitioned: maximal
runs of convertible nodes go to TVM, the rest run on onnxruntime's CPU provider,
and ``nodes_native`` counts the TVM share. With ``fallback=none`` such a model
fails to compile instead, naming the ops.

Precisions: fp32, and fp16 through Relax's ToMixedPrecision (fp16 operands,
fp32 accumulation; model inputs and outputs stay fp32). int8 is not offered:
the frontend imports a QDQ graph as explicit quantize/dequantize ops and the
llvm pipeline computes the matmuls and convolutions between them in float, so
an "int8" build would be fake-quantized fp32.

Options (--backend-option KEY=VALUE):
  opt_level  PassContext opt_level, 0-3 (default 3)
  threads    TVM runtime worker threads; process-wide, like TVM_NUM_THREADS
  target     an llvm target as JSON ('{"kind": "llvm", "mcpu": "skylake"}') or a
             tag/kind name; default llvm tuned for this host's CPU
  fallback   "onnxruntime" (default) or "none"
"""
from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from backends.base import Backend, Compiled, CompileError, CompileReport, ModelArtifactLike

_OPTIONS = ("opt_level", "threads", "target", "fallback")
_FALLBACKS = ("onnxruntime", "none")
# Handled by the importer itself rather than through its converter map.
_IMPORTER_OPS = frozenset({"If", "Constant"})
_DEFAULT_DOMAINS = ("", "ai.onnx")
# Mode 1 of runtime.config_threadpool: TVM's default affinity ("big" cores).
_AFFINITY_BIG = 1
INT8_UNSUPPORTED = (
    "int8 is not offered: Relax's ONNX frontend imports QDQ graphs as explicit "
    "quantize/dequantize ops and the llvm pipeline computes between them in float "
    "(no int8 kernels without a custom pattern offload)"
)



@dataclass
class _Segment:
    """A run of nodes executed by one engine, in topological order."""

    native: bool
    nodes: list[Any] = field(default_factory=list)  # onnx.NodeProto
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


class _Options:
    def __init__(self, options: Mapping[str, str]):
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise CompileError(f"TVM: unknown option(s) {', '.join(unknown)}; "
                               f"known: {', '.join(_OPTIONS)}")
        try:
            self.opt_level = int(options.get("opt_level", "3"))
            self.threads = int(options["threads"]) if "threads" in options else None
        except ValueError as e:
            raise CompileError(f"TVM: opt_level and threads take integers: {e}") from e
        if not 0 <= self.opt_level <= 3:
            raise CompileError(f"TVM: opt_level must be 0-3, got {self.opt_level}")
        if self.threads is not None and self.threads < 1:
            raise CompileError(f"TVM: threads must be >= 1, got {self.threads}")
        self.fallback = options.get("fallback", "onnxruntime")
        if self.fallback not in _FALLBACKS:
            raise CompileError(f"TVM: fallback must be one of {', '.join(_FALLBACKS)}, "
                               f"got {self.fallback!r}")
        self.target = options.get("target", "")


def _default_target() -> dict[str, str]:
    import tvm

    # A bare "llvm" target is generic x86-64 (no AVX): tune for this host instead.
    return {"kind": "llvm", "mcpu": str(tvm.target.codegen.llvm_get_system_cpu())}


def _make_target(spec: str) -> Any:
    import tvm

    try:
        if not spec:
            return tvm.target.Target(_default_target())
        return tvm.target.Target(json.loads(spec) if spec.lstrip().startswith("{") else spec)
    except Exception as e:  # TVM raises ValueError or its own FFI errors
        raise CompileError(f"TVM: invalid target {spec!r}: {e}") from e


def _subgraphs(node: Any) -> list[Any]:
    import onnx

    graphs = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            graphs.append(attr.g)
        elif attr.type == onnx.AttributeProto.GRAPHS:
            graphs.extend(attr.graphs)
    return graphs


def _node_reads(node: Any) -> set[str]:
    """Tensors a node reads, including outer-scope names used inside its subgraphs."""
    reads = {name for name in node.input if name}
    for graph in _subgraphs(node):
        local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
        inner: set[str] = set()
        for sub in graph.node:
            inner |= _node_reads(sub)
            local |= set(sub.output)
        reads |= inner - local
    return reads


def _convertible_op(node: Any, convert_map: Mapping[str, Any]) -> bool:
    if node.domain not in _DEFAULT_DOMAINS:
        return False
    if node.op_type not in convert_map and node.op_type not in _IMPORTER_OPS:
        return False
    return all(_convertible_op(sub, convert_map) for g in _subgraphs(node) for sub in g.node)


def _partition(graph: Any, native: list[bool]) -> list[_Segment]:
    """Split the nodes into as few single-engine runs as a greedy schedule finds.

    Kahn's algorithm with one ready queue per engine: stay on the current
    engine while it has ready nodes, switch only when it has none.
    """
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    reads = [_node_reads(node) for node in graph.node]
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
    segments: list[_Segment] = []
    current = bool(ready[True]) or not ready[False]
    while ready[True] or ready[False]:
        if not ready[current]:
            current = not current
        segment = _Segment(native=current)
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
        read = set().union(*(_node_reads(n) for n in segment.nodes))
        segment.inputs = sorted(read - made - initializers)
    for k, (segment, made) in enumerate(zip(segments, produced)):
        later = set(graph_outputs).union(*(s.inputs for s in segments[k + 1:]))
        segment.outputs = sorted(made & later)
    # A run whose results nothing reads computes nothing: it is not built.
    return [s for s in segments if s.outputs]


def _segment_model(model: Any, segment: _Segment, value_info: Mapping[str, Any]) -> Any:
    """A standalone ONNX model of one segment (initializers it reads copied in)."""
    from onnx import helper

    def info(name: str) -> Any:
        if name in value_info:
            return value_info[name]
        return helper.make_empty_tensor_value_info(name)

    read = set().union(*(_node_reads(n) for n in segment.nodes))
    graph = helper.make_graph(
        segment.nodes, f"{model.graph.name}_part",
        [info(n) for n in segment.inputs], [info(n) for n in segment.outputs],
        [t for t in model.graph.initializer if t.name in read])
    part = helper.make_model(graph, opset_imports=list(model.opset_import),
                             functions=list(model.functions))
    part.ir_version = model.ir_version
    return part


def _value_infos(model: Any) -> dict[str, Any]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is best effort; the graph's own infos remain
        inferred = model
    g = inferred.graph
    return {vi.name: vi for vi in [*g.value_info, *g.input, *g.output]}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "numpy"):
        return value.numpy()
    # Shape outputs come back as a runtime shape tuple, scalars as plain numbers.
    return np.asarray(list(value) if isinstance(value, Iterable) else value, dtype=np.int64)


class _TvmPart:
    def __init__(self, vm: Any, inputs: list[str], outputs: list[str]):
        import tvm

        self._main = vm["main"]
        self._tensor = tvm.runtime.tensor
        self.inputs, self.outputs = inputs, outputs

    def run(self, env: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._main(*(self._tensor(np.ascontiguousarray(env[n])) for n in self.inputs))
        values = [result] if len(self.outputs) == 1 else list(result)
        return {name: _to_numpy(v) for name, v in zip(self.outputs, values)}


class _OrtPart:
    def __init__(self, session: Any, inputs: list[str], outputs: list[str]):
        self._session = session
        self.inputs, self.outputs = inputs, outputs

    def run(self, env: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self.outputs, {n: env[n] for n in self.inputs})
        return dict(zip(self.outputs, values))


class TvmCompiled(Compiled):
    def __init__(self, parts: list[_TvmPart | _OrtPart], output_names: list[str],
                 report: CompileReport):
        self._parts = parts
        self._outputs = output_names
        self.report = report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = dict(feeds)
        for part in self._parts:
            env.update(part.run(env))
        return {name: env[name] for name in self._outputs}

    def close(self) -> None:
        self._parts = []


class TvmBackend(Backend):
    name = "TVM"
    requires = ("tvm", "onnx")
    install_hint = "pip install apache-tvm onnx (and onnxruntime for partial graphs)"

    def info(self) -> dict[str, Any]:
        import tvm

        return {"name": self.name, "device": str(tvm.target.codegen.llvm_get_system_cpu()),
                "device_count": 1, "tvm": tvm.__version__,
                "target": json.dumps(_default_target()), "int8": INT8_UNSUPPORTED}

    def precisions(self) -> set[str]:
        return {"fp32", "fp16"}

    def compile(self, artifact: ModelArtifactLike, precision: str, batch_sizes: tuple[int, ...],
                options: Mapping[str, str]) -> Compiled:
        if precision not in self.precisions():
            why = f"; {INT8_UNSUPPORTED}" if precision == "int8" else ""
            raise CompileError(f"TVM: precision {precision!r} is not supported "
                               f"(supported: {', '.join(sorted(self.precisions()))}){why}")
        opts = _Options(options)
        import onnx
        import tvm
        import tvm_ffi
        from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

        start = time.perf_counter()
        path = Path(artifact.onnx_path())
        try:
            onnx.checker.check_model(str(path))
            model = onnx.load(str(path))
        except Exception as e:  # onnx raises DecodeError, ValidationError, OSError...
            raise CompileError(f"TVM: {path.name} is not a valid ONNX model: {e}") from e
        target = _make_target(opts.target)
        if opts.threads is not None:
            tvm.get_global_func("runtime.config_threadpool")(_AFFINITY_BIG, opts.threads)

        convert_map = _get_convert_map()
        native = [_convertible_op(n, convert_map) for n in model.graph.node]
        reasons = {n.op_type: "no Relax ONNX converter" for n, ok in zip(model.graph.node, native)
                   if not ok}
        value_info = _value_infos(model)
        segments, modules = self._import(model, native, reasons, value_info)
        fallback_ops = sorted(reasons)
        if fallback_ops and opts.fallback == "none":
            raise CompileError(
                "TVM: the Relax ONNX frontend cannot convert "
                + "; ".join(f"{op} ({why})" for op, why in sorted(reasons.items()))
                + " (fallback=none)", fallback_ops)

        parts: list[_TvmPart | _OrtPart] = []
        artifact_bytes = 0
        converted_to_fp16 = False
        with tempfile.TemporaryDirectory(prefix="xpuperf-tvm-") as tmp:
            for k, (segment, mod) in enumerate(zip(segments, modules)):
                if mod is None:
                    session, size = self._ort_session(model, segment, value_info)
                    parts.append(_OrtPart(session, segment.inputs, segment.outputs))
                    artifact_bytes += size
                    continue
                if precision == "fp16":
                    mixed = tvm.relax.transform.ToMixedPrecision(out_dtype="float32")(mod)
                    converted_to_fp16 |= not tvm_ffi.structural_equal(mixed, mod)
                    mod = mixed
                vm, size = self._build(mod, target, opts.opt_level, Path(tmp) / f"part{k}.so")
                parts.append(_TvmPart(vm, segment.inputs, segment.outputs))
                artifact_bytes += size
        seconds = time.perf_counter() - start

        native_count = sum(len(s.nodes) for s, m in zip(segments, modules) if m is not None)
        report = CompileReport(
            status="ok", seconds=seconds,
            # ToMixedPrecision leaves a graph with no fp16-eligible op untouched: that ran fp32.
            precision="fp16" if converted_to_fp16 else "fp32",
            nodes_total=len(model.graph.node), nodes_native=native_count,
            fallback_ops=fallback_ops, artifact_bytes=artifact_bytes,
            details={"target": str(target), "opt_level": opts.opt_level,
                     "shapes": "symbolic batch (one executable for all batch sizes)",
                     "segments": [("tvm" if m is not None else "onnxruntime", len(s.nodes))
                                  for s, m in zip(segments, modules)],
                     "fallback_reasons": reasons, "requested_precision": precision},
        )
        return TvmCompiled(parts, [o.name for o in model.graph.output], report)

    def _import(self, model: Any, native: list[bool], reasons: dict[str, str],
                value_info: Mapping[str, Any]) -> tuple[list[_Segment], list[Any]]:
        """Partition and import the TVM segments; a node whose converter fails moves to
        onnxruntime and the graph is partitioned again (each round moves at least one).

        Returns the segments and, per segment, its Relax module (None: onnxruntime).
        """
        from tvm.relax.frontend.onnx import from_onnx

        whole = all(native)
        initializers = {t.name for t in model.graph.initializer}
        # ONNX is SSA: a node's outputs name it (protobuf elements have no stable identity).
        index = {tuple(n.output): i for i, n in enumerate(model.graph.node)}
        while True:
            if whole:
                # The unpartitioned model keeps its own signature: Relax's parameters are
                # its non-initializer inputs in graph order.
                segments = [_Segment(native=True, nodes=list(model.graph.node),
                                     inputs=[i.name for i in model.graph.input
                                             if i.name not in initializers],
                                     outputs=[o.name for o in model.graph.output])]
            else:
                segments = _partition(model.graph, native)
            modules: list[Any] = []
            failed: dict[tuple[str, ...], str] = {}
            for segment in segments:
                if not segment.native:
                    modules.append(None)
                    continue
                part = model if whole else _segment_model(model, segment, value_info)
                try:
                    with warnings.catch_warnings():
                        # The frontend warns on every renamed or symbolic input.
                        warnings.simplefilter("ignore")
                        modules.append(from_onnx(part))
                except Exception as e:  # the frontend raises anything from KeyError to TVMError
                    culprits = self._failing_nodes(model, segment, value_info, from_onnx)
                    if not culprits:
                        # Only the combination fails (say, shape arithmetic the importer
                        # folds): no single node to move, so name the segment's ops.
                        raise CompileError(
                            f"TVM: the Relax ONNX frontend failed on the graph but on none of "
                            f"its nodes alone: {type(e).__name__}: {e}",
                            [n.op_type for n in segment.nodes]) from e
                    failed.update(culprits)
            if not failed:
                return segments, modules
            for key, why in failed.items():
                native[index[key]] = False
                reasons.setdefault(model.graph.node[index[key]].op_type, why)
            whole = False

    @staticmethod
    def _failing_nodes(model: Any, segment: _Segment, value_info: Mapping[str, Any],
                       from_onnx: Callable[[Any], Any]) -> dict[tuple[str, ...], str]:
        """Import each node of a failed segment alone; the ones that fail (keyed by
        their outputs), with why."""
        failed: dict[tuple[str, ...], str] = {}
        for node in segment.nodes:
            single = _Segment(native=True, nodes=[node])
            single.inputs = sorted(_node_reads(node) - {t.name for t in model.graph.initializer})
            single.outputs = [o for o in node.output if o]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from_onnx(_segment_model(model, single, value_info))
            except Exception as e:  # noqa: BLE001 - see _import
                failed[tuple(node.output)] = f"converter failed: {type(e).__name__}: {str(e)[:200]}"
        return failed

    @staticmethod
    def _build(mod: Any, target: Any, opt_level: int, so_path: Path) -> tuple[Any, int]:
        import tvm
        from tvm import relax

        try:
            with tvm.transform.PassContext(opt_level=opt_level):
                executable = tvm.compile(mod, target)
            # The exported shared library is the deployable artifact: size it, run it.
            executable.export_library(str(so_path))
            vm = relax.VirtualMachine(tvm.runtime.load_module(str(so_path)), tvm.cpu())
        except Exception as e:  # TVM raises its FFI errors, ValueError, RuntimeError...
            raise CompileError(f"TVM: tvm.compile failed for target {target}: "
                               f"{type(e).__name__}: {e}") from e
        return vm, so_path.stat().st_size

    @staticmethod
    def _ort_session(model: Any, segment: _Segment,
                     value_info: Mapping[str, Any]) -> tuple[Any, int]:
        ops = sorted({n.op_type for n in segment.nodes})
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise CompileError(
                f"TVM: ops {', '.join(ops)} need the onnxruntime fallback, which is not "
                "installed (pip install onnxruntime, or fallback=none)", ops) from e
        blob = _segment_model(model, segment, value_info).SerializeToString()
        try:
            session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own unexported exception types
            raise CompileError(f"TVM: the onnxruntime fallback rejected ops "
                                    f"{', '.join(ops)}: {e}", ops) from e
        return session, len(blob)
