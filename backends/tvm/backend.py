"""Apache TVM (Relax) on the host CPU.

The ONNX graph is imported with ``tvm.relax.frontend.onnx.from_onnx``, built by
``tvm.compile`` for an llvm target and run by ``relax.VirtualMachine``.

Static batch: when ``batch_sizes`` is given, each batch size gets its own
executable with the batch axis fixed. The exported graph's symbolic batch sends
the frontend's shape arithmetic down paths it handles badly (ConstantOfShape,
Shape -> Gather -> Concat chains end in broadcast_to rank errors or ops the VM
code generator cannot emit); with static input shapes, onnx shape inference
knows every such shape and ``onnx_graph.static_graph`` evaluates those chains with
onnx's reference evaluator before the import, so TVM sees plain constants.
``Compiled.run`` picks the executable by the batch dimension of the feeds. With
no ``batch_sizes`` (per-op conformance cases: fixed shapes) or a graph without a
symbolic batch axis, the graph is built once as it is.

Coverage: a node whose op the frontend has no converter for, or whose converter
fails on it, is a fallback node. By default the graph is partitioned: maximal
runs of convertible nodes go to TVM, the rest run on onnxruntime's CPU provider,
and ``nodes_native`` counts the TVM share (nodes folded at compile time count as
native); backends/tvm/runtime.py runs the parts in order. All batch sizes share one partition, so the report's counts are the
model's. With ``fallback=none`` such a model fails to compile instead, naming the ops.

Precisions: fp32, and fp16 through Relax's ToMixedPrecision (fp16 operands,
fp32 accumulation; model inputs and outputs stay fp32; see _cast_call_tir_inputs
for the pass's bug worked around). int8 is not offered:
the frontend imports a QDQ graph as explicit quantize/dequantize ops and the
llvm pipeline computes the matmuls and convolutions between them in float, so
an "int8" build would be fake-quantized fp32.

Cache: with a ``cache_dir``, the exported shared libraries, the onnxruntime
segment models and ``report.json`` (written last: its presence marks a complete
entry) are kept there; a later compile loads them instead of compiling. Without
one (per-op cases, the contract kit) nothing is exported: the VM runs the built
executable in memory either way, and ``artifact_bytes`` counts the onnxruntime
segments alone.

Options (--backend-option KEY=VALUE):
  opt_level  PassContext opt_level, 0-3 (default 3)
  threads    TVM runtime worker threads; process-wide, like TVM_NUM_THREADS
  target     an llvm target as JSON ('{"kind": "llvm", "mcpu": "skylake"}') or a
             tag/kind name; default llvm tuned for this host's CPU
  fallback   "onnxruntime" (default) or "none"
  schedule   "loops" (default): the tuning-free loop schedule of backends/tvm/schedule.py;
             "none": TVM's CPU pipeline as is (serial, unscheduled kernels)
"""
from __future__ import annotations

import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from backends import hostcpu
from backends.base import (CACHED_REPORT, Backend, Compiled, CompileError, CompileReport,
                           ModelArtifactLike, load_cached, save_report, write_atomically)
from backends.tvm.onnx_graph import (DEFAULT_DOMAINS, Segment, batch_axis_inputs, infer_shapes,
                                     node_reads, partition, segment_model, static_graph,
                                     subgraphs, value_infos)
from backends.tvm.runtime import OrtPart, TvmCompiled, TvmPart, load_part, ort_session
from backends.tvm.schedule import SCHEDULES, KernelCount, relax_pipeline

_OPTIONS = ("opt_level", "threads", "target", "fallback", "schedule")
_FALLBACKS = ("onnxruntime", "none")
# Handled by the importer itself rather than through its converter map.
_IMPORTER_OPS = frozenset({"If", "Constant"})
# Mode 1 of runtime.config_threadpool: TVM's default affinity ("big" cores).
_AFFINITY_BIG = 1
INT8_UNSUPPORTED = (
    "int8 is not offered: Relax's ONNX frontend imports QDQ graphs as explicit "
    "quantize/dequantize ops and the llvm pipeline computes between them in float "
    "(no int8 kernels without a custom pattern offload)"
)


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
        self.schedule = options.get("schedule", SCHEDULES[0])
        if self.schedule not in SCHEDULES:
            raise CompileError(f"TVM: schedule must be one of {', '.join(SCHEDULES)}, "
                               f"got {self.schedule!r}")


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


