"""CPU backend: onnxruntime's CPU execution provider.

fp32 runs the exported graph as is, fp16 converts the graph's float tensors to
float16 (keeping fp32 inputs and outputs, and in fp32 the nodes that carry integer
ids in float tensors), and int8 is onnxruntime's static post-training quantization
(QDQ) calibrated on real dataset samples.

Compile cache: given a ``cache_dir``, a compile saves the converted graph
(model.onnx) and what its report needs (report.json) there; a later compile
loads them instead of converting or calibrating again, and reports
``cached=True`` with the load time. An unreadable entry is compiled anew.

int8 follows the host (backends/hostcpu.py): onnxruntime's x86 int8 GEMMs turn
s8 activations into u8 and, without VNNI, sum u8 x s8 products in pairs into
int16 (VPMADDUBSW), which saturates: roformer's logits fell to cosine 0.88 that
way. With VNNI the products go straight into int32, and s8 activations and
weights are exact. Without it two schemes are exact: u8 activations and weights
(u8 x u8 kernels widen before multiplying) and s8 with weights on a 7-bit grid
(a u8 x s7 pair sum fits int16); neither suits every model (u8 activations broke
yolov5's heads), so the backend quantizes both and keeps the one whose outputs
on the calibration samples are closest to fp32's. Either gives the same bits on
every host. The compile report says which capabilities it saw, the scheme it
chose and why.

Options (--backend-option KEY=VALUE): threads (intra-op threads, default
$OMP_NUM_THREADS where it is a number, else onnxruntime's), calibration_samples (int8, default 16), int8_ops (comma-separated
op types to quantize, default the compute-heavy ones), int8_scheme (s8s8, u8u8 or
s8s8-w7, default chosen from the host as above); for LLM serving, engine
(continuous, the default, or reference: backends/torch_engines.py) and max_batch
(backends/torch_generation.py).
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from backends import hostcpu
from backends.base import (Backend, Compiled, CompileError, CompileReport, Declined,
                           ModelArtifactLike, OpProvider, load_cached, save_report,
                           write_atomically)

# onnxruntime names the op it lacks a kernel for: "Could not find an implementation for Conv(11)"
_MISSING_KERNEL = re.compile(r"implementation for (\w+)\(")
# Quantizing only the compute-heavy ops is the usual practice: an int8 Softmax or
# LayerNorm output costs accuracy (a 1000-way softmax has no int8 grid) and saves
# little time.
_INT8_DEFAULT_OPS = "Conv,ConvTranspose,MatMul,Gemm"
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
              "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}
_CACHED_MODEL = "model.onnx"
# int8 scheme -> activation and weight types (onnxruntime.quantization.QuantType
# names) and whether weights use 7 bits (reduce_range).
_INT8_SCHEMES = {"s8s8": ("QInt8", "QInt8", False), "u8u8": ("QUInt8", "QUInt8", False),
                 "s8s8-w7": ("QInt8", "QInt8", True)}
# The opset int8 graphs are made in: per-channel DequantizeLinear (its axis) needs 13.
_INT8_OPSET = 13
# What is exact on x86 without VNNI (see the module's docstring).
_EXACT_WITHOUT_VNNI = ("u8u8", "s8s8-w7")
# TensorProto element types of integers (INT8..UINT64).
_INTEGER_TYPES = frozenset({2, 3, 4, 5, 6, 7, 12, 13})
# Ops that compute exactly on integers: fed integers (and constants), their result
# needs the precision their inputs needed.
_EXACT_OPS = frozenset({"Add", "Sub", "Mul", "Neg", "Abs", "Min", "Max", "Floor", "Ceil",
                        "Round", "Relu", "Mod", "Where", "Identity", "Reshape", "Squeeze",
                        "Unsqueeze", "Flatten", "Transpose", "Concat", "Slice", "Gather",
                        "Expand", "Tile", "CumSum", "ReduceSum", "ReduceMax", "ReduceMin"})


class OrtCompiled(Compiled):
    def __init__(self, session: Any, report: CompileReport):
        self._session = session
        self._outputs = [o.name for o in session.get_outputs()]
        self.report = report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self._session.run(self._outputs, dict(feeds))))

    def close(self) -> None:
        self._session = None


class CpuBackend(Backend):
    name = "CPU"
    requires = ("onnxruntime", "onnx")

    def info(self) -> dict[str, Any]:
        import onnxruntime
        # The capabilities key the compile cache too: a host profile never gets
        # another profile's int8 graph.
        return {"name": self.name, "device": hostcpu.model(),
                "device_count": 1, "onnxruntime": onnxruntime.__version__,
                "cpu_capabilities": hostcpu.describe()}

    def energy_meter(self, options: Mapping[str, str]) -> hostcpu.RaplMeter:
        return hostcpu.energy_meter()  # it computes on the host's CPU packages

    def capabilities(self) -> dict[str, bool]:
        return hostcpu.capabilities()

    def op_provider(self, options: Mapping[str, str]) -> OpProvider:
        """The micro-benchmarks run torch's CPU kernels on the host, with the
        ``threads`` its sessions have; bf16 and fp8 as torch computes them here
        (bf16 natively only where the host has AVX-512 bf16 or AMX)."""
        import torch

        if "threads" in options:
            torch.set_num_threads(int(options["threads"]))
        return OpProvider("cpu", precisions=("fp32", "fp16", "bf16", "int8", "fp8"))

    def precisions(self) -> set[str]:
        return {"fp32", "fp16", "int8"}

    def generation_engine(self, artifact: Any, precision: str, options: Mapping[str, str]) -> Any:
        # LLM serving runs on torch (continuous batching by default, or the
        # reference engine): a KV cache and batching have no place in a one-graph
        # onnxruntime session.
        from backends import torch_engines
        return torch_engines.engine(artifact, precision, options, "cpu", "continuous")

    def compile(self, artifact: ModelArtifactLike, precision: str, batch_sizes: tuple[int, ...],
                options: Mapping[str, str], cache_dir: Path | None = None) -> Compiled:
        import onnx
        import onnxruntime as ort

        so = ort.SessionOptions()
        # onnxruntime takes a thread per core, whatever OMP_NUM_THREADS says:
        # beside other pytest-xdist workers (xpuperf.plugin), its share.
        omp = os.environ.get("OMP_NUM_THREADS", "")
        threads = options.get("threads") or (omp if omp.isdigit() else None)
        if threads:
            so.intra_op_num_threads = int(threads)
        if cache_dir is not None:
            hit = load_cached(cache_dir, lambda _: ort.InferenceSession(
                str(Path(cache_dir) / _CACHED_MODEL), so, providers=["CPUExecutionProvider"]))
            if hit is not None:
                return OrtCompiled(*hit)
        source = Path(artifact.onnx_path()).resolve()  # int8 works in a temp cwd
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            model = onnx.load(str(source))
            fp32_ops: list[str] = []
            fp32_integer_nodes = 0
            if precision == "fp16":
                model, fp32_ops, fp32_integer_nodes = self._to_fp16(model)
            elif precision == "int8":
                model, int8_details = self._to_int8(
                    source, Path(tmp), artifact, int(options.get("calibration_samples", 16)),
                    options.get("int8_ops", _INT8_DEFAULT_OPS).split(","),
                    self._int8_schemes(options))
            blob = model.SerializeToString()
            try:
                session = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own unexported exception types
                raise CompileError(f"onnxruntime could not load the {precision} graph: {e}") from e
        seconds = time.perf_counter() - start
        ops = Counter(n.op_type for n in model.graph.node)
        used = precision
        if precision == "int8" and not ops.keys() & _QUANT_OPS:
            used = "fp32"  # the quantizer found nothing to quantize
        details: dict[str, Any] = {"ops_kept_fp32": fp32_ops,
                                   "quantized_nodes": sum(ops[o] for o in _QUANT_OPS)}
        if precision == "fp16":
            details.update(integer_nodes_kept_fp32=fp32_integer_nodes,
                           fp16_nodes=_fp16_nodes(model))
            if not details["fp16_nodes"]:
                used = "fp32"  # every op kept in fp32 (e.g. ai.onnx.ml's): only Casts changed
        if precision == "int8":
            details.update(int8_details, cpu_capabilities=hostcpu.describe())
        report = CompileReport(
            status="ok", seconds=seconds, precision=used, nodes_total=sum(ops.values()),
            # Everything runs on onnxruntime's CPU provider: nothing falls back.
            nodes_native=sum(ops.values()), fallback_ops=[], artifact_bytes=len(blob),
            details=details,
        )
        if cache_dir is not None:
            write_atomically(Path(cache_dir) / _CACHED_MODEL, lambda p: p.write_bytes(blob))
            save_report(cache_dir, report)
        return OrtCompiled(session, report)

    @staticmethod
    def _to_fp16(model: Any) -> tuple[Any, list[str], int]:
        """Convert to fp16, keeping in fp32 the nodes that carry integers in float
        tensors (see _integer_nodes) and the ops the CPU provider has no fp16 kernel
        for (found by trying: onnxruntime names the missing kernel). Returns the
        model, those op types and the number of integer nodes kept."""
        import onnxruntime as ort
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        integer_nodes = _integer_nodes(model)
        kept: list[str] = []
        for _ in range(32):
            converted = convert_float_to_float16(model, keep_io_types=True,
                                                 op_block_list=DEFAULT_OP_BLOCK_LIST + kept,
                                                 node_block_list=integer_nodes)
            _skip_round_trips(converted)
            try:
                ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
                return converted, kept, len(integer_nodes)
            except Exception as e:  # noqa: BLE001 - see OrtCompiled.compile
                missing = _MISSING_KERNEL.search(str(e))
                if not missing or missing.group(1) in kept:
                    raise CompileError(f"fp16 conversion produced a graph onnxruntime rejects: {e}") from e
                kept.append(missing.group(1))
        raise CompileError(f"fp16: too many ops without fp16 kernels ({', '.join(kept)})")

    @staticmethod
    def _int8_schemes(options: Mapping[str, str]) -> tuple[str, ...]:
        """The schemes to try: the int8_scheme option, else s8s8 where the host has
        VNNI and the exact ones where it has not (see the module's docstring)."""
        if "int8_scheme" in options:
            if options["int8_scheme"] not in _INT8_SCHEMES:
                raise CompileError(f"int8_scheme={options['int8_scheme']!r}: use one of "
                                   f"{', '.join(_INT8_SCHEMES)}")
            return (options["int8_scheme"],)
        return ("s8s8",) if hostcpu.capabilities()["vnni"] else _EXACT_WITHOUT_VNNI

    @staticmethod
    def _to_int8(source: Path, tmp: Path, artifact: ModelArtifactLike, samples: int,
                 op_types: list[str], schemes: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
        """The model quantized with the best of ``schemes`` and what the report says
        of the choice: the scheme and, where there was a choice, each one's worst
        output cosine to fp32 on the calibration samples."""
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        feeds = artifact.calibration_feeds(samples)
        if not feeds:
            raise CompileError("int8 needs calibration samples and the dataset gave none")

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(feeds)

            def get_next(self) -> dict | None:
                return next(self._it, None)

        prepared = tmp / "prepared.onnx"
        upgraded = _opset_for_int8(source, tmp / "upgraded.onnx")
        # onnxruntime's quantization tools write scratch files (external tensors,
        # a failed shape inference's model) into the working directory.
        with contextlib.chdir(tmp):
            try:
                quant_pre_process(str(upgraded), str(prepared))
            except Exception:  # noqa: BLE001 - shape inference is an optimisation, not a need
                prepared = upgraded
            quantized = {}
            for scheme in schemes:
                activations, weights, seven_bits = _INT8_SCHEMES[scheme]
                out = tmp / f"int8-{scheme}.onnx"
                try:
                    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                                    activation_type=QuantType[activations],
                                    weight_type=QuantType[weights], reduce_range=seven_bits,
                                    per_channel=True, op_types_to_quantize=op_types)
                except Exception as e:  # noqa: BLE001
                    raise CompileError(f"int8 ({scheme}) quantization failed: {e}") from e
                quantized[scheme] = out
        if len(quantized) == 1:
            (scheme, out), = quantized.items()
            return onnx.load(str(out)), {"int8_scheme": scheme}
        scores = {scheme: _worst_cosine(source, out, feeds) for scheme, out in quantized.items()}
        best = max(scores, key=scores.__getitem__)
        return onnx.load(str(quantized[best])), {
            "int8_scheme": best, "int8_scheme_cosines": scores,
            "int8_scheme_why": "no VNNI: u8 x s8 pairs would saturate; the exact scheme "
                               "closest to fp32 on the calibration samples"}


def _opset_for_int8(source: Path, upgraded: Path) -> Path:
    """``source``, or its graph converted to opset _INT8_OPSET into ``upgraded``
    when older: per-channel QDQ writes DequantizeLinear's ``axis``, which exists
    from opset 13 only, so an old model's int8 graph would be invalid on every
    host. Declined, with onnx's reason, when the conversion fails."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(source), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset >= _INT8_OPSET:
        return source
    try:
        converted = version_converter.convert_version(onnx.load(str(source)), _INT8_OPSET)
        onnx.checker.check_model(converted)
    except Exception as e:  # noqa: BLE001 - onnx raises its own C++ error types
        raise Declined(f"int8: the model is opset {opset}, per-channel int8 needs opset "
                       f"{_INT8_OPSET}, and onnx's version converter could not convert it: "
                       f"{type(e).__name__}: {e}") from e
    onnx.save(converted, str(upgraded))
    return upgraded


def _worst_cosine(reference: Path, candidate: Path, feeds: list[dict[str, np.ndarray]]) -> float:
    """The lowest cosine, over outputs, between ``candidate``'s and ``reference``'s
    outputs on ``feeds`` (all samples of an output taken as one vector)."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for p in (reference, candidate)]
    outputs = [[s.run(None, feed) for feed in feeds] for s in sessions]
    worst = 1.0
    for i in range(len(outputs[0][0])):
        a, b = (np.concatenate([np.ravel(run[i]) for run in runs]).astype(np.float64)
                for runs in outputs)
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        worst = min(worst, float(a @ b / norms) if norms else float(np.array_equal(a, b)))
    return round(worst, 6)


def _integer_nodes(model: Any) -> list[str]:
    """Names of the top-level nodes that compute on integers held in float tensors,
    naming those that have no name (the converter's block list goes by name).

    fp16 holds integers exactly only up to 2048: ids fed as floats and cast to an
    integer type (a Keras export of float ids), or integers cast to float and then
    offset or scaled (positions), would be rounded. Kept in fp32: Casts from a float
    graph input to an integer type, Casts from an integer type to float, and the
    exact ops downstream of those whose other float inputs are constants.
    """
    import onnx
    from onnx import TensorProto

    graph = onnx.shape_inference.infer_shapes(model).graph
    dtype = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info)}
    dtype.update({t.name: t.data_type for t in graph.initializer})
    constants = {t.name for t in graph.initializer} | {
        n.output[0] for n in graph.node if n.op_type == "Constant"}
    float_inputs = {v.name for v in graph.input if dtype[v.name] == TensorProto.FLOAT}
    holding: set[str] = set()  # float tensors holding integers
    names = []
    # infer_shapes returned a copy (for the types): name the nodes of the model itself.
    for i, node in enumerate(model.graph.node):
        if node.op_type == "Cast":
            source, to = dtype.get(node.input[0]), onnx.helper.get_node_attr_value(node, "to")
            keep = (node.input[0] in float_inputs and to in _INTEGER_TYPES) or \
                (source in _INTEGER_TYPES and to == TensorProto.FLOAT) or node.input[0] in holding
        else:
            floats = [x for x in node.input
                      if dtype.get(x) == TensorProto.FLOAT and x not in constants]
            keep = node.op_type in _EXACT_OPS and bool(floats) and all(x in holding for x in floats)
        if keep:
            node.name = node.name or f"fp32_integers_{i}"
            names.append(node.name)
            holding.update(x for x in node.output if dtype.get(x) == TensorProto.FLOAT)
    return names


