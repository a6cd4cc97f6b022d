"""The generation contract: how a backend serves an LLM to the harness.

A backend that generates returns a ``GenerationEngine`` from
``Backend.generation_engine(artifact, precision, options)``. The engine owns
batching and its KV cache (static batches, continuous batching, paged caches:
its call); the harness only submits requests and is handed each token as it is
produced, and takes every timestamp itself (time.perf_counter_ns in the
``TokenSink``), so an engine can neither choose nor distort what is measured.
A bring-your-own engine (vLLM, SGLang, a vendor's) fits in one short file: call
``sink.token`` from wherever it produces a token, from any thread.

backends/torch_generation.py is the reference engine (torch, KV cache, static
batching); backends/continuous_batching.py batches continuously on the same
model (what the CPU backend serves by default); backends/gpu/generation.py adds
a static cache and CUDA graphs to the reference's batches. An engine may set
``description`` (a str: which engine serves, and why where it is a fallback):
every LLM record shows it.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np


class GenerationUnsupported(Exception):
    """The backend cannot generate with this model or precision; the message says
    why (the LLM items skip with it)."""


@dataclass(frozen=True)
class Request:
    """Greedy decoding of exactly ``max_new_tokens`` tokens after ``prompt``: the
    engine ignores end-of-sequence tokens, so every run does the nominal work.
    ``text``: the prompt as text, for an engine that tokenizes itself (a server,
    xpuperf.generation.endpoint); its ``prompt`` ids are then empty. ``history``:
    a conversation's earlier turns as text, user's and assistant's messages in
    turn, before ``text`` (a multi-turn workload's; ``prompt`` ids hold the whole
    context already)."""

    prompt: tuple[int, ...]
    max_new_tokens: int
    text: str = ""
    history: tuple[str, ...] = ()


class TokenSink(abc.ABC):
    """Where an engine delivers one request's tokens (implemented by the harness)."""

    @abc.abstractmethod
    def token(self, token_id: int) -> None:
        """One generated token, called as soon as it exists, in order."""

    def text(self, piece: str, at_ns: int) -> None:
        """A piece of streamed text (a server's chunk: a token or a few) that
        arrived at ``at_ns`` (time.perf_counter_ns: the socket read's time, which a
        client that parses reads in batches takes before it parses), by an engine
        that has text, not ids; it then gives ``finish`` the count of tokens its
        pieces held. A sink of token ids only (a test's) need not take text."""
        raise TypeError(f"{type(self).__name__} takes token ids, not text")

    def sent(self, at_ns: int) -> None:
        """The request left for a server at ``at_ns`` (time.perf_counter_ns, as its
        bytes were written, or as the connect made for it began), by an engine
        that is a server's client: its TTFT and end-to-end latency count from
        then, not from its submission, so that the client's own queue (requests
        waiting for its event loop) is not the server's. An engine that computes
        the tokens itself does not call it."""

    @abc.abstractmethod
    def finish(self, error: BaseException | None = None, tokens: int | None = None) -> None:
        """The request is done: all its tokens were delivered, or ``error`` ended
        it. ``tokens``: how many an engine that streamed text generated."""


class GenerationEngine(abc.ABC):
    """An LLM loaded for one precision, serving requests until ``close``."""

    # The torch device it computes on ("cpu", "cuda:0"): where the harness measures
    # the ceilings (peak FLOP/s, memory bandwidth) that the backend's info() does
    # not declare. An engine on an accelerator that torch does not drive declares
    # them in info() instead.
    device: str = "cpu"
    # The ranks it is split over; one that splits a model sets it (xpuperf.generation
    # refuses an engine whose split is not the artifact's).
    tensor_parallel: int = 1

    @abc.abstractmethod
    def submit(self, request: Request, sink: TokenSink) -> None:
        """Queue ``request`` and return at once; its tokens go to ``sink``. Called
        from one harness thread, while earlier requests may still be running."""

    @abc.abstractmethod
    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """float32 [len(token_ids), vocab]: at every position, the logits of the
        next token (one prefill). The accuracy gates read it: the last row is the
        first token's logits, all rows give the perplexity."""

    def close(self) -> None:
        """Release the device and stop the engine's threads."""


class LMArtifactLike(abc.ABC):
    """What a generation engine is handed of a model (implemented by
    xpuperf.generation.models.LMArtifact)."""

    name: str
    builder: str  # "gpt2", "llama", "chatglm2", "qwen3", "qwen3_moe"
    config: Mapping[str, Any]  # the published config, as zoo.yaml writes it out
    vocab_size: int
    # Ranks the model is split over (zoo.yaml's tensor_parallel): above 1, only an
    # engine that splits it serves it (backends/tensor_parallel.py).
    tensor_parallel: int = 1

    @abc.abstractmethod
    def causal_lm(self) -> Any:
        """A fresh copy of the model (xpuperf.generation.models.CausalLM: a torch
        module with ``new_cache()`` and ``forward(input_ids, cache) -> logits``),
        fp32 on the CPU with its weights (or on the device and in the precision a
        benchmark built it for), the caller's to convert or move."""
