"""What the GPU backend's static-cache engines share (backends/gpu/generation.py's
static batches, backends/gpu/slots.py's continuous batching): which models a
static cache serves, option ``decode``, the captured batch sizes, the cache
itself (one storage, viewed per size) and a decode step compiled and captured.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from backends.gpu.runtime import CudaGraphs

DECODES = ("graphs", "compiled", "eager")
# Builders whose transformers model decodes from a StaticCache with no host sync
# (no data-dependent shapes), which a CUDA graph needs.
STATIC_BUILDERS = ("gpt2", "llama", "qwen3")
UNSUPPORTED = {
    "chatglm2": "ChatGLM2 is xpuperf's own module with per-layer key/value lists: "
                "transformers has no static cache for it",
    "qwen3_moe": "a mixture of experts routes each token to experts chosen by its data "
                 "(data-dependent shapes): its decode cannot be one fixed CUDA graph",
}
LENGTH_STEP = 64  # cache lengths are rounded up to this: lengths near each other share captures


def unsupported(builder: str) -> str:
    """Why the static-cache engine cannot serve ``builder``'s models, or ''."""
    if builder in STATIC_BUILDERS:
        return ""
    return UNSUPPORTED.get(builder, f"builder {builder!r} is not one it was checked with "
                                    f"({', '.join(STATIC_BUILDERS)})")


def decode_mode(options: Mapping[str, str], device: str) -> tuple[bool, bool, str]:
    """Option ``decode`` on ``device``: (replayed from CUDA graphs, compiled by
    torch.compile, the words for the engine's description)."""
    cuda = device.startswith("cuda")
    decode = options.get("decode", "graphs" if cuda else "eager")
    if decode not in DECODES:
        raise ValueError(f"backend option decode={decode!r}: use one of {', '.join(DECODES)}")
    if decode == "graphs" and not cuda:
        raise ValueError(f"decode=graphs: CUDA graphs need a CUDA device, not {device}; "
                         "use decode=eager or decode=compiled there")
    words = {"graphs": "replayed from CUDA graphs",
             "compiled": "compiled by torch.compile" + (" and replayed from CUDA graphs" if cuda
                                                        else ""),
             "eager": "eager"}[decode]
    return cuda and decode != "eager", decode == "compiled", f"{words} on {device}"


def cache_length(need: int) -> int:
    """The cache length that holds ``need`` tokens, rounded up to LENGTH_STEP."""
    return -(-need // LENGTH_STEP) * LENGTH_STEP


def captured_sizes(max_batch: int) -> list[int]:
    """The batch sizes decode steps are captured for: powers of two below
    ``max_batch``, and ``max_batch``."""
    return sorted({1 << i for i in range(max_batch.bit_length()) if 1 << i < max_batch}
                  | {max_batch})


def static_caches(engine: Any, length: int) -> dict[int, Any]:
    """Per captured batch size (``engine._sizes``) a StaticCache of ``length``
    tokens whose tensors are views of the first rows of one storage of the
    largest size's: every size's cache for the memory of one."""
    from transformers import StaticCache

    torch, lm = engine._torch, engine._lm
    shape = lm.shape
    caches: dict[int, Any] = {}
    storage = None
    for size in sorted(engine._sizes, reverse=True):  # the largest one is the storage
        cache = StaticCache(config=lm.model.config, max_cache_len=length)
        cache.early_initialization(size, shape.kv_heads, shape.kv_dim // shape.kv_heads,
                                   engine._dtype, torch.device(engine.device))
        if storage is None:
            storage = [(layer.keys, layer.values) for layer in cache.layers]
        else:
            for layer, (keys, values) in zip(cache.layers, storage):
                layer.keys, layer.values = keys[:size], values[:size]
        caches[size] = cache
    return caches


def prepared(engine: Any, step: Callable[..., Any], *examples: Any) -> Callable[..., Any]:
    """``step`` as the engine's option decode runs it: compiled by torch.compile
    (static shapes: one graph of fused kernels per batch size), and on CUDA
    captured as a CUDA graph, here, with ``examples`` for its inputs (the capture
    runs it a few times: the caller resets what those runs wrote)."""
    torch = engine._torch
    if engine._compiled:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit,
                                                   len(engine._sizes))
        step = torch.compile(step, dynamic=False)
    if not engine._graphs:
        return step
    graphs = CudaGraphs(step, torch.device(engine.device))
    graphs(*examples)
    return graphs