def _fp16_nodes(model: Any) -> int:
    """How many nodes compute in fp16: those, Casts apart, that read or write a
    float16 tensor."""
    import onnx
    from onnx import TensorProto

    graph = onnx.shape_inference.infer_shapes(model).graph
    fp16 = {v.name for v in (*graph.input, *graph.output, *graph.value_info)
            if v.type.tensor_type.elem_type == TensorProto.FLOAT16}
    fp16 |= {t.name for t in graph.initializer if t.data_type == TensorProto.FLOAT16}
    return sum(1 for n in graph.node if n.op_type != "Cast" and fp16 & {*n.input, *n.output})


def _skip_round_trips(model: Any) -> None:
    """The converter wraps each fp32-kept node in Casts of its own, so between two
    kept nodes (or a graph input or output and a kept node) a tensor goes fp32 ->
    fp16 -> fp32, losing what keeping it was for: make the second Cast read the
    fp32 tensor (a Cast to its own type, which onnxruntime drops), and remove the
    Casts left unused."""
    from onnx import TensorProto, helper

    graph = model.graph
    fp32 = {v.name for v in (*graph.input, *graph.value_info)
            if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    producer = {out: n for n in graph.node for out in n.output}

    def is_cast_to(node: Any, to: int) -> bool:
        return node is not None and node.op_type == "Cast" and \
            helper.get_node_attr_value(node, "to") == to

    for node in graph.node:
        if is_cast_to(node, TensorProto.FLOAT):
            down = producer.get(node.input[0])
            if is_cast_to(down, TensorProto.FLOAT16) and down.input[0] in fp32:
                node.input[0] = down.input[0]
    while True:
        used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
        unused = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]
        if not unused:
            return
        for n in unused:
            graph.node.remove(n)


BACKEND = CpuBackend
