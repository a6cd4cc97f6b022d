"""The GPU backend's generation engine: a static KV cache, and each decode step
replayed from one CUDA graph per batch size.

A decode step of a 7B model is a few hundred small kernels: launched one by one
from python, the launches take longer than the GPU's work (plain transformers:
78 ms a token against a 4.5 ms weight-read floor on an H100). Here the KV cache
is allocated once (transformers' StaticCache, whose tensors never move), so one
decode step (model forward and greedy argmax) is captured once per batch size
and replayed, one launch a step, with the token ids in a static input tensor;
the prefill runs eagerly. The batches are the reference engine's (same-length
prompts, backends/torch_generation.py), padded up to the next captured size
(powers of two up to max_batch) with copies of their first prompt whose tokens
are dropped, so a few captures serve every size.

The cache is as long as the longest batch so far needs (rounded up by
``static_cache.cache_length``) and never shrinks: attention reads all of it every step,
so a workload of one length runs at that length's cost. All batch sizes' caches
are views of one storage of max_batch rows, so they cost the memory of one.

On a CPU (CI's, device=cpu) the same static cache decodes eagerly, so its logic
is tested without a GPU. What it cannot serve goes to the reference engine, and
the engine's ``description`` (in every LLM record) says so and why: ChatGLM2
(xpuperf's own module, with per-layer list caches), a mixture of experts (its
routing picks experts by data: no fixed graph), a builder not checked here.

Replaying kernels removes their launches, not their count: an eager llama step
is about forty small kernels a layer (norms, rotary, activations), each a few
microseconds of GPU time. ``decode=compiled`` has torch.compile fuse them before
the capture, at the price of one compile per captured batch size when the
engine starts (keep max_batch small with it).

Options: engine=static|slots|continuous|reference (default static; slots is
continuous batching on the static cache, backends/gpu/slots.py; continuous is
torch's continuous-batching engine, backends/continuous_batching.py, eager);
decode=graphs|compiled|eager (default graphs on CUDA, eager on the CPU);
max_batch, threads (backends/torch_generation.py).
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

from backends import torch_engines
from backends.generation import GenerationEngine, GenerationUnsupported, LMArtifactLike
from backends.gpu.slots import SlotsEngine
from backends.gpu.static_cache import (cache_length, captured_sizes, decode_mode, prepared,
                                       static_caches, unsupported)
from backends.torch_generation import StaticBatchingEngine, TorchEngine

# The options the engines read (the compile path reads backends/gpu/backend.py's).
OPTIONS = ("engine", "decode", "max_batch", "threads", "prefill_chunk")
ENGINES = ("static", "slots") + torch_engines.ENGINES


def engine(artifact: LMArtifactLike, precision: str, options: Mapping[str, str],
           device: str) -> GenerationEngine:
    """The engine ``options["engine"]`` asks for, on ``device``: a static-cache one
    (static batches, or slots: continuous batching), or torch's continuous or
    reference engine; the reference engine, saying why, where a static-cache one
    cannot serve this model."""
    choice = options.get("engine", "static")
    if choice not in ENGINES:
        raise ValueError(f"backend option engine={choice!r}: use one of {', '.join(ENGINES)}")
    if choice in torch_engines.ENGINES:
        return torch_engines.engine(artifact, precision, options, device, choice)
    if "prefill_chunk" in options:  # its prefill fills the static cache's rows at once
        raise GenerationUnsupported(f"the {choice} engine prefills whole prompts, not "
                                    f"prefill_chunk={options['prefill_chunk']}: run this workload "
                                    f"with --backend-option engine=continuous or reference")
    why = unsupported(artifact.builder)
    if why:
        return TorchEngine(artifact, precision, options, device,
                           why=f"the static-cache engine declined: {why}")
    return (StaticCacheEngine if choice == "static" else SlotsEngine)(artifact, precision,
                                                                      options, device)


class StaticCacheEngine(StaticBatchingEngine):
    """Option ``decode``: graphs (replayed from CUDA graphs, CUDA's default),
    compiled (torch.compile, then CUDA graphs on CUDA) or eager (the CPU's
    default; benchmarks/gpu_generation_check.py compares them on a GPU)."""

    def __init__(self, artifact: LMArtifactLike, precision: str, options: Mapping[str, str],
                 device: str):
        why = unsupported(artifact.builder)
        if why:
            raise ValueError(f"{artifact.name}: {why}; engine() falls back to the reference "
                             "engine for it")
        self._graphs, self._compiled, words = decode_mode(options, device)
        self.description = f"static KV cache engine, decode {words}"
        self._decoder: _Decoder | None = None
        super().__init__(artifact, precision, options, device)
        self._sizes = captured_sizes(self.max_batch)

    def _release(self) -> None:
        self._decoder = None
        super()._release()

    def _decode(self, prompts: list[tuple[int, ...]], steps: int) -> Iterator[list[int]]:
        torch = self._torch
        size = next(s for s in self._sizes if s >= len(prompts))
        # The cache holds the prompt and every token fed back (not the last one).
        decoder = self._decoder_for(len(prompts[0]) + steps - 1)
        cache, step = decoder.caches[size], decoder.steps[size]
        cache.reset()
        padded = list(prompts) + [prompts[0]] * (size - len(prompts))
        tokens = self._lm(torch.tensor(padded, device=self.device), cache)[:, -1].argmax(-1)
        yield tokens.tolist()
        for _ in range(steps - 1):
            tokens = step(tokens[:, None])
            yield tokens.tolist()

    def _decoder_for(self, length: int) -> "_Decoder":
        if self._decoder is None or self._decoder.length < length:
            self._release()
            self._decoder = _Decoder(self, cache_length(length))
        return self._decoder


class _Decoder:
    """The static KV cache of one length (``static_caches``) and per captured batch
    size its decode step (ids [size, 1] -> next ids [size]), a CUDA graph on cuda."""

    def __init__(self, engine: StaticCacheEngine, length: int):
        self.length = length
        self.caches = static_caches(engine, length)
        self.steps = {size: self._step(engine, cache, size) for size, cache in self.caches.items()}

    @staticmethod
    def _step(engine: StaticCacheEngine, cache: Any, size: int) -> Any:
        lm, torch = engine._lm, engine._torch

        def step(ids: Any) -> Any:
            return lm(ids, cache)[:, -1].argmax(-1)
        # Captured now, not in a timed batch: the warm-up and the replay of the
        # first call run at positions the next batch's reset and prefill rewrite.
        step = prepared(engine, step, torch.zeros(size, 1, dtype=torch.long, device=engine.device))
        cache.reset()
        return step