def _convertible_op(node: Any, convert_map: Mapping[str, Any]) -> bool:
    if node.domain not in DEFAULT_DOMAINS:
        return False
    if node.op_type not in convert_map and node.op_type not in _IMPORTER_OPS:
        return False
    return all(_convertible_op(sub, convert_map) for g in subgraphs(node) for sub in g.node)


def _cast_call_tir_inputs(mod: Any) -> Any:
    """``mod`` with an astype to its own dtype before each tensor argument of a
    call_tir (what the frontend emits for Pad, among others).

    ToMixedPrecision keeps a call_tir in fp32 and, when an fp16 tensor reaches it,
    tries to cast the callee along with the arguments and fails ("Expected
    TensorType, but got R.Callable"); an astype in between is an ordinary op that it
    casts back to fp32 correctly.
    """
    from tvm import relax

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):  # type: ignore[misc]
        def visit_call_(self, call: Any) -> Any:
            call = super().visit_call_(call)
            if getattr(call.op, "name", "") != "relax.call_tir":
                return call
            args = [relax.op.astype(a, a.ty.dtype) if isinstance(a.ty, relax.TensorType) else a
                    for a in call.args[1].fields]
            return relax.op.call_tir(call.args[0], relax.Tuple(args), list(call.ty_args))

    rewriter = Rewriter(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get()


def _to_mixed_precision(mod: Any) -> tuple[Any, bool]:
    """``mod`` in fp16 with fp32 accumulation, and whether anything changed (a graph
    with no fp16-eligible op is left as it was)."""
    import tvm
    import tvm_ffi

    try:
        prepared = _cast_call_tir_inputs(mod)
        mixed = tvm.relax.transform.ToMixedPrecision(out_dtype="float32")(prepared)
    except Exception as e:  # TVM raises its FFI errors
        raise CompileError(f"TVM: fp16 conversion (relax ToMixedPrecision) failed: "
                           f"{type(e).__name__}: {e}") from e
    if tvm_ffi.structural_equal(mixed, prepared):
        return mod, False
    return mixed, True


class TvmBackend(Backend):
    name = "TVM"
    requires = ("tvm", "onnx")

    def info(self) -> dict[str, Any]:
        import tvm

        return {"name": self.name, "device": str(tvm.target.codegen.llvm_get_system_cpu()),
                "device_count": 1, "tvm": tvm.__version__,
                "target": json.dumps(_default_target()), "int8": INT8_UNSUPPORTED}

    def energy_meter(self, options: Mapping[str, str]) -> hostcpu.RaplMeter:
        return hostcpu.energy_meter()  # it computes on the host's CPU packages

    def capabilities(self) -> dict[str, bool]:
        # The host's, though the default target (the host's own CPU, as LLVM
        # names it) does not follow ONEDNN_MAX_CPU_ISA: pass a target for that.
        return hostcpu.capabilities()

    def precisions(self) -> set[str]:
        return {"fp32", "fp16"}

    def compile(self, artifact: ModelArtifactLike, precision: str, batch_sizes: tuple[int, ...],
                options: Mapping[str, str], cache_dir: Path | None = None) -> Compiled:
        if precision not in self.precisions():
            why = f"; {INT8_UNSUPPORTED}" if precision == "int8" else ""
            raise CompileError(f"TVM: precision {precision!r} is not supported "
                               f"(supported: {', '.join(sorted(self.precisions()))}){why}")
        opts = _Options(options)
        import onnx
        import tvm
        from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

        if opts.threads is not None:
            tvm.get_global_func("runtime.config_threadpool")(_AFFINITY_BIG, opts.threads)
        if cache_dir is not None:
            hit = load_cached(cache_dir, lambda saved: (
                {entry["batch"]: [load_part(Path(cache_dir), part) for part in entry["parts"]]
                 for entry in saved["executables"]}, saved["batch_input"], saved["outputs"]))
            if hit is not None:
                executables, batch_input, outputs = hit[0]
                return TvmCompiled(executables, batch_input, tuple(artifact.input_names),
                                   outputs, hit[1])

        start = time.perf_counter()
        path = Path(artifact.onnx_path())
        try:
            onnx.checker.check_model(str(path))
            model = onnx.load(str(path))
        except Exception as e:  # onnx raises DecodeError, ValidationError, OSError...
            raise CompileError(f"TVM: {path.name} is not a valid ONNX model: {e}") from e
        target = _make_target(opts.target)

        batch_inputs = batch_axis_inputs(model) if batch_sizes else []
        # None: the graph as exported, one executable for any feed.
        sizes: list[int | None] = sorted(set(batch_sizes)) if batch_inputs else [None]
        graphs: dict[int | None, tuple[Any, dict[str, Any]]] = {}
        folded: dict[int | None, int] = {}
        for bs in sizes:
            graph, folded[bs] = ((model, 0) if bs is None
                                 else static_graph(model, batch_inputs, bs))
            graphs[bs] = (graph, value_infos(infer_shapes(graph) if bs is None else graph))

        convert_map = _get_convert_map()
        offload: set[tuple[str, ...]] = set()
        reasons: dict[str, str] = {}
        imported: dict[int | None, tuple[set[tuple[str, ...]], list[Segment], list[Any]]] = {}
        # All batch sizes share one partition: one imported before a later one moved
        # more nodes to onnxruntime is imported again.
        while stale := [bs for bs in sizes if bs not in imported or imported[bs][0] != offload]:
            for bs in stale:
                graph, value_info = graphs[bs]
                segments, modules = self._import(graph, offload, reasons, value_info, convert_map)
                imported[bs] = (set(offload), segments, modules)
        fallback_ops = sorted(reasons)
        if fallback_ops and opts.fallback == "none":
            raise CompileError(
                "TVM: the Relax ONNX frontend cannot convert "
                + "; ".join(f"{op} ({why})" for op, why in sorted(reasons.items()))
                + " (fallback=none)", fallback_ops)

        output_names = [o.name for o in model.graph.output]
        with tempfile.TemporaryDirectory(prefix="xpuperf-tvm-") as tmp:
            out_dir = Path(cache_dir) if cache_dir is not None else Path(tmp)
            out_dir.mkdir(parents=True, exist_ok=True)
            # Until the new report is written, the entry is incomplete.
            (out_dir / CACHED_REPORT).unlink(missing_ok=True)
            executables: dict[int | None, list[TvmPart | OrtPart]] = {}
            entries: list[dict[str, Any]] = []
            converted_to_fp16 = False
            kernels = KernelCount()
            for bs in sizes:
                graph, value_info = graphs[bs]
                _, segments, modules = imported[bs]
                parts: list[TvmPart | OrtPart] = []
                files: list[dict[str, Any]] = []
                for k, (segment, mod) in enumerate(zip(segments, modules)):
                    stem = f"{'any' if bs is None else f'bs{bs}'}-part{k}"
                    if mod is None:
                        file = out_dir / f"{stem}.onnx"
                        blob = segment_model(graph, segment, value_info).SerializeToString()
                        write_atomically(file, lambda p, blob=blob: p.write_bytes(blob))
                        ops = sorted({n.op_type for n in segment.nodes})
                        part: TvmPart | OrtPart = OrtPart(ort_session(file, ops),
                                                             segment.inputs, segment.outputs)
                    else:
                        if precision == "fp16":
                            mod, converted = _to_mixed_precision(mod)
                            converted_to_fp16 |= converted
                        file = out_dir / f"{stem}.so"
                        vm = self._build(mod, target, opts, kernels,
                                         file if cache_dir is not None else None)
                        part = TvmPart(vm, segment.inputs, segment.outputs)
                    parts.append(part)
                    files.append({"engine": "tvm" if mod is not None else "onnxruntime",
                                  "file": file.name,
                                  "bytes": file.stat().st_size if file.exists() else 0,
                                  "inputs": segment.inputs, "outputs": segment.outputs})
                executables[bs] = parts
                entries.append({"batch": bs, "parts": files})

            on_onnxruntime = {tuple(n.output) for _, segments, modules in imported.values()
                              for s, m in zip(segments, modules) if m is None for n in s.nodes}
            _, segments, modules = imported[sizes[0]]
            fields: dict[str, Any] = {
                # ToMixedPrecision leaves a graph with no fp16-eligible op untouched: that ran fp32.
                "precision": "fp16" if converted_to_fp16 else "fp32",
                "nodes_total": len(model.graph.node),
                "nodes_native": len(model.graph.node) - len(on_onnxruntime),
                "fallback_ops": fallback_ops,
                "artifact_bytes": sum(f["bytes"] for e in entries for f in e["parts"]),
                "details": {
                    "target": str(target), "opt_level": opts.opt_level,
                    "schedule": opts.schedule,
                    "kernels_scheduled": f"{kernels.scheduled} of {kernels.kernels}",
                    "shapes": (f"static batch: one executable per batch size "
                               f"{', '.join(map(str, sizes))}" if batch_inputs
                               else f"batch fixed at {batch_sizes[0]} by the model file: one "
                                    "executable" if batch_sizes
                               else "as exported: one executable"),
                    # The partition is shared; folding may differ by a node between batch
                    # sizes, so these two are the smallest batch size's.
                    "folded_nodes": folded[sizes[0]],
                    "segments": [["tvm" if m is not None else "onnxruntime", len(s.nodes)]
                                 for s, m in zip(segments, modules)],
                    "fallback_reasons": reasons, "requested_precision": precision,
                },
            }
            report = CompileReport(status="ok", seconds=time.perf_counter() - start, **fields)
            batch_input = batch_inputs[0] if batch_inputs else None
            if cache_dir is not None:
                save_report(cache_dir, report, batch_input=batch_input, outputs=output_names,
                            executables=entries)
        return TvmCompiled(executables, batch_input, tuple(artifact.input_names), output_names,
                           report)

    def _import(self, model: Any, offload: set[tuple[str, ...]], reasons: dict[str, str],
                value_info: Mapping[str, Any], convert_map: Mapping[str, Any],
                ) -> tuple[list[Segment], list[Any]]:
        """Partition and import the TVM segments; a node whose converter fails joins
        ``offload`` (nodes keyed by their outputs: ONNX is SSA) and the graph is
        partitioned again (each round moves at least one).

        Returns the segments and, per segment, its Relax module (None: onnxruntime).
        """
        from tvm.relax.frontend.onnx import from_onnx

        op_types = {tuple(n.output): n.op_type for n in model.graph.node}
        for node in model.graph.node:
            if not _convertible_op(node, convert_map):
                offload.add(tuple(node.output))
                reasons.setdefault(node.op_type, "no Relax ONNX converter")
        initializers = {t.name for t in model.graph.initializer}
        while True:
            native = [tuple(n.output) not in offload for n in model.graph.node]
            whole = all(native)
            if whole:
                # The unpartitioned model keeps its own signature: Relax's parameters are
                # its non-initializer inputs in graph order.
                segments = [Segment(native=True, nodes=list(model.graph.node),
                                     inputs=[i.name for i in model.graph.input
                                             if i.name not in initializers],
                                     outputs=[o.name for o in model.graph.output])]
            else:
                segments = partition(model.graph, native)
            modules: list[Any] = []
            failed: dict[tuple[str, ...], str] = {}
            for segment in segments:
                if not segment.native:
                    modules.append(None)
                    continue
                part = model if whole else segment_model(model, segment, value_info)
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
            offload.update(failed)
            for key, why in failed.items():
                reasons.setdefault(op_types[key], why)

    @staticmethod
    def _failing_nodes(model: Any, segment: Segment, value_info: Mapping[str, Any],
                       from_onnx: Callable[[Any], Any]) -> dict[tuple[str, ...], str]:
        """Import each node of a failed segment alone; the ones that fail (keyed by
        their outputs), with why."""
        failed: dict[tuple[str, ...], str] = {}
        for node in segment.nodes:
            single = Segment(native=True, nodes=[node])
            single.inputs = sorted(node_reads(node) - {t.name for t in model.graph.initializer})
            single.outputs = [o for o in node.output if o]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from_onnx(segment_model(model, single, value_info))
            except Exception as e:  # noqa: BLE001 - see _import
                failed[tuple(node.output)] = f"converter failed: {type(e).__name__}: {str(e)[:200]}"
        return failed

    @staticmethod
    def _build(mod: Any, target: Any, opts: _Options, kernels: KernelCount,
               so_path: Path | None) -> Any:
        """Build ``mod``, export it to ``so_path`` (the deployable, cached artifact;
        None: no cache keeps it, and the export, a link by the system's compiler and
        40 % of a small graph's compile, is skipped) and return a VirtualMachine of
        the built executable.

        The VM runs the executable in memory, not the exported file: dlopen finds a
        library by its path, so a process that loaded ``so_path`` once would get that
        old mapping back even after the cache entry was rewritten.
        """
        import tvm
        from tvm import relax

        try:
            with tvm.transform.PassContext(opt_level=opts.opt_level):
                executable = tvm.compile(
                    mod, target, relax_pipeline=relax_pipeline(target, opts.schedule, kernels))
            if so_path is not None:
                write_atomically(so_path, lambda p: executable.export_library(str(p)))
            return relax.VirtualMachine(executable, tvm.cpu())
        except Exception as e:  # TVM raises its FFI errors, ValueError, RuntimeError...
            raise CompileError(f"TVM: tvm.compile failed for target {target}: "
                               f"{type(e).__name__}: {e}") from e
