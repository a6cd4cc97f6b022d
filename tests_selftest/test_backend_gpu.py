"""The GPU backend run on the CPU (device=cpu), as CI runs it: each mode that
works there, each precision offered or declined with its reason, and outputs
against the framework's fp32 reference (entries without a torch module:
test_gpu_onnx_import.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backends.base import CompileError, ModelArtifactLike  # noqa: E402
from backends.gpu import GpuBackend  # noqa: E402
from backends.gpu import fp8  # noqa: E402
from backends.gpu.backend import Settings, _Build, _numerics  # noqa: E402
from xpuperf.cache import Cache  # noqa: E402
from xpuperf.models.artifact import ModelArtifact  # noqa: E402
from xpuperf.conformance.numerics import check, diff_stats  # noqa: E402
from xpuperf.worker.process import PRELOAD  # noqa: E402
from tests_selftest.sessions import python_env  # noqa: E402
from xpuperf.zoo import load_zoo  # noqa: E402

CPU = {"device": "cpu"}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zoo() -> Any:
    return load_zoo(ROOT / "zoo.yaml", "smoke")


def _artifact(zoo: Any, name: str, cache: Path) -> ModelArtifact:
    spec = next(m for m in zoo.models if m.name == name)
    return ModelArtifact(spec, Cache(cache), zoo.path.parent, calibration=lambda n: [])


@pytest.fixture(scope="module")
def bert(zoo: Any, tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    return _artifact(zoo, "bert-torch", tmp_path_factory.mktemp("bert"))


def _feeds(artifact: ModelArtifact, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids and a real-looking mask, so that the outputs vary."""
    rng = np.random.default_rng(seed)
    feeds = artifact.example_feeds(batch)
    feeds["input_ids"] = rng.integers(0, 100, feeds["input_ids"].shape)
    feeds["attention_mask"][:] = 1
    return feeds


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_eager_on_cpu_agrees_with_the_reference(bert: ModelArtifact, precision: str) -> None:
    compiled = GpuBackend().compile(bert, precision, bert.spec.batch_sizes, CPU)
    report = compiled.report
    assert report.precision == precision and report.details["mode"] == "eager"
    # Eager runs every op on the device; the count is of one real forward.
    assert report.nodes_total == report.nodes_native > 10 and report.fallback_ops == []
    assert report.artifact_bytes > 0
    feeds = _feeds(bert, bert.spec.batch_sizes[-1])
    out, ref = compiled.run(feeds), bert.reference(feeds)
    # The zoo has no bf16 tolerance; bf16 is held to fp16's.
    tolerance = bert.spec.tolerances["fp32" if precision == "fp32" else "fp16"]
    for name in bert.output_names:
        assert out[name].dtype == np.float32
        assert check(name, diff_stats(ref[name], out[name]), tolerance) == []
    if precision != "fp32":  # really computed in the reduced precision
        assert not np.array_equal(out["start_logits"], ref["start_logits"])
    compiled.close()


@pytest.mark.parametrize("precision, options, reason", [
    ("tf32", CPU, "tf32 is a CUDA matmul mode"),
    ("fp8", CPU, "compute capability 8.9"),
    ("int8", CPU, "int8 is not offered"),
    ("fp32", {"device": "cpu", "mode": "cudagraphs"}, "CUDA graphs need a CUDA device"),
    ("fp32", {"device": "cpu", "mode": "graph"}, "mode='graph': use one of eager, compile"),
    ("fp32", {"device": "cpu", "mode": "eager", "inductor_mode": "max-autotune"},
     "inductor_mode is torch.compile's mode"),
    ("fp32", {"device": "cpu", "opt_level": "3"}, "unknown GPU backend option(s) opt_level"),
    ("fp32", {"device": "cpu", "fp8_scales": "minmax"},
     "fp8_scales='minmax': use one of dynamic, static"),
    ("fp32", {"device": "tpu"}, "device='tpu'"),
])
def test_declined_with_the_reason(bert: ModelArtifact, precision: str,
                                  options: dict[str, str], reason: str) -> None:
    with pytest.raises(CompileError) as e:
        GpuBackend().compile(bert, precision, (1,), options)
    assert reason in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a CUDA device")
def test_cuda_without_a_gpu_says_how_to_run_on_the_cpu(bert: ModelArtifact) -> None:
    with pytest.raises(CompileError, match="sees no CUDA device.*device=cpu"):
        GpuBackend().compile(bert, "fp32", (1,), {})


