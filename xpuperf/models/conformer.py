"""A Conformer encoder (Gulati et al., 2020), written out: no library we install
ships one (torchaudio's is not installed and takes no 2-D input features).

Input: features [batch, channels, freq, frames] and a padding mask [batch, frames/4]
(True marks padding, the convention of torch's key_padding_mask); output: the
encoder's memory [batch, frames/4, d_model]. A 2-D convolutional subsampling
(two stride-2 3x3 convolutions, as in ESPnet/WeNet's Conv2dSubsampling4) cuts
time by 4, then sinusoidal positions are added and every block applies
FFN/2, multi-head self-attention, the convolution module and FFN/2, with a final
LayerNorm. Attention is torch's absolute-position MultiheadAttention (as in
torchaudio's Conformer), not the paper's relative-position variant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from xpuperf.zoo import ModelSpec

SUBSAMPLING = 4


@dataclass(frozen=True)
class ConformerConfig:
    in_channels: int
    feat_dim: int  # the frequency axis of the input features
    d_model: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    conv_kernel: int
    dropout: float = 0.1


class FeedForward(nn.Sequential):
    def __init__(self, c: ConformerConfig):
        super().__init__(nn.LayerNorm(c.d_model), nn.Linear(c.d_model, c.ffn_dim), nn.SiLU(),
                         nn.Dropout(c.dropout), nn.Linear(c.ffn_dim, c.d_model), nn.Dropout(c.dropout))


class ConvModule(nn.Module):
    def __init__(self, c: ConformerConfig):
        super().__init__()
        self.norm = nn.LayerNorm(c.d_model)
        self.pointwise_in = nn.Conv1d(c.d_model, 2 * c.d_model, 1)
        self.depthwise = nn.Conv1d(c.d_model, c.d_model, c.conv_kernel, padding=c.conv_kernel // 2,
                                   groups=c.d_model)
        self.batch_norm = nn.BatchNorm1d(c.d_model)
        self.pointwise_out = nn.Conv1d(c.d_model, c.d_model, 1)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        # Padded frames are zeroed so the depthwise convolution does not mix them in.
        x = self.norm(x).masked_fill(pad[..., None], 0.0).transpose(1, 2)
        x = nn.functional.glu(self.pointwise_in(x), dim=1)
        x = nn.functional.silu(self.batch_norm(self.depthwise(x)))
        return self.dropout(self.pointwise_out(x)).transpose(1, 2)


class ConformerBlock(nn.Module):
    def __init__(self, c: ConformerConfig):
        super().__init__()
        self.ffn1, self.ffn2 = FeedForward(c), FeedForward(c)
        self.attn_norm = nn.LayerNorm(c.d_model)
        self.attn = nn.MultiheadAttention(c.d_model, c.num_heads, dropout=c.dropout, batch_first=True)
        self.attn_dropout = nn.Dropout(c.dropout)
        self.conv = ConvModule(c)
        self.final_norm = nn.LayerNorm(c.d_model)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        y = self.attn_norm(x)
        x = x + self.attn_dropout(self.attn(y, y, y, key_padding_mask=pad, need_weights=False)[0])
        x = x + self.conv(x, pad)
        return self.final_norm(x + 0.5 * self.ffn2(x))


class ConformerEncoder(nn.Module):
    def __init__(self, c: ConformerConfig):
        super().__init__()
        self.subsample = nn.Sequential(
            nn.Conv2d(c.in_channels, c.d_model, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c.d_model, c.d_model, 3, stride=2, padding=1), nn.ReLU())
        freq = -(-c.feat_dim // SUBSAMPLING)
        self.project = nn.Linear(c.d_model * freq, c.d_model)
        self.xscale = math.sqrt(c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(ConformerBlock(c) for _ in range(c.num_layers))

    def forward(self, src: torch.Tensor, src_pad_mask: torch.Tensor) -> torch.Tensor:
        x = self.subsample(src)  # [batch, d_model, freq/4, frames/4]
        b, d, f, t = x.shape
        x = self.project(x.permute(0, 3, 1, 2).reshape(b, t, d * f))
        x = self.dropout(x * self.xscale + positions(t, d, x.device))
        for block in self.blocks:
            x = block(x, src_pad_mask)
        return x


def positions(length: int, d_model: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal position encodings [length, d_model] (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float, device=device)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float, device=device)
                     * (-math.log(10000.0) / d_model))
    return torch.stack([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1).flatten(1)


def build(config: Mapping[str, Any], spec: ModelSpec) -> nn.Module:
    src, mask = spec.inputs
    frames, tokens = src.shape[-1], mask.shape[-1]
    if -(-frames // SUBSAMPLING) != tokens:
        raise ValueError(f"{spec.name}: {mask.name} has {tokens} positions, but {frames} frames "
                         f"subsample to {-(-frames // SUBSAMPLING)}")
    return ConformerEncoder(ConformerConfig(in_channels=src.shape[1], feat_dim=src.shape[2], **config))
