"""Decoder-only LLMs as forward-pass items: one prefill over the prompt's token ids,
giving the logits of the next token (what "time to first token" measures).

Only the last position's logits are kept: the whole [batch, seq, vocab] tensor
would make reference outputs of gigabytes, and the last position depends on every
earlier one through attention, so it checks the whole network.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from xpuperf.zoo import ModelSpec


class NextTokenLogits(torch.nn.Module):
    """input_ids [batch, seq] -> logits [batch, vocab] of the next token."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # An explicit all-ones mask: without one, transformers probes position ids for
        # packed sequences with torch.diff, which has no ONNX export. logits_to_keep=1:
        # the LM head runs on the last position only, as in a prefill.
        mask = torch.ones_like(input_ids)
        return self.model(input_ids=input_ids, attention_mask=mask, use_cache=False,
                          logits_to_keep=1).logits[:, -1]


def gpt2(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel
    return NextTokenLogits(GPT2LMHeadModel(GPT2Config(**config)))


def llama(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM
    return NextTokenLogits(LlamaForCausalLM(LlamaConfig(**config)))


def chatglm2(config: Mapping[str, Any], spec: ModelSpec) -> torch.nn.Module:
    from xpuperf.models.chatglm import ChatGLM2, ChatGLM2Config
    return ChatGLM2(ChatGLM2Config(**config))
