"""PyTorch: build (seeded or with local weights), run eagerly in fp32, export ONNX."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from xpuperf.zoo import ModelSpec

PACKAGES = ("torch", "transformers")
OPSET = 17


def materialize(build: Callable, spec: ModelSpec, weights: Path | None) -> torch.nn.Module:
    """The builder's module, seeded; ``weights`` is a TorchScript file (the whole
    model), a Hugging Face folder (the builder loads it) or a .safetensors state."""
    if weights is not None and weights.suffix in (".pt", ".pth", ".torchscript"):
        # A TorchScript file is the whole model; it takes the zoo's inputs in order.
        return torch.jit.load(str(weights), map_location="cpu").eval()
    from safetensors import SafetensorError

    torch.manual_seed(spec.seed)  # also for the parts a weights file does not cover
    try:
        if weights is not None and weights.is_dir():
            return _from_folder(build, spec, weights).eval()
        model = build(spec.config, spec)
        if weights is not None:
            _load_safetensors(model, weights)
    except SafetensorError as e:  # no ValueError: callers would not see a weights problem
        raise ValueError(f"unreadable safetensors data ({e})") from e
    return model.eval()


def _from_folder(build: Callable, spec: ModelSpec, folder: Path) -> torch.nn.Module:
    if "pretrained" not in inspect.signature(build).parameters:
        raise ValueError(f"builder {spec.builder!r} cannot load a Hugging Face folder; "
                         "name a .safetensors or TorchScript file instead")
    return build(spec.config, spec, pretrained=folder)


def _load_safetensors(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    target = getattr(model, "model", model)  # NamedIO wraps the framework model
    missing, _ = target.load_state_dict(load_file(str(path)), strict=False)
    if missing:
        raise ValueError(f"{len(missing)} parameters missing, e.g. {missing[:3]}")


def run(model: torch.nn.Module, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in spec.inputs]
    with torch.inference_mode():
        out = model(*args)
    out = out if isinstance(out, (tuple, list)) else (out,)
    return {t.name: o.float().numpy() for t, o in zip(spec.outputs, out)}


def export_onnx(model: torch.nn.Module, spec: ModelSpec, path: Path, example: dict[str, np.ndarray]) -> None:
    args = tuple(torch.from_numpy(example[t.name]) for t in spec.inputs)
    # An input without a batch axis keeps its shape fixed, as the zoo declares it.
    dynamic = {t.name: {0: "batch"} for t in (*spec.inputs, *spec.outputs) if t.batched}
    # The TorchScript exporter: the dynamo one needs onnxscript and retraces the
    # Hugging Face models slowly; a dynamic batch axis is all we need. Its
    # deprecation and tracer warnings are known and would bury the test output.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=[t.name for t in spec.inputs],
                          output_names=[t.name for t in spec.outputs], opset_version=OPSET,
                          dynamic_axes=dynamic, dynamo=False)