def test_precisions_follow_the_host() -> None:
    offered = GpuBackend().precisions()
    assert {"fp32", "fp16", "bf16"} <= offered and "int8" not in offered
    if not torch.cuda.is_available():
        assert offered == {"fp32", "fp16", "bf16"}


def test_info_names_the_stack() -> None:
    info = GpuBackend().info()
    assert info["name"] == "GPU" and info["torch"] == torch.__version__
    assert info["device_count"] == (torch.cuda.device_count() or 1)  # the CPU, without CUDA
    assert info["device"]


# Imports the modules it is given with torch's device queries recorded. A GPU
# session's fork server imports PRELOAD and the backend's preload before it forks
# every worker: a CUDA driver initialized there fails every worker forked after it
# ("CUDA error: initialization error"). (torch.accelerator.current_accelerator,
# which transformers calls as it is imported, reads how torch was built.)
_DEVICE_QUERIES = """
import importlib, sys
import torch
asked = []
def recorded(name):
    def query(*args, **kwargs):
        asked.append(name)
        return 0
    return query
for name in ("is_available", "device_count", "init", "_lazy_init", "current_device",
             "get_device_name", "get_device_capability", "get_device_properties",
             "mem_get_info", "is_bf16_supported"):
    setattr(torch.cuda, name, recorded("torch.cuda." + name))
if hasattr(torch._C, "_cuda_getDeviceCount"):  # a CUDA build's: set on a CPU one, it says CUDA
    torch._C._cuda_getDeviceCount = recorded("torch._C._cuda_getDeviceCount")
for module in sys.argv[1:]:
    importlib.import_module(module)
print(" ".join(asked) or "none")
"""


@pytest.mark.parametrize("planted", [False, True])
def test_what_a_gpu_sessions_fork_server_imports_queries_no_device(planted: bool,
                                                                  tmp_path: Path) -> None:
    modules = [*PRELOAD, *GpuBackend.preload]
    if planted:  # a module that asks as it is imported: the probe must catch it
        (tmp_path / "asks_cuda.py").write_text("import torch\ntorch.cuda.is_available()\n")
        modules.append("asks_cuda")
    out = subprocess.run([sys.executable, "-c", _DEVICE_QUERIES, *modules], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env=python_env(tmp_path))
    asked = out.stdout.split()[-1:]
    assert asked == (["torch.cuda.is_available"] if planted else ["none"]), out.stderr[-2000:]


def test_torch_module_is_a_copy(bert: ModelArtifact) -> None:
    """A backend converting its module in place leaves the reference's alone."""
    module = bert.torch_module().half()
    assert not module.training
    assert next(bert.torch_module().parameters()).dtype == torch.float32


def test_fp32_turns_tf32_off_and_tf32_on() -> None:
    """The process-wide matmul and convolution modes, set before each run (the
    flags exist in a CPU build of torch too)."""
    cuda = torch.device("cuda")
    _numerics("tf32", cuda)()
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    _numerics("fp32", cuda)()
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.allow_tf32 is False  # what inductor's conv templates read


