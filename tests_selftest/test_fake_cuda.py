"""The fake CUDA device (tests_selftest/fake_cuda.py) finds each class of
CUDA-only breakage the fake-CUDA lane looks for, and passes a module without one:
a tensor made inside forward without a device, a tensor attribute ``.to()`` does
not move, a host input not placed, an input cast missed, and an fp8 layer its
parent reads instead of calling. tests_selftest/test_fake_cuda_zoo.py runs the
zoo through the same fake."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backends.base import ModelArtifactLike  # noqa: E402
from backends.gpu import GpuBackend  # noqa: E402
from backends.gpu.runtime import Feeder  # noqa: E402
from tests_selftest.fake_cuda import DEVICE_ERRORS, DtypeMismatch, HostBuilt, fake_cuda  # noqa: E402

WIDTH = 16
CUDA = {"device": "cuda"}


class _Tiny(ModelArtifactLike):
    """One float input [batch, WIDTH]; the module ``build`` makes."""

    name, input_names, output_names = "tiny", ("x",), ("y",)

    def __init__(self, build: Callable[[], Any]):
        self._build = build

    def onnx_path(self) -> Any:
        raise NotImplementedError("the fake CUDA lane compiles torch modules")

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        return []

    def torch_module(self) -> Any:
        return self._build().eval()

    def example_feeds(self, batch_size: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((batch_size, WIDTH), np.float32)}


class Clean(torch.nn.Module):
    """What a module should do: a buffer, and a tensor made on its input's device."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(WIDTH, WIDTH)
        self.register_buffer("shift", torch.ones(WIDTH))

    def forward(self, x: Any) -> Any:
        return self.linear(x) + self.shift + torch.arange(WIDTH, device=x.device)


class MadeWithoutDevice(Clean):
    def forward(self, x: Any) -> Any:
        return self.linear(x) + torch.arange(WIDTH)  # on the CPU, whatever x's device


class AttributeNotMoved(Clean):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.full((WIDTH,), 2.0)  # a plain attribute: .to() leaves it

    def forward(self, x: Any) -> Any:
        return self.linear(x) * self.scale


class WithAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(WIDTH, 2, batch_first=True)
        self.head = torch.nn.Linear(WIDTH, WIDTH)

    def forward(self, x: Any) -> Any:
        seq = x[:, None, :]
        return self.head(self.attention(seq, seq, seq, need_weights=False)[0][:, 0])


def _compile_and_run(module: type, precision: str = "fp16", mode: str = "eager") -> Any:
    artifact = HostBuilt(_Tiny(module))
    with fake_cuda():
        compiled = GpuBackend().compile(artifact, precision, (4,), {**CUDA, "mode": mode})
        resident = compiled.resident()
        (out,) = resident.run(resident.put(artifact.example_feeds(4)))
        return compiled, out


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16", "fp8"])
@pytest.mark.parametrize("mode", ["eager", "cudagraphs"])
def test_a_clean_module_runs_on_the_fake_device(precision: str, mode: str) -> None:
    compiled, out = _compile_and_run(Clean, precision, mode)
    assert out.device == torch.device("cuda", 0) and out.shape == (4, WIDTH)
    assert compiled.report.precision == precision
    assert compiled.report.details["device"].startswith("cuda:0: fake CUDA")


@pytest.mark.parametrize("planted", [MadeWithoutDevice, AttributeNotMoved])
def test_a_tensor_left_on_the_cpu_fails(planted: type) -> None:
    with pytest.raises(DEVICE_ERRORS, match="cpu and cuda:0|cuda:0 and cpu"):
        _compile_and_run(planted)


def test_a_host_input_not_placed_fails() -> None:
    compiled, _ = _compile_and_run(Clean)
    with fake_cuda(), pytest.raises(DEVICE_ERRORS):
        compiled._forward_on([torch.zeros(4, WIDTH, dtype=torch.float16)])


def test_an_input_cast_missed_fails() -> None:
    # The model in fp16, its input fed as fp32: the matmul refuses the mix on a
    # GPU and on the fake alike.
    compiled, _ = _compile_and_run(Clean)
    with fake_cuda():
        uncast = Feeder(("x",), torch.device("cuda", 0), torch.float32)
        with pytest.raises(DtypeMismatch, match="torch.float16, torch.float32"):
            compiled._forward_on(uncast({"x": np.zeros((4, WIDTH), np.float32)}))


def test_fp8_keeps_the_linear_layers_a_parent_reads_itself() -> None:
    # nn.MultiheadAttention reads out_proj.weight itself: swapped for an fp8 layer,
    # it had no weight to read (each encoder and decoder layer of the zoo failed so).
    compiled, out = _compile_and_run(WithAttention, "fp8")
    details = compiled.report.details
    assert details["fp8_layers"] == ["head"]
    assert "MultiheadAttention" in details["bf16_layers"]["attention.out_proj"]
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("capability,offered", [
    ((9, 0), {"cuda", "tf32", "bf16", "fp8"}), ((8, 0), {"cuda", "tf32", "bf16"}),
    ((7, 5), {"cuda"})])
def test_capabilities_and_precisions_follow_the_cards(capability: tuple[int, int],
                                                     offered: set[str]) -> None:
    # What expected_failures.txt's conditions read: the card's, not the host CPU's.
    with fake_cuda(capability):
        backend = GpuBackend()
        has = backend.capabilities()
        assert {name for name, yes in has.items() if yes} == offered
        assert backend.precisions() == {"fp32", "fp16"} | (offered - {"cuda"})
        if "fp8" not in offered:  # declined with the card's capability in the reason
            with pytest.raises(Exception, match=rf"capability {capability[0]}\.{capability[1]}"):
                GpuBackend().compile(HostBuilt(_Tiny(Clean)), "fp8", (4,), CUDA)
