"""The GPU backend: a zoo entry's own torch module on a torch device, or the
torch module backends/gpu/onnx_import.py converts an ONNX graph to.

See backends/gpu/__init__.py for the options, modes and precisions; what runs
the compiled model is backends/gpu/runtime.py.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from backends import hostcpu
from backends.base import (Backend, Compiled, CompileError, CompileReport, Declined,
                           EnergyMeter, EnergyUnavailable, ModelArtifactLike, OpProvider,
                           load_cached, save_report)
from backends.gpu import energy, generation
from backends.gpu.runtime import CudaGraphs, Feeder, TorchCompiled

MODES = ("eager", "compile", "cudagraphs")
OPTIONS = ("device", "mode", "inductor_mode", "fp8_scales")
FP8_SCALES = ("dynamic", "static")
# Dataset samples static fp8 scales are calibrated on (the CPU's int8 default).
FP8_CALIBRATION_SAMPLES = 16
# The dtype the model computes in, per precision (fp8: what is not a Linear layer).
COMPUTE_DTYPE = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16",
                 "fp8": "bfloat16"}
TF32_CAPABILITY = (8, 0)  # Ampere
FP8_CAPABILITY = (8, 9)  # Ada, Hopper: e4m3 tensor-core matmuls
# A worker bound to one device (one worker per device) is handed its index here.
DEVICE_ENV = "XPUPERF_DEVICE"
INDUCTOR_DIR = "inductor"


@dataclass(frozen=True)
class Settings:
    device: str
    mode: str
    inductor_mode: str | None
    fp8_scales: str

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> "Settings":
        # One --backend-option set serves a session's compiles and its LLM engines.
        known = OPTIONS + generation.OPTIONS
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise CompileError(f"unknown GPU backend option(s) {', '.join(unknown)}; it knows "
                               f"{', '.join(known)}")
        device = options.get("device") or "cuda"
        # torch.compile on a CPU spends its time compiling C++: eager keeps a
        # device=cpu run (CI's) quick.
        mode = options.get("mode") or ("eager" if device.startswith("cpu") else "compile")
        if mode not in MODES:
            raise CompileError(f"mode={mode!r}: use one of {', '.join(MODES)}")
        if options.get("inductor_mode") and mode != "compile":
            raise CompileError(f"inductor_mode is torch.compile's mode: it needs mode=compile, "
                               f"not mode={mode}")
        fp8_scales = options.get("fp8_scales") or "dynamic"
        if fp8_scales not in FP8_SCALES:
            raise CompileError(f"fp8_scales={fp8_scales!r}: use one of {', '.join(FP8_SCALES)}")
        return cls(device, mode, options.get("inductor_mode") or None, fp8_scales)


def torch_device(name: str) -> Any:
    """The torch device ``name`` names, bound to $XPUPERF_DEVICE's index where a
    CUDA device is named without one; CompileError where it is not here."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise CompileError(f"device={name!r}: {e}; use cuda, cuda:N or cpu") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise CompileError(f"device={name!r}: the GPU backend runs on cuda or cpu")
    if not torch.cuda.is_available():
        raise CompileError(f"device={name}: torch {torch.__version__} sees no CUDA device "
                           f"(built for CUDA {torch.version.cuda or 'none'}); "
                           "--backend-option device=cpu runs this backend on the CPU")
    index = device.index
    if index is None:
        bound = os.environ.get(DEVICE_ENV, "0")
        if not bound.isdigit():
            raise CompileError(f"{DEVICE_ENV}={bound!r}: expected a CUDA device index")
        index = int(bound)
    if index >= torch.cuda.device_count():
        raise CompileError(f"device cuda:{index}: this host has {torch.cuda.device_count()} "
                           "CUDA device(s)")
    return torch.device("cuda", index)


def decline(precision: str, device: Any) -> str:
    """Why ``precision`` cannot run on ``device``, or '' where it can."""
    import torch

    if precision == "int8":
        return ("int8 is not offered: torch has no int8 path for a whole model without a "
                "quantization flow (calibration, quantized kernels); use fp8, fp16 or bf16")
    if precision not in COMPUTE_DTYPE:
        return f"unknown precision {precision!r}"
    cuda = device.type == "cuda"
    capability = torch.cuda.get_device_capability(device) if cuda else None
    if precision == "tf32" and (not cuda or capability < TF32_CAPABILITY):
        return (f"tf32 is a CUDA matmul mode of compute capability 8.0 and later; device "
                f"{_describe(device, capability)} has none")
    if precision == "fp8" and (not cuda or capability < FP8_CAPABILITY):
        return (f"fp8 needs e4m3 tensor-core matmuls (CUDA compute capability 8.9 or later); "
                f"device {_describe(device, capability)} has none")
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        return f"bf16: device {_describe(device, capability)} has no bf16 kernels"
    return ""


