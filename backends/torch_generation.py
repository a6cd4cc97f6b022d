"""The reference generation engine on torch: a KV cache and static batching.

One serving thread takes the queued requests that share a prompt length (up to
``max_batch``), prefills them together, then decodes them one step at a time
until the longest is done, handing each token to its request's sink as soon as
the step that made it ends. Requests arriving meanwhile wait for the next batch
(static batching: simple and correct; a continuous-batching engine admits them
between steps instead, behind the same contract). The CPU backend serves it;
a GPU backend can too, with ``device="cuda"``.

``BatchingEngine`` is the model, the queue and the serving thread of every
engine on torch; ``StaticBatchingEngine`` batches as above, and an engine on it
says only how one batch is decoded (``_decode``): ``TorchEngine`` here with a
dynamic KV cache, backends/gpu/generation.py with a static one and CUDA graphs.
backends/continuous_batching.py batches continuously on the same thread.

backends/torch_engines.py picks the continuous engine or this one by the
backend option ``engine``. Options: max_batch (requests in one batch, default
64), threads (torch's intra-op threads, default torch's), prefill_chunk (prompt
tokens per prefill forward, default the whole prompt: zoo.yaml's
``prefill_chunk`` reaches the engine as this option).
"""
from __future__ import annotations

import abc
import threading
from collections import deque
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from backends.generation import (GenerationEngine, GenerationUnsupported, LMArtifactLike,
                                 Request, TokenSink)

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEFAULT_MAX_BATCH = 64
# Builders whose KV cache takes a prompt in pieces (transformers' models): ChatGLM2,
# xpuperf's own module, takes a prompt on an empty cache only.
CHUNKED_PREFILL_BUILDERS = ("gpt2", "llama", "qwen3", "qwen3_moe")


class BatchingEngine(GenerationEngine):
    """The model, the queue and the serving thread of an engine on torch; a
    subclass says how queued requests are batched and decoded."""

    def __init__(self, artifact: LMArtifactLike, precision: str, options: Mapping[str, str],
                 device: str):
        import torch

        if precision not in DTYPES:
            raise GenerationUnsupported(f"the torch engines generate in {', '.join(DTYPES)}, "
                                        f"not {precision}")
        try:
            self.max_batch = int(options.get("max_batch", DEFAULT_MAX_BATCH))
            self.prefill_chunk = int(options["prefill_chunk"]) if "prefill_chunk" in options \
                else None
            if "threads" in options:
                torch.set_num_threads(int(options["threads"]))
        except ValueError as e:
            raise ValueError(f"backend option max_batch/prefill_chunk/threads must be an "
                             f"integer: {e}") from None
        for name, value in (("max_batch", self.max_batch), ("prefill_chunk", self.prefill_chunk)):
            if value is not None and value < 1:
                raise ValueError(f"backend option {name} must be >= 1, got {value}")
        if self.prefill_chunk and artifact.builder not in CHUNKED_PREFILL_BUILDERS:
            raise GenerationUnsupported(
                f"builder {artifact.builder!r} takes a prompt on an empty cache only, not in "
                f"chunks of prefill_chunk={self.prefill_chunk} (chunked prefill serves "
                f"{', '.join(CHUNKED_PREFILL_BUILDERS)})")
        self._torch, self.device = torch, device
        self._dtype = getattr(torch, DTYPES[precision])
        self._lm = artifact.causal_lm().to(device=device, dtype=self._dtype)
        self._queue: deque[tuple[Request, TokenSink]] = deque()
        self._wake = threading.Condition()
        self._model_lock = threading.Lock()
        self._closed = False
        # Started last: a subclass's own state is set before its first submit,
        # which cannot come before its constructor returns.
        self._thread = threading.Thread(target=self._serve, name=f"generate-{artifact.name}",
                                        daemon=True)
        self._thread.start()

    def submit(self, request: Request, sink: TokenSink) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("submit after close: the engine is stopped")
            self._queue.append((request, sink))
            self._wake.notify()

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        torch = self._torch
        ids = torch.tensor([list(token_ids)], device=self.device)
        with self._model_lock, torch.inference_mode():
            return self._lm(ids, None)[0].float().cpu().numpy()

    def _prompt_logits(self, ids: Any, cache: Any) -> Any:
        """The next-token logits after each row of ``ids`` [rows, length], the
        prompts run into ``cache`` ``prefill_chunk`` tokens a forward (chunked
        prefill: a long prompt's activations stay a chunk's size)."""
        chunk = self.prefill_chunk or ids.shape[1]
        for start in range(0, ids.shape[1], chunk):
            logits = self._lm(ids[:, start:start + chunk], cache)[:, -1]
        return logits

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        self._release()

    def _release(self) -> None:
        """Let go of what the engine holds on its device (a subclass drops its
        cache and graphs first), so that what is allocated next finds it free."""
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._busy() and not self._closed:
                    self._wake.wait()
                if self._closed and not self._queue and not self._busy():
                    return
                arrivals = self._admit()
            try:
                with self._model_lock, self._torch.inference_mode():
                    self._advance(arrivals)
            except BaseException as e:  # noqa: BLE001 - every request in flight learns why
                for sink in self._abandon(arrivals):
                    sink.finish(e)

    # How requests are batched: the serving thread admits queued requests (under
    # the queue's lock), advances them without it, and on an error finishes every
    # request admitted and not finished with it.

    def _busy(self) -> bool:
        """Requests are admitted and unfinished: serve on without waiting for more."""
        return False

    @abc.abstractmethod
    def _admit(self) -> list[tuple[Request, TokenSink]]:
        """Take from ``self._queue`` what the next ``_advance`` starts on."""

    @abc.abstractmethod
    def _advance(self, arrivals: list[tuple[Request, TokenSink]]) -> None:
        """Serve ``arrivals`` (and whatever is running) for a while."""

    @abc.abstractmethod
    def _abandon(self, arrivals: list[tuple[Request, TokenSink]]) -> list[TokenSink]:
        """After ``_advance`` raised: the sinks it left unfinished, forgotten."""


