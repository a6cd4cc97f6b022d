"""ChatGLM2 (THUDM/chatglm2-6b), written out because transformers has no class for
it and its own modeling file is remote code we would have to download and trust.

Follows modeling_chatglm.py of chatglm2-6b with the 6B's settings: pre-RMSNorm
GLM blocks, rotary embedding on the first half of each head's dims (adjacent
pairs rotated together), multi-query attention with `multi_query_group_num` key/
value heads shared by the query heads, a bias on the fused QKV projection only,
a SwiGLU MLP, a final RMSNorm and an untied output layer. Tensors are laid out
[batch, seq, ...] instead of the original [seq, batch, ...]; the arithmetic is
the same. ``all_logits`` with a cache (one [keys, values] list per layer, holding
the key/value groups before they are shared out) is the generation path: a
prefill, then one token at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ChatGLM2Config:
    num_layers: int = 28
    padded_vocab_size: int = 65024
    hidden_size: int = 4096
    ffn_hidden_size: int = 13696
    kv_channels: int = 128
    num_attention_heads: int = 32
    multi_query_group_num: int = 2
    layernorm_epsilon: float = 1e-5


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return (self.weight * (x * torch.rsqrt(variance + self.eps))).to(x.dtype)


def rope_cache(seq_len: int, rot_dim: int, device: torch.device) -> torch.Tensor:
    """[seq, rot_dim/2, 2]: cos and sin of position x theta."""
    theta = 1.0 / (10000 ** (torch.arange(0, rot_dim, 2, dtype=torch.float, device=device) / rot_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float, device=device), theta)
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def apply_rope(x: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    """x [batch, heads, seq, head_dim]; rotates its first 2 * cache.shape[1] dims."""
    rot_dim = cache.shape[-2] * 2
    x, x_pass = x[..., :rot_dim], x[..., rot_dim:]
    pairs = x.reshape(*x.shape[:-1], rot_dim // 2, 2)
    cos, sin = cache[..., 0], cache[..., 1]  # [seq, rot_dim/2], broadcast over batch, heads
    rotated = torch.stack([pairs[..., 0] * cos - pairs[..., 1] * sin,
                           pairs[..., 1] * cos + pairs[..., 0] * sin], dim=-1)
    return torch.cat([rotated.flatten(-2), x_pass], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, c: ChatGLM2Config):
        super().__init__()
        self.heads, self.groups, self.head_dim = c.num_attention_heads, c.multi_query_group_num, c.kv_channels
        projection = c.kv_channels * c.num_attention_heads
        self.query_key_value = nn.Linear(c.hidden_size, projection + 2 * c.kv_channels * self.groups, bias=True)
        self.dense = nn.Linear(projection, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.query_key_value(x).split(
            [self.heads * self.head_dim, self.groups * self.head_dim, self.groups * self.head_dim], dim=-1)
        q = apply_rope(q.view(b, s, self.heads, self.head_dim).transpose(1, 2), rope)
        k = apply_rope(k.view(b, s, self.groups, self.head_dim).transpose(1, 2), rope)
        v = v.view(b, s, self.groups, self.head_dim).transpose(1, 2)
        # A prefill (an empty or no cache) is causal; after it, one new token a step
        # attends to every cached one. Decided in Python, not on traced shapes.
        prefill = not cache
        if cache:
            if s != 1:
                raise ValueError("ChatGLM2 takes a prompt on an empty cache only, then one token a step")
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        if cache is not None:
            cache[:] = [k, v]
        t = k.shape[2]
        # Each key/value group serves heads/groups consecutive query heads.
        per_group = self.heads // self.groups
        k, v = (kv[:, :, None].expand(b, self.groups, per_group, t, self.head_dim)
                .reshape(b, self.heads, t, self.head_dim) for kv in (k, v))
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=prefill)
        return self.dense(out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, c: ChatGLM2Config):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(c.hidden_size, 2 * c.ffn_hidden_size, bias=False)
        self.dense_4h_to_h = nn.Linear(c.ffn_hidden_size, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.dense_h_to_4h(x).chunk(2, dim=-1)
        return self.dense_4h_to_h(nn.functional.silu(gate) * up)


class GLMBlock(nn.Module):
    def __init__(self, c: ChatGLM2Config):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.layernorm_epsilon)
        self.self_attention = SelfAttention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.layernorm_epsilon)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        x = x + self.self_attention(self.input_layernorm(x), rope, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class ChatGLM2(nn.Module):
    """input_ids [batch, seq] -> logits [batch, vocab] of the next token."""

    def __init__(self, c: ChatGLM2Config):
        super().__init__()
        self.rot_dim = c.kv_channels // 2  # rotary on half of each head's dims
        self.embedding = nn.Embedding(c.padded_vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(GLMBlock(c) for _ in range(c.num_layers))
        self.final_layernorm = RMSNorm(c.hidden_size, c.layernorm_epsilon)
        self.output_layer = nn.Linear(c.hidden_size, c.padded_vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.final_layernorm(self._hidden(input_ids, None)[:, -1]))

    def all_logits(self, input_ids: torch.Tensor, cache: list[list] | None) -> torch.Tensor:
        """logits [batch, seq, vocab] at every position; ``cache`` (one list per
        layer, empty at first) is extended with this step's keys and values."""
        return self.output_layer(self.final_layernorm(self._hidden(input_ids, cache)))

    def _hidden(self, input_ids: torch.Tensor, cache: list[list] | None) -> torch.Tensor:
        x = self.embedding(input_ids)
        start = cache[0][0].shape[2] if cache and cache[0] else 0
        # In the model's dtype, as chatglm2's own code: fp32 angles would promote
        # half-precision queries and keys and leave the values behind.
        rope = rope_cache(start + input_ids.shape[1], self.rot_dim, x.device)[start:].to(x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, None if cache is None else cache[i])
        return x
