"""OpenVINO backend: ONNX -> ov.Model -> Core.compile_model on the CPU plugin.

Precision is set with INFERENCE_PRECISION_HINT, always explicitly: the CPU plugin
defaults to bf16 where the CPU has it, and falls back to another type when the
CPU lacks the one asked for (f16 on an x86 CPU without AVX512-FP16/AMX-FP16 runs
bf16 or f32). The report carries the precision the compiled model says it uses,
never the one asked for. int8 is NNCF post-training quantization of the ov.Model,
calibrated on the artifact's real samples, leaving in fp32 the lookups (Gather)
and the ops between the last compute layers and the outputs; it is reported as
int8 only when the compiled graph really has int8 layers.

int8 follows the host (backends/hostcpu.py): without VNNI, the CPU plugin's int8
kernels sum u8 x s8 products in pairs into int16, which saturates (the selftest's
tiny MLP gave 2.69 for 1.23). There NNCF's overflow fix is applied to every
layer (weights on a 7-bit grid, whose pair sums fit int16); with VNNI, NNCF's
default (the first layer only) stands. The report says what it saw and chose.
Set ONEDNN_MAX_CPU_ISA (AVX2, say) and the plugin's kernels and this choice both
behave as on such a host.

Dynamic batch: the model keeps its dynamic batch axis and one compiled model
serves every batch size; a model file whose batch axis is fixed keeps it, and the
report's ``shapes`` says so.

Compile cache: given a ``cache_dir``, a compile exports the compiled model there
(model.blob, CompiledModel.export_model) with what its report needs (report.json);
a later compile imports the blob (Core.import_model) instead of reading the ONNX
file, quantizing and compiling, and reports ``cached=True`` with the import time.
An unreadable entry is compiled anew. This replaces OpenVINO's own CACHE_DIR
(formerly the ``cache_dir`` option), which caches only compile_model: an int8 hit
still ran NNCF, and its time was reported as the load's.

Options (--backend-option KEY=VALUE):
  precision_hint         override the hint: f32, bf16 or f16
  num_streams            NUM_STREAMS (an integer or AUTO)
  inference_num_threads  INFERENCE_NUM_THREADS
  performance_hint       PERFORMANCE_HINT: LATENCY or THROUGHPUT
  calibration_samples    int8 calibration samples (default 64)
"""
from __future__ import annotations