def by_prompt_length(arrivals: list[tuple[Request, TokenSink]]
                     ) -> Iterator[list[tuple[Request, TokenSink]]]:
    """The arrivals of one prompt length at a time (prefilled together), shortest
    first. ``arrivals`` is sorted in place and each group deleted from it once the
    caller's loop body has taken it in: on an error, what is left in it is what no
    running batch holds (``_abandon``'s ``arrivals``)."""
    arrivals.sort(key=lambda entry: len(entry[0].prompt))
    while arrivals:
        length = len(arrivals[0][0].prompt)
        size = sum(1 for request, _ in arrivals if len(request.prompt) == length)
        yield arrivals[:size]
        del arrivals[:size]


class StaticBatchingEngine(BatchingEngine):
    """Static batching: the oldest request and the queued ones of its prompt
    length run as one batch to its end; a subclass decodes it (``_decode``)."""

    _finished: list[bool]  # per request of the running batch (set by _advance)

    def _admit(self) -> list[tuple[Request, TokenSink]]:
        """The oldest request and the queued ones of its prompt length, in order."""
        length = len(self._queue[0][0].prompt)
        batch, rest = [], deque()
        while self._queue:
            entry = self._queue.popleft()
            (batch if len(entry[0].prompt) == length and len(batch) < self.max_batch
             else rest).append(entry)
        self._queue = rest
        return batch

    def _advance(self, batch: list[tuple[Request, TokenSink]]) -> None:
        self._finished = [False] * len(batch)
        steps = max(r.max_new_tokens for r, _ in batch)
        for step, chosen in enumerate(self._decode([r.prompt for r, _ in batch], steps)):
            for i, (token, (request, sink)) in enumerate(zip(chosen, batch)):
                if step < request.max_new_tokens:
                    sink.token(token)
                    if step == request.max_new_tokens - 1:
                        self._finished[i] = True
                        sink.finish()

    def _abandon(self, batch: list[tuple[Request, TokenSink]]) -> list[TokenSink]:
        return [sink for (_, sink), done in zip(batch, self._finished) if not done]

    @abc.abstractmethod
    def _decode(self, prompts: list[tuple[int, ...]], steps: int) -> Iterator[list[int]]:
        """Greedy decoding of ``steps`` tokens after the same-length ``prompts``:
        yields each step's token per prompt (a list at least as long as
        ``prompts``; the rows past them are dropped) as soon as it exists."""


class TorchEngine(StaticBatchingEngine):
    """The reference engine: a dynamic KV cache (the model's own), grown every step.
    ``why`` says why it serves where another engine was asked for (the record shows it)."""

    def __init__(self, artifact: LMArtifactLike, precision: str, options: Mapping[str, str],
                 device: str = "cpu", why: str = ""):
        self.description = (f"torch reference engine (dynamic KV cache, static batching) on "
                            f"{device}" + (f": {why}" if why else ""))
        super().__init__(artifact, precision, options, device)

    def _decode(self, prompts: list[tuple[int, ...]], steps: int) -> Iterator[list[int]]:
        torch, lm = self._torch, self._lm
        cache = lm.new_cache()
        logits = self._prompt_logits(torch.tensor(prompts, device=self.device), cache)
        for step in range(steps):
            chosen = logits.argmax(-1)
            yield chosen.tolist()
            if step + 1 < steps:
                logits = lm(chosen[:, None], cache)[:, -1]
