"""Substructures: single layers that ByteMLPerf planned to test on their own
(grouped, depthwise and pointwise convolution, GRU, LSTM, a transformer encoder
and decoder layer), so that a backend's coverage and speed can be read per
building block. Each is torch's own layer; sizes come from zoo.yaml."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from xpuperf.zoo import ModelSpec


def conv(config: Mapping[str, Any], spec: ModelSpec) -> nn.Module:
    """Conv2d on [batch, channels, h, w]: grouped, depthwise (groups = channels) or
    pointwise (kernel 1), as the entry's config says."""
    channels = spec.inputs[0].shape[1]
    k = config["kernel_size"]
    return nn.Conv2d(channels, config["out_channels"], k, padding=k // 2, groups=config["groups"])


class _FirstOutput(nn.Module):
    """A recurrent layer's output sequence; the final states are left out, as the
    next layer of a network reads only the sequence."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def gru(config: Mapping[str, Any], spec: ModelSpec) -> nn.Module:
    return _FirstOutput(nn.GRU(spec.inputs[0].shape[-1], batch_first=True, **config))


def lstm(config: Mapping[str, Any], spec: ModelSpec) -> nn.Module:
    return _FirstOutput(nn.LSTM(spec.inputs[0].shape[-1], batch_first=True, **config))


class EncoderLayer(nn.Module):
    """src -> output. The bare layer cannot be exported: torch's ONNX exporter
    traces its optional mask and is_causal arguments as tensors."""

    def __init__(self, layer: nn.TransformerEncoderLayer):
        super().__init__()
        self.layer = layer

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        return self.layer(src)


def encoder_layer(config: Mapping[str, Any], spec: ModelSpec) -> nn.Module:
    return EncoderLayer(nn.TransformerEncoderLayer(spec.inputs[0].shape[-1], batch_first=True, **config))


class DecoderLayer(nn.Module):
    """(tgt, memory) -> output, with causal self-attention as in a decoder."""

    def __init__(self, layer: nn.TransformerDecoderLayer):
        super().__init__()
        self.layer = layer

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device)
        return self.layer(tgt, memory, tgt_mask=causal)


def decoder_layer(config: Mapping[str, Any], spec: ModelSpec) -> nn.Module:
    return DecoderLayer(nn.TransformerDecoderLayer(spec.inputs[0].shape[-1], batch_first=True, **config))