import functools
import re
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from backends import hostcpu
from backends.base import (Backend, Compiled, CompileError, CompileReport, ModelArtifactLike,
                           load_cached, save_report, write_atomically)

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
# What the compiled model reports (ov.Type names) back to the suite's words.
_REPORTED = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
# OPTIMIZATION_CAPABILITIES of the CPU plugin that make a precision real.
_CAPABILITY = {"bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
_OPTIONS = ("precision_hint", "num_streams", "inference_num_threads", "performance_hint",
            "calibration_samples")
_PROPERTY = {"num_streams": "NUM_STREAMS", "inference_num_threads": "INFERENCE_NUM_THREADS",
             "performance_hint": "PERFORMANCE_HINT"}
# Graph plumbing, not computation: not counted as nodes.
_NOT_NODES = frozenset({"Parameter", "Result", "Constant"})
_INT8_RUNTIME = frozenset({"i8", "u8"})
# The layers int8 is for: the output tail of an int8 model ends at them.
_COMPUTE_OPS = frozenset({"MatMul", "Convolution", "GroupConvolution", "ConvolutionBackpropData",
                          "GroupConvolutionBackpropData"})
_SUMMARY = re.compile(r"^-- (?:No conversion rule found for operations|Conversion is failed for): "
                      r"(.+)$", re.MULTILINE)
DEVICE = "CPU"
_CACHED_BLOB = "model.blob"


@functools.lru_cache(maxsize=1)
def _ml_dtypes() -> dict[str, Any]:
    """OpenVINO element types that numpy lacks, as ml_dtypes types (what onnx uses
    for them); empty without ml_dtypes, whose arrays then never reach us."""
    try:
        import ml_dtypes
    except ImportError:
        return {}
    return {"bf16": ml_dtypes.bfloat16, "f8e4m3": ml_dtypes.float8_e4m3fn,
            "f8e5m2": ml_dtypes.float8_e5m2}



def _read_onnx(core: Any, path: Path) -> Any:
    """The ov.Model of an ONNX file; on a conversion failure, name the ops.

    The ops come from the frontend's own failure summary ("-- No conversion rule
    found for operations: A, B" / "-- Conversion is failed for: C"): asking the
    partially converted model for its framework nodes' attributes crashes the
    process in OpenVINO 2026.4.
    """
    try:
        return core.read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError and its own OpConversionFailure
        message = str(e)
        ops = [op.strip() for match in _SUMMARY.finditer(message)
               for op in match.group(1).split(",") if op.strip()]
        if ops:
            raise CompileError(f"OpenVINO: the ONNX frontend cannot convert "
                                    f"{', '.join(sorted(set(ops)))}: {message}", ops) from e
        raise CompileError(f"OpenVINO: cannot read {path.name} as ONNX: {message}") from e


def _graph_inputs(path: Path) -> tuple[str, ...]:
    """The ONNX graph's inputs in order, initializers left out: the order of the
    ov.Model's inputs, less those the frontend drops."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return tuple(v.name for v in graph.input if v.name not in initializers)


def _input_ports(ports: list[Any], graph_inputs: tuple[str, ...]) -> dict[str, int]:
    """ONNX input name -> index of the compiled input it feeds. A port is found by
    the name it carries, except where the frontend renamed it (an input passed
    through to an output takes the output's name: onnx's test_sequence_model1
    feeds Y to a port named "out"); those ports are paired with the inputs no
    port names, in order, when they are as many, else left without a feed (and
    run() refuses to run them unfed)."""
    names = [next((n for n in graph_inputs if n in port.get_names()), None) for port in ports]
    index = {name: i for i, name in enumerate(names) if name is not None}
    renamed = [i for i, name in enumerate(names) if name is None]
    unnamed = [n for n in graph_inputs if n not in index]
    if len(renamed) == len(unnamed):
        index.update(zip(unnamed, renamed))
    return index


class OpenVinoCompiled(Compiled):
    def __init__(self, compiled: Any, graph_inputs: tuple[str, ...], output_names: tuple[str, ...],
                 report: CompileReport):
        self._compiled = compiled
        # An infer request is not thread-safe: each calling thread gets its own.
        self._local = threading.local()
        ports = list(compiled.inputs)
        self._port = _input_ports(ports, graph_inputs)
        self._inputs = {name: ports[i].get_element_type() for name, i in self._port.items()}
        # Each compiled input with its names: infer() would run an unfed one on
        # whatever its buffer holds, so run() refuses a feed that names none.
        self._ports = [sorted([n for n, i in self._port.items() if i == k] or port.get_names())
                       for k, port in enumerate(ports)]
        # The frontend drops inputs the graph never reads (CastLike's "like" is only
        # a type): feeding them would fail, so run() leaves them out.
        self._unread = frozenset(graph_inputs) - self._port.keys()
        self._outputs: list[tuple[str, Any]] = []
        for port in compiled.outputs:
            names = port.get_names()
            name = next((n for n in output_names if n in names), port.get_any_name())
            self._outputs.append((name, _ml_dtypes().get(port.get_element_type().to_string())))
        self.report = report

    def _tensor(self, name: str, value: np.ndarray) -> Any:
        """numpy's view of the value, except for types numpy lacks (ml_dtypes arrays),
        which OpenVINO's binding would convert by value: pass their bits instead."""
        element = self._inputs[name]
        if element.to_string() not in _ml_dtypes():
            return value
        import openvino as ov

        bits = np.ascontiguousarray(value)
        return ov.Tensor(bits.view(f"u{bits.itemsize}"), list(bits.shape), element)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        unknown = sorted(feeds.keys() - self._inputs.keys() - self._unread)
        unfed = ["/".join(names) for names in self._ports if not feeds.keys() & set(names)]
        problems = ([f"unknown feed(s) {', '.join(unknown)}"] if unknown else []) + \
                   ([f"no feed for input(s) {', '.join(unfed)}"] if unfed else [])
        if problems:
            takes = ", ".join("/".join(names) for names in self._ports)
            raise ValueError(f"OpenVINO: {'; '.join(problems)} (the compiled model takes {takes}; "
                             f"given {', '.join(feeds)})")
        # infer() copies outputs out of the request's buffers (share_outputs=False).
        results = request.infer({self._port[k]: self._tensor(k, v) for k, v in feeds.items()
                                 if k in self._inputs})
        # Types numpy lacks come back as same-width integers or float16: view their bits.
        return {name: results[i] if dtype is None else results[i].view(dtype)
                for i, (name, dtype) in enumerate(self._outputs)}

    def close(self) -> None:
        self._local = threading.local()
        self._compiled = None


class OpenVinoBackend(Backend):
    name = "OPENVINO"
    requires = ("openvino",)

    def info(self) -> dict[str, Any]:
        import openvino as ov

        core = ov.Core()
        capabilities = core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
        info = {"name": self.name, "device": core.get_property(DEVICE, "FULL_DEVICE_NAME"),
                "device_count": 1, "openvino": ov.get_version(),
                "optimization_capabilities": list(capabilities),
                "default_inference_precision":
                    str(core.get_property(DEVICE, "INFERENCE_PRECISION_HINT").to_string())}
        info["cpu_capabilities"] = hostcpu.describe()
        missing = sorted(p for p, cap in _CAPABILITY.items() if cap not in capabilities)
        if missing:
            info["unsupported"] = (f"{', '.join(missing)}: the CPU plugin lacks "
                                   f"{', '.join(_CAPABILITY[p] for p in missing)} on this CPU")
        return info

    def energy_meter(self, options: Mapping[str, str]) -> hostcpu.RaplMeter:
        return hostcpu.energy_meter()  # it computes on the host's CPU packages

    def capabilities(self) -> dict[str, bool]:
        return hostcpu.capabilities()

    def precisions(self) -> set[str]:
        import importlib.util

        import openvino as ov

        capabilities = ov.Core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
        # The plugin reads the CPU itself, not ONEDNN_MAX_CPU_ISA: a capped host
        # offers what the cap leaves (hostcpu has no word on int8, which any x86 runs).
        host = hostcpu.capabilities()
        offered = {"fp32"} | {p for p, cap in _CAPABILITY.items()
                              if cap in capabilities and host.get(p, True)}
        if importlib.util.find_spec("nncf") is None:
            offered.discard("int8")
        return offered

    def compile(self, artifact: ModelArtifactLike, precision: str, batch_sizes: tuple[int, ...],
                options: Mapping[str, str], cache_dir: Path | None = None) -> Compiled:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise CompileError(f"OpenVINO: unknown option(s) {', '.join(unknown)}; "
                               f"known: {', '.join(_OPTIONS)}")
        if precision not in _HINTS:
            raise CompileError(f"OpenVINO: precision {precision!r} is not supported "
                               f"(supported: {', '.join(_HINTS)})")
        hint = options.get("precision_hint", _HINTS[precision])
        if hint not in _REPORTED:
            raise CompileError(f"OpenVINO: precision_hint must be one of "
                               f"{', '.join(_REPORTED)}, got {hint!r}")
        import openvino as ov

        core = ov.Core()
        config: dict[str, str] = {"INFERENCE_PRECISION_HINT": hint}
        config.update({_PROPERTY[k]: v for k, v in options.items() if k in _PROPERTY})
        if cache_dir is not None:
            hit = load_cached(cache_dir, lambda _: core.import_model(
                (Path(cache_dir) / _CACHED_BLOB).read_bytes(), DEVICE, dict(config)))
            if hit is not None:
                return OpenVinoCompiled(hit[0], _graph_inputs(Path(artifact.onnx_path())),
                                        tuple(artifact.output_names), hit[1])

        start = time.perf_counter()
        model = _read_onnx(core, Path(artifact.onnx_path()))
        # The plugin takes string tensors in and fails on the first op that reads them.
        strings = [p.get_any_name() for p in model.inputs if p.get_element_type() == ov.Type.string]
        if strings:
            raise CompileError(f"OpenVINO: the {DEVICE} plugin computes nothing on strings, and "
                               f"input(s) {', '.join(strings)} are strings")
        nodes = [op for op in model.get_ordered_ops() if op.get_type_name() not in _NOT_NODES]
        placement = core.query_model(model, DEVICE)
        native = [op for op in nodes if placement.get(op.get_friendly_name()) == DEVICE]
        fallback_ops = sorted({op.get_type_name() for op in nodes} -
                              {op.get_type_name() for op in native})
        if fallback_ops:
            raise CompileError(f"OpenVINO: the {DEVICE} plugin cannot run "
                                    f"{', '.join(fallback_ops)}", fallback_ops)
        if precision == "int8":
            model = self._quantize(model, artifact, options)
        try:
            compiled = core.compile_model(model, DEVICE, config)
        except Exception as e:  # OpenVINO raises RuntimeError with the plugin's message
            raise CompileError(f"OpenVINO: compile_model on {DEVICE} failed: {e}") from e
        seconds = time.perf_counter() - start
        for source, port in zip(model.outputs, compiled.outputs):
            if not port.get_partial_shape().compatible(source.get_partial_shape()):
                # Seen with 2026.4's int8 transformations on GPT-2's last-token Gather.
                raise CompileError(f"OpenVINO: the compiled model's output {port.get_any_name()} "
                                   f"has shape {port.get_partial_shape()}, the model's has "
                                   f"{source.get_partial_shape()}")

        used = _REPORTED[compiled.get_property("INFERENCE_PRECISION_HINT").to_string()]
        int8_layers = self._int8_layers(compiled) if precision == "int8" else 0
        if int8_layers:
            used = "int8"
        blob = compiled.export_model().getvalue()
        report = CompileReport(
            status="ok", seconds=seconds, precision=used, nodes_total=len(nodes),
            nodes_native=len(native), fallback_ops=[], artifact_bytes=len(blob),
            details={"requested_precision": precision, "inference_precision_hint": hint,
                     "int8_layers": int8_layers, "cpu_capabilities": hostcpu.describe(),
                     **({"int8_overflow_fix": _overflow_fix().value} if precision == "int8" else {}),
                     "shapes": _batch_wording(model, batch_sizes),
                     **{k: str(compiled.get_property(p)) for k, p in _PROPERTY.items()
                        if k in options}},
        )
        if cache_dir is not None:
            write_atomically(Path(cache_dir) / _CACHED_BLOB, lambda p: p.write_bytes(blob))
            save_report(cache_dir, report)
        return OpenVinoCompiled(compiled, _graph_inputs(Path(artifact.onnx_path())),
                                tuple(artifact.output_names), report)

    @staticmethod
    def _quantize(model: Any, artifact: ModelArtifactLike, options: Mapping[str, str]) -> Any:
        try:
            import nncf
        except ImportError as e:
            raise CompileError("OpenVINO: int8 needs NNCF (pip install nncf)") from e
        try:
            samples = int(options.get("calibration_samples", "64"))
        except ValueError as e:
            raise CompileError(f"OpenVINO: calibration_samples takes an integer: {e}") from e
        feeds = artifact.calibration_feeds(samples)
        if not feeds:
            raise CompileError("OpenVINO: int8 needs calibration samples and the dataset gave none")
        # Kept in fp32: lookups (Gather), which move data and compute nothing (and
        # NNCF 3.4 fails on CLIP's position-embedding Gather: a KeyError in its
        # weights-as-outputs pass), and the output tail (see _output_tail).
        # validate=False: a model without Gathers is no error.
        ignored = nncf.IgnoredScope(names=_output_tail(model), types=["Gather"], validate=False)
        try:
            return nncf.quantize(model, nncf.Dataset(feeds), subset_size=len(feeds),
                                 ignored_scope=ignored,
                                 advanced_parameters=nncf.AdvancedQuantizationParameters(
                                     overflow_fix=_overflow_fix()))
        except Exception as e:  # NNCF raises from its own and OpenVINO's exception types
            raise CompileError(f"OpenVINO: NNCF int8 quantization failed: {e}") from e

    @staticmethod
    def _int8_layers(compiled: Any) -> int:
        """Layers of the executable graph that really compute in int8."""
        count = 0
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["runtimePrecision"].astype(str) in _INT8_RUNTIME and \
                    info["layerType"].astype(str) not in ("Input", "Output", "Reorder"):
                count += 1
        return count


def _batch_wording(model: Any, batch_sizes: tuple[int, ...]) -> str:
    """What the one compiled model does with the batch: a free first axis on some
    input serves every batch size; none is a batch fixed by the model file."""
    shapes = [port.get_partial_shape() for port in model.inputs]
    if any(s.rank.is_dynamic or (s.rank.get_length() and s[0].is_dynamic) for s in shapes):
        return "dynamic batch (one compiled model)"
    if batch_sizes:
        return f"batch fixed at {batch_sizes[0]} by the model file (one compiled model)"
    return "static shapes as in the file (one compiled model)"


def _overflow_fix() -> Any:
    """NNCF's overflow fix for this host: every layer where u8 x s8 pairs would
    saturate (no VNNI), else NNCF's default, the first layer only."""
    from nncf import OverflowFix

    return OverflowFix.FIRST_LAYER if hostcpu.capabilities()["vnni"] else OverflowFix.ENABLE


def _output_tail(model: Any) -> list[str]:
    """The ops between a model's last compute layers and its outputs, up to the
    first op that joins two computed tensors (included): quantizing there costs
    accuracy and speeds up no compute layer. widedeep's sum of its wide and deep
    logits before the sigmoid, quantized, puts its outputs at cosine 0.978 of fp32;
    kept fp32, at 0.999."""
    tail: list[str] = []
    stack = [result.input_value(0).get_node() for result in model.get_results()]
    while stack:
        op = stack.pop()
        name = op.get_friendly_name()
        if name in tail or op.get_type_name() in _COMPUTE_OPS or op.get_type_name() in _NOT_NODES:
            continue
        tail.append(name)
        inputs = [value.get_node() for value in op.input_values()]
        if sum(i.get_type_name() != "Constant" for i in inputs) < 2:
            stack.extend(inputs)
    return tail


BACKEND = OpenVinoBackend