def test_fp8_linear_layers() -> None:
    """fp8's conversion, run through the CPU's _scaled_mm (the backend offers fp8
    on CUDA only; this checks the quantization, layout and padding): aligned
    Linear layers run e4m3, the others stay bf16 and say why."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10)).to(torch.bfloat16)
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)  # 15 rows: padded to 16
    with torch.inference_mode():
        want = model(x).float()
        layers = fp8.convert(model)
        got = model(x).float()
    assert layers["fp8_layers"] == ["0"]
    assert list(layers["bf16_layers"]) == ["2"] and "multiple of 16" in layers["bf16_layers"]["2"]
    assert isinstance(model[0], fp8.Fp8Linear) and model[0].weight_t.dtype == torch.float8_e4m3fn
    assert got.shape == want.shape == (3, 5, 10)
    stats = diff_stats(want.numpy(), got.numpy())
    assert stats.cosine > 0.995 and not stats.nan


class _Spare(torch.nn.Module):
    """Two Linear layers that run and one that never does."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.spare = (torch.nn.Linear(64, 32), torch.nn.Linear(32, 16),
                                      torch.nn.Linear(16, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def _fp8_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    converted = copy.deepcopy(model)
    fp8.convert(converted)
    return converted


def test_fp8_static_scales_are_calibrated_and_clamp() -> None:
    """Static scales: each layer's input scale is the largest magnitude it saw
    over the calibration inputs over 448; outputs agree with dynamic scaling and
    with fp32 there; a larger input is clamped to the calibrated range, not NaN;
    a layer calibration never reached keeps dynamic scaling."""
    torch.manual_seed(0)
    model = _Spare().eval().to(torch.bfloat16)
    calibration = [torch.randn(rows, 64) for rows in (5, 16, 40)]
    dynamic, static = _fp8_copy(model), _fp8_copy(model)
    seen: dict[str, float] = {}
    hooks = [layer.register_forward_pre_hook(
        lambda m, args, name=name: seen.update(
            {name: max(seen.get(name, 0.0), args[0].abs().max().item())}))
        for name, layer in static.named_children()]
    fp8.calibrate(static, [(x.to(torch.bfloat16),) for x in calibration])
    for hook in hooks:
        hook.remove()
    assert set(seen) == {"a", "b"}  # what ran: spare never did
    for name in seen:
        assert getattr(static, name).input_scale.item() == pytest.approx(seen[name] / 448, rel=1e-6)
    assert static.spare.input_scale is None and static.spare.input_amax is None
    assert static.a.input_amax is None  # calibration over: no reduction in forward

    model.float()  # the reference: the same weights, in fp32
    with torch.no_grad():
        for x in calibration:
            full, low = model(x).numpy(), x.to(torch.bfloat16)
            fixed, own = static(low).float().numpy(), dynamic(low).float().numpy()
            for want, got in ((full, fixed), (full, own), (own, fixed)):
                stats = diff_stats(want, got)
                assert stats.cosine > 0.995, stats

        beyond = (calibration[0] * 100).to(torch.bfloat16)
        bound = seen["a"]
        out = static.a(beyond)
        assert torch.isfinite(out).all()
        # Clamped: the same output as the input cut to the calibrated range, which
        # dynamic scaling, scaling to the input's own range, does not give.
        assert torch.equal(out, static.a(beyond.clamp(-bound, bound)))
        assert not torch.equal(dynamic.a(beyond), dynamic.a(beyond.clamp(-bound, bound)))


class _Breaking(torch.nn.Module):
    """A graph break in the middle (Tensor.item), so torch.compile captures two
    graphs and runs the break eagerly."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(16, 16), torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        scale = 1.0 + float(y.mean().item() > 0)
        return self.b(y * scale).softmax(-1)


class _ModuleArtifact(ModelArtifactLike):
    name, input_names, output_names = "breaking", ("x",), ("y",)

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.module = _Breaking().eval()

    def onnx_path(self) -> Any:
        raise AssertionError("the GPU backend compiles the torch module")

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        return []

    def torch_module(self) -> torch.nn.Module:
        import copy

        return copy.deepcopy(self.module)

    def example_feeds(self, batch_size: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((batch_size, 16), np.float32)}


def test_compile_counts_graph_breaks_and_loads_from_inductor_cache(tmp_path: Path) -> None:
    """torch.compile on the CPU (slow to compile: one tiny model only)."""
    artifact, backend = _ModuleArtifact(), GpuBackend()
    options = {"device": "cpu", "mode": "compile"}
    cold = backend.compile(artifact, "fp32", (2, 3), options, cache_dir=tmp_path)
    report = cold.report
    assert not report.cached and report.details["mode"] == "compile"
    assert report.details["graph_breaks"] == 1 and report.details["graphs"] == 2
    assert report.nodes_total == report.nodes_native + 1 and report.nodes_native >= 5
    assert any("item()" in op for op in report.fallback_ops), report.fallback_ops
    assert report.details["kernels_generated"] > 0
    assert set(report.details["compile_seconds_by_batch"]) == {2, 3}

    warm = backend.compile(artifact, "fp32", (2, 3), options, cache_dir=tmp_path)
    assert warm.report.cached and warm.report.details["inductor_cache"]["hits"] > 0
    assert warm.report.details["compile_seconds"] == report.seconds
    assert (warm.report.nodes_total, warm.report.nodes_native) == \
        (report.nodes_total, report.nodes_native)

    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    with torch.inference_mode():
        want = artifact.module(torch.from_numpy(x)).numpy()
    for compiled in (cold, warm):
        np.testing.assert_allclose(compiled.run({"x": x})["y"], want, rtol=1e-5, atol=1e-6)


class _Calibrated(_ModuleArtifact):
    """Calibration samples: batches of 3 and 2."""

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(2)
        return [{"x": rng.standard_normal((rows, 16)).astype(np.float32)} for rows in (3, 2)]


def _fp8_build(artifact: ModelArtifactLike, scales: str) -> _Build:
    """The backend declines fp8 off CUDA: its _Build, driven directly, compiles it."""
    settings = Settings.parse({"device": "cpu", "fp8_scales": scales})
    return _Build(artifact, "fp8", (2,), settings, torch.device("cpu"), artifact.torch_module())


@pytest.mark.parametrize("scales, says", [("static", "static (calibrated on 5 samples)"),
                                          ("dynamic", "dynamic (each activation's scale")])
def test_fp8_compile_says_which_scaling_ran(scales: str, says: str) -> None:
    """Static scales are calibrated on the artifact's calibration samples, and the
    report says which scaling ran."""
    artifact = _Calibrated()
    compiled = _fp8_build(artifact, scales).compile(None)
    report = compiled.report
    assert report.precision == "fp8" and report.details["fp8_layers"] == ["a"]
    assert report.details["fp8_scales"].startswith(says)
    layer = compiled._forward.a  # eager: the converted module itself
    if scales == "static":  # layer a's input is x: the largest calibration sample value
        seen = max(abs(f["x"]).max() for f in artifact.calibration_feeds(2))
        assert layer.input_scale.item() == pytest.approx(seen / 448, rel=1e-2)  # bf16's x
    else:
        assert layer.input_scale is None
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    with torch.inference_mode():
        want = artifact.module(torch.from_numpy(x)).numpy()
    assert diff_stats(want, compiled.run({"x": x})["y"]).cosine > 0.995


def test_fp8_static_scales_need_calibration_samples() -> None:
    with pytest.raises(CompileError, match="fp8_scales=static needs calibration samples.*"
                                           "use fp8_scales=dynamic"):
        _fp8_build(_ModuleArtifact(), "static").compile(None)
    assert Settings.parse({}).fp8_scales == "dynamic"


def _resident_agrees_with_run(compiled: Any, bert: ModelArtifact, batch: int) -> Any:
    """put -> run -> get of two queries gives run()'s outputs to the bit, the first
    query's read after the second ran; returns the resident path."""
    resident = compiled.resident()
    given = [_feeds(bert, batch, seed) for seed in (1, 2)]
    on_device = [resident.run(resident.put(feeds)) for feeds in given]
    for feeds, outputs in zip(given, on_device):
        got, want = resident.get(outputs), compiled.run(feeds)
        assert set(got) == set(bert.output_names)
        for name in bert.output_names:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert not np.array_equal(resident.get(on_device[0])["start_logits"],
                              resident.get(on_device[1])["start_logits"])
    return resident


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resident_gives_runs_outputs_on_cpu(bert: ModelArtifact, precision: str) -> None:
    """device=cpu: inputs placed as CPU tensors; no device clock, no device memory
    figure (each says None rather than a host figure under a device's name)."""
    compiled = GpuBackend().compile(bert, precision, (4,), CPU)
    resident = _resident_agrees_with_run(compiled, bert, 4)
    placed = resident.put(_feeds(bert, 4))
    assert all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in placed)
    assert resident.device_seconds(placed, 3) is None
    resident.reset_memory_peak()
    assert resident.memory_peak_bytes() is None
    compiled.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["eager", "cudagraphs"])
def test_resident_on_cuda_times_by_events_and_keeps_graph_outputs(bert: ModelArtifact,
                                                                  mode: str) -> None:
    """A CUDA graph's outputs are its static buffers, overwritten by the next
    replay: the resident run hands out copies. Device times come from CUDA
    events, the memory peak from the allocator."""
    compiled = GpuBackend().compile(bert, "fp16", (4,), {"mode": mode})
    resident = compiled.resident()
    resident.reset_memory_peak()
    _resident_agrees_with_run(compiled, bert, 4)
    placed = resident.put(_feeds(bert, 4))
    assert all(t.device.type == "cuda" for t in placed)
    seconds = resident.device_seconds(placed, 5)
    assert len(seconds) == 5 and all(0 < s < 1 for s in seconds)
    assert resident.memory_peak_bytes() > sum(t.numel() * t.element_size() for t in placed)
    compiled.close()
