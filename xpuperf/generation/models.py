"""LLMs for generation: one causal-LM shape over transformers' classes and ChatGLM2,
the artifact an engine is handed, and the model's size facts (weights and KV
cache bytes, FLOPs per token) behind MFU and bandwidth utilization.

Builders are seeded from the published configs zoo.yaml writes out (no hub access).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from backends.generation import LMArtifactLike
from xpuperf.ceilings import element_bytes


@dataclass(frozen=True)
class LMShape:
    layers: int
    q_dim: int  # query heads x head dim: attention FLOPs grow with it
    kv_dim: int  # key/value heads x head dim: the KV cache grows with it
    kv_heads: int  # a static KV cache is [batch, kv_heads, length, kv_dim / kv_heads] per layer


class CausalLM(torch.nn.Module):
    """``forward(input_ids [batch, seq], cache) -> logits [batch, seq, vocab]``;
    ``cache`` (from ``new_cache``) is extended in place, None runs without one."""

    def __init__(self, model: torch.nn.Module, shape: LMShape):
        super().__init__()
        self.model, self.shape = model.eval(), shape

    def new_cache(self) -> Any:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, cache: Any = None) -> torch.Tensor:
        raise NotImplementedError


class HFCausalLM(CausalLM):
    """A transformers causal LM and its DynamicCache (or any transformers Cache,
    such as a StaticCache, handed to ``forward``)."""

    def __init__(self, model: torch.nn.Module, shape: LMShape):
        super().__init__(model, shape)
        # transformers renamed past_key_values to cache (5.2x; the old name warns on
        # every call there, and an unknown name is silently dropped before it).
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def new_cache(self) -> Any:
        from transformers import DynamicCache
        return DynamicCache(config=self.model.config)

    def forward(self, input_ids: torch.Tensor, cache: Any = None,
                attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``attention_mask`` [batch, cached + seq] (0 where a row is padding) and
        ``position_ids`` [batch, seq] let the rows of one batch stand at different
        positions, as continuous batching's do."""
        return self.model(input_ids=input_ids, use_cache=cache is not None,
                          attention_mask=attention_mask, position_ids=position_ids,
                          **{self._cache_arg: cache}).logits


class GLMCausalLM(CausalLM):
    """xpuperf.models.chatglm's ChatGLM2 and its per-layer key/value lists."""

    def new_cache(self) -> Any:
        return [[] for _ in range(self.shape.layers)]

    def forward(self, input_ids: torch.Tensor, cache: Any = None) -> torch.Tensor:
        return self.model.all_logits(input_ids, cache)


def _hf(model: torch.nn.Module, layers: int, heads: int, kv_heads: int, head_dim: int) -> CausalLM:
    return HFCausalLM(model, LMShape(layers, heads * head_dim, kv_heads * head_dim, kv_heads))


def _llama_like(model: torch.nn.Module) -> CausalLM:
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return _hf(model, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, head_dim)