def _best_capability() -> tuple[int, int] | None:
    """The highest CUDA compute capability of this host's devices; None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return max(torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count()))


def _describe(device: Any, capability: tuple[int, int] | None) -> str:
    return f"{device} (capability {capability[0]}.{capability[1]})" if capability else str(device)


def _numerics(precision: str, device: Any) -> Callable[[], None]:
    """Sets how fp32 matmuls and convolutions compute on CUDA: IEEE fp32 for
    fp32, TensorFloat-32 for tf32 (set before every run: they are process-wide).

    Each flag through the API that inductor reads it by: matmuls through the new
    one, cuDNN through the legacy one (its conv templates read allow_tf32, which
    raises once cuDNN's flags were set through the new API)."""
    import torch

    if device.type != "cuda":
        return lambda: None
    tf32 = precision == "tf32"

    def apply() -> None:
        torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
        torch.backends.cudnn.allow_tf32 = tf32
    return apply


class _GpuOps(OpProvider):
    def __init__(self, device: str, precisions: set[str]):
        super().__init__(device, precisions=precisions)

    @contextlib.contextmanager
    def precision_scope(self, precision: str) -> Iterator[None]:
        import torch

        _numerics(precision, torch.device(self.device))()
        yield


class GpuBackend(Backend):
    name = "GPU"
    requires = ("torch",)
    install_hint = "pip install torch (a CUDA build for a GPU)"
    # Its workers build the zoo's torch models with transformers, whose modeling
    # code each worker took 2.3 s to import (benchmarks/worker_start.py: 20 ms a
    # start with it preloaded). It queries no device as it is imported
    # (tests_selftest/test_backend_gpu.py checks).
    preload = ("transformers.modeling_utils",)

    def info(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {"name": self.name, "torch": torch.__version__,
                               "cuda": torch.version.cuda}
        if not torch.cuda.is_available():  # device=cpu is all it can run on
            out.update(device=f"cpu: {hostcpu.model()} (no CUDA device)", device_count=1)
        else:
            count = torch.cuda.device_count()
            out.update(device=torch.cuda.get_device_name(), device_count=count,
                       devices=[torch.cuda.get_device_name(i) for i in range(count)],
                       capabilities=[".".join(map(str, torch.cuda.get_device_capability(i)))
                                     for i in range(count)],
                       cudnn=torch.backends.cudnn.version())
        return out

    def generation_engine(self, artifact: Any, precision: str, options: Mapping[str, str]) -> Any:
        # A static KV cache and decode replayed from CUDA graphs (engine=static, the
        # default), or the torch reference engine (engine=reference, and what the
        # static one cannot serve), on this backend's device.
        return generation.engine(artifact, precision, options,
                                 device=str(torch_device(options.get("device", "cuda"))))

    def energy_meter(self, options: Mapping[str, str]) -> EnergyMeter:
        """NVML's counter of the bound card (backends/gpu/energy.py); with
        device=cpu, the host's RAPL counters, where readable."""
        try:
            device = torch_device(options.get("device") or "cuda")
        except CompileError as e:  # no such device: no counter either
            raise EnergyUnavailable(str(e)) from None
        if device.type == "cpu":
            return hostcpu.energy_meter()
        return energy.meter(device)

    def op_provider(self, options: Mapping[str, str]) -> OpProvider:
        """The micro-benchmarks on the bound device (option ``device``), each run
        with the matmul and convolution numerics of its precision (IEEE fp32,
        TF32: ``_numerics``), at the precisions the device has, and int8."""
        device = torch_device(options.get("device") or "cuda")
        # int8 besides the model precisions: torch._int_mm's integer GEMM.
        return _GpuOps(str(device), self.precisions() | {"int8"} if device.type == "cuda"
                       else {"fp32", "fp16", "bf16"})

    def capabilities(self) -> dict[str, bool]:
        """What this host's best device offers, for expected_failures.txt's
        conditions (``if not fp8``): cuda (a CUDA device is there), tf32 (8.0+),
        bf16 (bf16 kernels: the CPU's torch has them), fp8 (8.9+)."""
        import torch

        best = _best_capability()
        return {"cuda": best is not None,
                "tf32": best is not None and best >= TF32_CAPABILITY,
                "bf16": best is None or torch.cuda.is_bf16_supported(),
                "fp8": best is not None and best >= FP8_CAPABILITY}

    def precisions(self) -> set[str]:
        """What a device of this host can run: the CPU takes fp32, fp16 and bf16;
        tf32 and fp8 need a CUDA device that has them (compile declines them,
        with the reason, on a device that has not)."""
        offered = {"fp32", "fp16"}
        offered |= {name for name, has in self.capabilities().items()
                    if has and name in COMPUTE_DTYPE}
        return offered

    def compile(self, artifact: ModelArtifactLike, precision: str, batch_sizes: tuple[int, ...],
                options: Mapping[str, str], cache_dir: Path | None = None) -> Compiled:
        settings = Settings.parse(options)
        device = torch_device(settings.device)
        why = decline(precision, device)
        if why:
            raise Declined(why)
        if settings.mode == "cudagraphs" and device.type != "cuda":
            raise CompileError(f"mode=cudagraphs: CUDA graphs need a CUDA device, and device is "
                               f"{device}; use mode=eager or mode=compile there")
        # The first call builds the model: that is the artifact's work, not the compile's.
        module = artifact.torch_module()
        graph = None
        if module is None:  # an ONNX or TensorFlow entry, or an op case: its ONNX graph
            module, graph = _convert(artifact)
        build = _Build(artifact, precision, batch_sizes, settings, device, module, graph)
        if settings.mode != "compile" or cache_dir is None:
            return build.compile(None)
        # torch.compile's own cache (inductor's FX graphs and kernels) lives in the
        # entry: a second compile of it is a compile served from that cache.
        inductor_dir = Path(cache_dir) / INDUCTOR_DIR
        hit = load_cached(cache_dir, lambda _: build.compile(inductor_dir))
        if hit is not None:  # the cold compile's report, with this load's seconds
            compiled, report = hit
            report.details["inductor_cache"] = compiled.report.details["inductor_cache"]
            compiled.report = report
            return compiled
        compiled = build.compile(inductor_dir)
        save_report(cache_dir, compiled.report)
        return compiled


def _convert(artifact: ModelArtifactLike) -> tuple[Any, dict[str, Any]]:
    from backends.gpu import onnx_import

    return onnx_import.convert(artifact.onnx_path(), artifact.input_names,
                               artifact.output_names)


@dataclass
class _Build:
    artifact: ModelArtifactLike
    precision: str
    batch_sizes: tuple[int, ...]
    settings: Settings
    device: Any
    fresh: Any  # a module not yet converted, for the first compile
    # For a module converted from ONNX, what the conversion took; None for a torch
    # entry's own. A graph keeps the float dtypes it declares beside fp32.
    graph: dict[str, Any] | None = None

    def compile(self, inductor_dir: Path | None) -> TorchCompiled:
        """The module converted, moved and compiled for every batch size (each
        compiled or captured here, not in a timed run)."""
        import torch

        start = time.perf_counter()
        numerics = _numerics(self.precision, self.device)
        numerics()
        # Each compile converts a copy of its own: a failed load leaves none half-converted.
        module = self.fresh if self.fresh is not None else self._module()
        self.fresh = None
        dtype = getattr(torch, COMPUTE_DTYPE[self.precision])
        details: dict[str, Any] = {"device": self._device_name(), "mode": self.settings.mode,
                                   "torch": torch.__version__, **(self.graph or {})}
        if self.graph is not None and dtype != torch.float32:
            # see onnx_import.Graph: fp32 weights, autocast
            module.autocast = dtype
            details["autocast"] = COMPUTE_DTYPE[self.precision]
            dtype = torch.float32
        # One .to(): each tensor cast and moved by one copy (and a module on
        # tensors made elsewhere, such as the fake CUDA lane's, moves at all). A
        # graph keeps the float dtypes it declares beside fp32.
        module = module.to(device=self.device) if self.graph is not None \
            else module.to(device=self.device, dtype=dtype)
        # A graph's float inputs of other dtypes (fp16, fp64) stay as it declares them.
        feeder = Feeder(self.artifact.input_names, self.device, dtype,
                        only=None if self.graph is None else torch.float32)
        used = self.precision
        if self.precision == "fp8":
            details.update(self._fp8(module, feeder))
            used = "fp8" if details["fp8_layers"] else "bf16"  # no layer took fp8
        try:
            forward, counts = self._forward(module, feeder, inductor_dir)
        except CompileError:
            raise
        except Exception as e:
            if self.graph is None:  # a torch entry's failure is the backend's: its traceback
                raise
            # A converted op that torch cannot run here (a dtype it has no kernel
            # for, say) fails this graph's compile, as a compiler's would.
            raise CompileError(f"the module onnx2torch converted fails on the example "
                               f"inputs: {type(e).__name__}: {' '.join(str(e).split())}"
                               ) from None
        details.update(counts.pop("details"))
        weights = sum(t.numel() * t.element_size()
                      for t in (*module.parameters(), *module.buffers()))
        report = CompileReport(status="ok", seconds=time.perf_counter() - start, precision=used,
                               artifact_bytes=weights, details=details, **counts)
        return TorchCompiled(forward, feeder, self.artifact.output_names, numerics, report,
                             widen=self.graph is None)

    def _module(self) -> Any:
        return self.artifact.torch_module() if self.graph is None else \
            _convert(self.artifact)[0]

    def _forward(self, module: Any, feeder: Feeder, inductor_dir: Path | None
                 ) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The module compiled or captured, run at each batch size's examples."""
        examples = {b: feeder(self.artifact.example_feeds(b))
                    for b in sorted(set(self.batch_sizes))}
        if not examples:  # fixed shapes, no batch axis (an op case): its own inputs
            examples = {0: feeder(feeds) for feeds in self.artifact.calibration_feeds(1)}
        if not examples:
            raise CompileError(f"{self.artifact.name} has no batch sizes and no inputs to "
                               "compile or count its ops on")
        if self.settings.mode == "compile":
            return self._inductor(module, examples, inductor_dir)
        forward = CudaGraphs(module, self.device) if self.settings.mode == "cudagraphs" \
            else module
        return forward, self._eager(module, forward, examples)

    def _fp8(self, module: Any, feeder: Feeder) -> dict[str, Any]:
        """The module's Linear layers converted to fp8, and static scales calibrated
        here, eagerly, before any compile or capture traces the forward. The
        calibration set is the dataset's first samples, not the example feeds:
        those are zeros, whose activations are not the data's."""
        from backends.gpu import fp8

        details = fp8.convert(module)
        if self.settings.fp8_scales == "dynamic":
            return {**details, "fp8_scales": "dynamic (each activation's scale from its own "
                                             "largest magnitude, per call)"}
        feeds = self.artifact.calibration_feeds(FP8_CALIBRATION_SAMPLES)
        if not feeds:
            raise CompileError("fp8_scales=static needs calibration samples and the dataset gave "
                               "none; use fp8_scales=dynamic")
        fp8.calibrate(module, map(feeder, feeds))
        samples = sum(len(feed[self.artifact.input_names[0]]) for feed in feeds)
        return {**details, "fp8_scales": f"static (calibrated on {samples} samples)"}

    def _device_name(self) -> str:
        import torch

        if self.device.type == "cuda":
            return f"{self.device}: {torch.cuda.get_device_name(self.device)}"
        return f"cpu: {hostcpu.model()}"

    def _eager(self, module: Any, forward: Callable[..., Any], examples: dict[int, list[Any]]
               ) -> dict[str, Any]:
        """Every op runs on the device: nodes native = nodes total, counted in an
        eager forward at the smallest batch size; a CUDA graph is captured per
        batch size."""
        import torch

        from backends.gpu import coverage

        ops = coverage.count_aten_ops(module, next(iter(examples.values())))
        with torch.inference_mode():
            for args in examples.values():
                forward(*args)
        total = sum(ops.values())
        return {"nodes_total": total, "nodes_native": total,
                "details": {"nodes_counted": coverage.EAGER_UNIT}}

    def _inductor(self, module: Any, examples: dict[int, list[Any]], inductor_dir: Path | None
                  ) -> tuple[Callable[..., Any], dict[str, Any]]:
        """torch.compile with inductor, compiled for every batch size (static
        shapes: the fastest kernels, and what CUDA graphs need)."""
        import contextlib

        import torch
        from torch._inductor import list_mode_options
        from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

        from backends.gpu import coverage

        modes, name = list_mode_options(), self.settings.inductor_mode or "default"
        if name not in modes:
            raise CompileError(f"inductor_mode={name!r}: use one of {', '.join(modes)}")
        capture = coverage.Capture(modes[name])
        # Each batch size compiles each frame once more.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit,
                                                   len(examples))
        coverage.start()
        forward = torch.compile(module, backend=capture.backend, dynamic=False)
        seconds = {}
        counts: dict[str, Any] = {}
        with (temporary_cache_dir(str(inductor_dir)) if inductor_dir
              else contextlib.nullcontext()), torch.inference_mode():
            for batch, args in examples.items():
                start = time.perf_counter()
                forward(*args)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                seconds[batch] = round(time.perf_counter() - start, 3)
                counts = counts or coverage.captured(capture)
        counts["details"].update(coverage.work(), compile_seconds_by_batch=seconds,
                                 inductor_mode=name)
        return forward, counts
