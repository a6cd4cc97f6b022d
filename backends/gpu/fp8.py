"""fp8 for nn.Linear: per-tensor scaled e4m3 matmuls (torch._scaled_mm).

Each weight is quantized once, with the scale that maps its largest magnitude to
e4m3's largest finite value (448). Each activation is quantized with either

* dynamic scaling (the default): a scale from its own largest magnitude, per call
  (no calibration, no outlier clipped, but a reduction over the activation before
  every matmul), or
* static scaling (``calibrate``): a scale fixed at compile from the largest
  magnitude each layer saw over a calibration set, so a call does no reduction.
  The price: an activation beyond the calibrated range is clamped to +-448.

The product is accumulated by the tensor cores and written in bf16, the precision
of the rest of the model.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

E4M3_MAX = 448.0
# cuBLASLt's fp8 matmuls need the inner and outer dimensions in multiples of 16.
ALIGN = 16


def _scale(amax: torch.Tensor) -> torch.Tensor:
    """The scale that maps the largest magnitude ``amax`` to 448."""
    # A tensor of zeros would give a zero scale, and 0/0 in the division.
    return amax.float().clamp(min=1e-12) / E4M3_MAX


def _quantize(t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # Rounding can lift the largest value past 448, and e4m3fn has no infinity: a
    # value cast out of range is NaN.
    return (t.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


class Fp8Linear(nn.Module):
    """``linear`` with its matmul in e4m3; bias and output in bf16."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.out_features = linear.out_features
        weight = linear.weight.detach()
        scale = _scale(weight.abs().amax())
        # [out, in] row-major transposed is the column-major [in, out] that
        # _scaled_mm wants as its second operand.
        self.register_buffer("weight_t", _quantize(weight, scale).t())
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None
                             else linear.bias.detach().to(torch.bfloat16))
        # Static scaling's: the input's largest magnitude so far while calibrating,
        # then the fixed input scale. Both None: dynamic scaling.
        self.register_buffer("input_amax", None)
        self.register_buffer("input_scale", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        rows = x.reshape(-1, x.shape[-1])
        count = rows.shape[0]
        if count % ALIGN:
            rows = nn.functional.pad(rows, (0, 0, 0, ALIGN - count % ALIGN))
        scale = self.input_scale
        if scale is None:  # dynamic scaling, or calibrating
            amax = rows.abs().amax()
            if self.input_amax is not None:
                self.input_amax = torch.maximum(self.input_amax, amax.float())
            scale = _scale(amax)
        out = torch._scaled_mm(_quantize(rows, scale), self.weight_t, scale_a=scale,
                               scale_b=self.weight_scale, bias=self.bias,
                               out_dtype=torch.bfloat16)
        return out[:count].reshape(*lead, self.out_features)


# Modules that read a child Linear's weight and bias themselves instead of calling
# it: an Fp8Linear there has no ``weight`` to read (found by the fake-CUDA lane,
# tests_selftest/test_fake_cuda.py, on the zoo's encoder and decoder layers).
READ_BY_PARENT = {nn.MultiheadAttention: "nn.MultiheadAttention reads out_proj's weight "
                                         "itself (F.multi_head_attention_forward)",
                  nn.TransformerEncoderLayer: "nn.TransformerEncoderLayer's inference fast path "
                                              "reads linear1's and linear2's weights itself"}


def convert(module: nn.Module) -> dict[str, Any]:
    """Replace, in place, every nn.Linear whose dimensions fp8 matmuls take, and
    whose parent calls it, by an Fp8Linear. Returns {"fp8_layers": names,
    "bf16_layers": {name: why not}}."""
    fp8: list[str] = []
    kept: dict[str, str] = {}
    for parent_name, parent in list(module.named_modules()):
        reader = next((why for kind, why in READ_BY_PARENT.items() if isinstance(parent, kind)),
                      "")
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            full = f"{parent_name}.{name}" if parent_name else name
            if reader:
                kept[full] = reader
                continue
            if child.in_features % ALIGN or child.out_features % ALIGN:
                kept[full] = (f"{child.in_features}x{child.out_features} is not a multiple "
                              f"of {ALIGN} both ways")
                continue
            setattr(parent, name, Fp8Linear(child))
            fp8.append(full)
    return {"fp8_layers": fp8, "bf16_layers": kept}


def calibrate(module: nn.Module, batches: Iterable[Sequence[torch.Tensor]]) -> None:
    """Static scaling for ``module``'s Fp8Linear layers (``convert`` first): run it
    over ``batches`` (the calibration set: each the module's positional inputs),
    recording the largest input magnitude each layer sees, then fix each layer's
    input scale to it. A layer the calibration never reached keeps dynamic scaling."""
    layers = [m for m in module.modules() if isinstance(m, Fp8Linear)]
    for layer in layers:
        layer.input_amax = torch.full((), -1.0, device=layer.weight_t.device)
    with torch.no_grad():
        for args in batches:
            module(*args)
    for layer in layers:
        if layer.input_amax >= 0:
            layer.input_scale = _scale(layer.input_amax)
        layer.input_amax = None
