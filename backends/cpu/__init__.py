"""CPU backend: onnxruntime's CPU execution provider.

fp32 runs the exported graph as is, fp16 converts the graph's float tensors to
float16 (keeping fp32 inputs and outputs), and int8 is onnxruntime's static
post-training quantization (QDQ) calibrated on real dataset samples.

Options (--backend-option KEY=VALUE): threads (intra-op threads, default
onnxruntime's), calibration_samples (int8, default 16), int8_ops (comma-separated
op types to quantize, default the compute-heavy ones).
"""
from __future__ import annotations

import contextlib
import platform
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from backends.base import Backend, Compiled, CompileError, CompileReport, ModelArtifactLike

# onnxruntime names the op it lacks a kernel for: "Could not find an implementation for Conv(11)"
_MISSING_KERNEL = re.compile(r"implementation for (\w+)\(")
# Quantizing only the compute-heavy ops is the usual practice: an int8 Softmax or
# LayerNorm output costs accuracy (a 1000-way softmax has no int8 grid) and saves
# little time.
_INT8_DEFAULT_OPS = "Conv,ConvTranspose,MatMul,Gemm"
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
              "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}


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
    install_hint = "pip install onnxruntime onnx"

    def info(self) -> dict[str, Any]:
        import onnxruntime
        return {"name": self.name, "device": platform.processor() or platform.machine(),
                "device_count": 1, "onnxruntime": onnxruntime.__version__}

    def precisions(self) -> set[str]:
        return {"fp32", "fp16", "int8"}

    def compile(self, artifact: ModelArtifactLike, precision: str, batch_sizes: tuple[int, ...],
                options: Mapping[str, str]) -> Compiled:
        import onnx
        import onnxruntime as ort

        source = Path(artifact.onnx_path()).resolve()  # int8 works in a temp cwd
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            model = onnx.load(str(source))
            fp32_ops: list[str] = []
            if precision == "fp16":
                model, fp32_ops = self._to_fp16(model)
            elif precision == "int8":
                model = self._to_int8(source, Path(tmp), artifact,
                                      int(options.get("calibration_samples", 16)),
                                      options.get("int8_ops", _INT8_DEFAULT_OPS).split(","))
            blob = model.SerializeToString()
            so = ort.SessionOptions()
            if "threads" in options:
                so.intra_op_num_threads = int(options["threads"])
            try:
                session = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own unexported exception types
                raise CompileError(f"onnxruntime could not load the {precision} graph: {e}") from e
        seconds = time.perf_counter() - start
        ops = Counter(n.op_type for n in model.graph.node)
        used = precision
        if precision == "int8" and not ops.keys() & _QUANT_OPS:
            used = "fp32"  # the quantizer found nothing to quantize
        report = CompileReport(
            status="ok", seconds=seconds, precision=used, nodes_total=sum(ops.values()),
            # Everything runs on onnxruntime's CPU provider: nothing falls back.
            nodes_native=sum(ops.values()), fallback_ops=[], artifact_bytes=len(blob),
            details={"ops_kept_fp32": fp32_ops, "quantized_nodes": sum(ops[o] for o in _QUANT_OPS)},
        )
        return OrtCompiled(session, report)

    @staticmethod
    def _to_fp16(model: Any) -> tuple[Any, list[str]]:
        """Convert to fp16, keeping in fp32 the ops the CPU provider has no fp16
        kernel for (found by trying: onnxruntime names the missing kernel)."""
        import onnxruntime as ort
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        kept: list[str] = []
        for _ in range(32):
            converted = convert_float_to_float16(model, keep_io_types=True,
                                                 op_block_list=DEFAULT_OP_BLOCK_LIST + kept)
            try:
                ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
                return converted, kept
            except Exception as e:  # noqa: BLE001 - see OrtCompiled.compile
                missing = _MISSING_KERNEL.search(str(e))
                if not missing or missing.group(1) in kept:
                    raise CompileError(f"fp16 conversion produced a graph onnxruntime rejects: {e}") from e
                kept.append(missing.group(1))
        raise CompileError(f"fp16: too many ops without fp16 kernels ({', '.join(kept)})")

    @staticmethod
    def _to_int8(source: Path, tmp: Path, artifact: ModelArtifactLike, samples: int,
                 op_types: list[str]) -> Any:
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
        out = tmp / "int8.onnx"
        # onnxruntime's quantization tools write scratch files (external tensors,
        # a failed shape inference's model) into the working directory.
        with contextlib.chdir(tmp):
            try:
                quant_pre_process(str(source), str(prepared))
            except Exception:  # noqa: BLE001 - shape inference is an optimisation, not a need
                prepared = source
            try:
                quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                per_channel=True, op_types_to_quantize=op_types)
            except Exception as e:  # noqa: BLE001
                raise CompileError(f"int8 quantization failed: {e}") from e
            return onnx.load(str(out))


BACKEND = CpuBackend
