"""The reference generation engine on torch: a KV cache and static batching.

One serving thread takes the queued requests that share a prompt length (up to
``max_batch``), prefills them together, then decodes them one step at a time
until the longest is done, handing each token to its request's sink as soon as
the step that made it ends. Requests arriving meanwhile wait for the next batch
(static batching: simple and correct; a continuous-batching engine admits them
between steps instead, behind the same contract). The CPU backend serves it;
a GPU backend can too, with ``device="cuda"``.

Options: max_batch (requests in one batch, default 64), threads (torch's
intra-op threads, default torch's).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Mapping, Sequence

import numpy as np

from backends.generation import (GenerationEngine, GenerationUnsupported, LMArtifactLike,
                                 Request, TokenSink)

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEFAULT_MAX_BATCH = 64


class TorchEngine(GenerationEngine):
    def __init__(self, artifact: LMArtifactLike, precision: str, options: Mapping[str, str],
                 device: str = "cpu"):
        import torch

        if precision not in DTYPES:
            raise GenerationUnsupported(f"the torch reference engine generates in "
                                        f"{', '.join(DTYPES)}, not {precision}")
        try:
            self.max_batch = int(options.get("max_batch", DEFAULT_MAX_BATCH))
            if "threads" in options:
                torch.set_num_threads(int(options["threads"]))
        except ValueError as e:
            raise ValueError(f"backend option max_batch/threads must be an integer: {e}") from None
        if self.max_batch < 1:
            raise ValueError(f"backend option max_batch must be >= 1, got {self.max_batch}")
        self._torch, self._device = torch, device
        self._lm = artifact.causal_lm().to(device=device, dtype=getattr(torch, DTYPES[precision]))
        self._queue: deque[tuple[Request, TokenSink]] = deque()
        self._wake = threading.Condition()
        self._model_lock = threading.Lock()
        self._closed = False
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
        ids = torch.tensor([list(token_ids)], device=self._device)
        with self._model_lock, torch.inference_mode():
            return self._lm(ids, None)[0].float().cpu().numpy()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed and not self._queue:
                    return
                batch = self._take()
            done: set[int] = set()
            try:
                with self._model_lock, self._torch.inference_mode():
                    self._run(batch, done)
            except BaseException as e:  # noqa: BLE001 - every waiting request learns why
                for i, (_, sink) in enumerate(batch):
                    if i not in done:
                        sink.finish(e)

    def _take(self) -> list[tuple[Request, TokenSink]]:
        """The oldest request and the queued ones of its prompt length, in order."""
        length = len(self._queue[0][0].prompt)
        batch, rest = [], deque()
        while self._queue:
            entry = self._queue.popleft()
            (batch if len(entry[0].prompt) == length and len(batch) < self.max_batch
             else rest).append(entry)
        self._queue = rest
        return batch

    def _run(self, batch: list[tuple[Request, TokenSink]], done: set[int]) -> None:
        torch, lm = self._torch, self._lm
        cache = lm.new_cache()
        logits = lm(torch.tensor([r.prompt for r, _ in batch], device=self._device), cache)[:, -1]
        steps = max(r.max_new_tokens for r, _ in batch)
        for step in range(steps):
            chosen = logits.argmax(-1)
            for i, (token, (request, sink)) in enumerate(zip(chosen.tolist(), batch)):
                if step < request.max_new_tokens:
                    sink.token(token)
                    if step == request.max_new_tokens - 1:
                        done.add(i)
                        sink.finish()
            if step + 1 < steps:
                logits = lm(chosen[:, None], cache)[:, -1]