def gpt2(config: Mapping[str, Any]) -> CausalLM:
    from transformers import GPT2Config, GPT2LMHeadModel
    m = GPT2LMHeadModel(GPT2Config(**config))
    c = m.config
    return _hf(m, c.n_layer, c.n_head, c.n_head, c.n_embd // c.n_head)


def llama(config: Mapping[str, Any]) -> CausalLM:
    from transformers import LlamaConfig, LlamaForCausalLM
    return _llama_like(LlamaForCausalLM(LlamaConfig(**config)))


def qwen3(config: Mapping[str, Any]) -> CausalLM:
    from transformers import Qwen3Config, Qwen3ForCausalLM
    return _llama_like(Qwen3ForCausalLM(Qwen3Config(**config)))


def qwen3_moe(config: Mapping[str, Any]) -> CausalLM:
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    return _llama_like(Qwen3MoeForCausalLM(Qwen3MoeConfig(**config)))


def chatglm2(config: Mapping[str, Any]) -> CausalLM:
    from xpuperf.models.chatglm import ChatGLM2, ChatGLM2Config
    c = ChatGLM2Config(**config)
    return GLMCausalLM(ChatGLM2(c), LMShape(c.num_layers, c.num_attention_heads * c.kv_channels,
                                            c.multi_query_group_num * c.kv_channels,
                                            c.multi_query_group_num))


BUILDERS: dict[str, Callable[[Mapping[str, Any]], CausalLM]] = {
    "gpt2": gpt2, "llama": llama, "chatglm2": chatglm2, "qwen3": qwen3, "qwen3_moe": qwen3_moe}


class LMArtifact(LMArtifactLike):
    """A zoo LLM and its seed. By default built once, fp32 on the CPU (the accuracy
    gates' reference), and engines get fresh copies. With ``build_on=(device,
    precision)``, for a benchmark of a big model that needs no reference, each
    engine's model is built afresh with the seed on that device in that precision:
    a 7B model in fp32 on the CPU, and its copy, take minutes and 54 GB."""

    def __init__(self, name: str, builder: str, config: Mapping[str, Any], seed: int,
                 build_on: tuple[str, str] | None = None, tensor_parallel: int = 1):
        if builder not in BUILDERS:
            raise ValueError(f"{name}: unknown generation builder {builder!r} "
                             f"(known: {', '.join(BUILDERS)})")
        self.name, self.builder, self.config = name, builder, dict(config)
        self.seed, self.build_on, self.tensor_parallel = seed, build_on, tensor_parallel
        if build_on is None:
            self._model: CausalLM | None = self._build("cpu", "fp32")
            sized = self._model
        else:  # the sizes from a build without storage
            self._model, sized = None, self._build("meta", build_on[1])
        self.vocab_size = int(sized.model.get_output_embeddings().weight.shape[0]
                              if hasattr(sized.model, "get_output_embeddings")
                              else sized.model.output_layer.weight.shape[0])
        self._facts = lm_facts(sized, self.config)

    def _build(self, device: str, precision: str) -> CausalLM:
        from backends.torch_generation import DTYPES

        if precision not in DTYPES:
            raise ValueError(f"{self.name}: cannot build in {precision}; builds take "
                             f"{', '.join(DTYPES)}")
        torch.manual_seed(self.seed)
        default = torch.get_default_dtype()
        torch.set_default_dtype(getattr(torch, DTYPES[precision]))
        try:
            with torch.device(device):
                return BUILDERS[self.builder](self.config)
        finally:
            torch.set_default_dtype(default)

    def causal_lm(self) -> CausalLM:
        if self._model is None:
            return self._build(*self.build_on)
        return copy.deepcopy(self._model)

    def reference(self) -> CausalLM:
        """The fp32 model itself (not a copy), for the reference outputs."""
        if self._model is None:
            raise RuntimeError(f"{self.name} is built on {self.build_on[0]} in "
                               f"{self.build_on[1]} for a benchmark, without the fp32 "
                               "reference: build it without build_on for the accuracy gates")
        return self._model

    def facts(self) -> "LMFacts":
        return self._facts


@dataclass(frozen=True)
class LMFacts:
    """Per precision: what one decode step reads and one token's prefill computes."""

    params: int  # all weights
    # The weights one token runs through and a batch-1 decode step reads: a MoE's
    # routed experts only, and no untied input embedding (a gather of one row).
    read_params: int
    shape: LMShape

    def weight_bytes(self, precision: str) -> int:
        return self.read_params * element_bytes(precision)

    def kv_bytes_per_token(self, precision: str) -> int:
        return 2 * self.shape.layers * self.shape.kv_dim * element_bytes(precision)

    def flops_per_token(self, context: float) -> float:
        """Multiply-adds count 2: the weights' 2 x read params, plus attention's
        QK^T and AV over ``context`` earlier tokens."""
        return 2.0 * self.read_params + 4.0 * self.shape.layers * self.shape.q_dim * context


def lm_facts(lm: CausalLM, config: Mapping[str, Any]) -> LMFacts:
    model = lm.model
    params = sum(p.numel() for p in model.parameters())
    expert = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    experts, top_k = config.get("num_experts"), config.get("num_experts_per_tok")
    active = params - expert + (expert * top_k // experts if experts and top_k else expert)
    embed = next(m for m in model.modules() if isinstance(m, torch.nn.Embedding)).weight
    # An embedding tied to the LM head is read whole by the head; an untied one is a gather.
    tied = any(p is embed for n, p in model.named_parameters(remove_duplicate=False)
               if "embed" not in n and "wte" not in n)
    return LMFacts(params=params, read_params=active if tied else active - embed.numel(), shape=lm.shape)
