"""The GPU backend's continuous-batching engine: a static KV cache whose rows are
slots, one a request, and each decode step replayed from one CUDA graph.

backends/gpu/generation.py's static engine runs a batch to its end, so under a
server's arrivals a request waits for the batch in flight; backends/
continuous_batching.py admits it at once but decodes eagerly, from a cache that
moves every step, which a CUDA graph cannot replay. Here the cache never moves:
``max_batch`` rows of one length (transformers' StaticCache, ``static_caches``),
and a request holds one row from its prefill to its last token.

- Arrivals of one prompt length are prefilled together, eagerly, into a dynamic
  cache, and their keys and values are copied into free rows.
- A decode step runs the rows up to the highest one in use (rounded up to a
  captured size; the idle rows among them compute a token that is dropped).
  Each row writes its key and value at its own position (the cache layers'
  update, per row), attends through a [rows, 1, 1, length] mask of its own
  tokens, and counts its position ids from its own prompt. Everything the step
  reads is a tensor of fixed address, so the step is one CUDA graph per size.
- A request leaves its row with its last token; the row is free for the next.
- The cache is as long as the longest admitted request needs (rounded up by
  ``static_cache.cache_length``). A request that needs more waits until the
  rows in use drain; then the cache grows and the steps are captured again.

On a CPU (device=cpu) the same steps run eagerly, so its logic is tested without
a GPU. Serves the builders the static engine serves, with torch's SDPA attention
(a boolean mask is SDPA's). Options: decode, max_batch, threads (as the static
engine's).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from backends.generation import LMArtifactLike, Request, TokenSink
from backends.gpu.static_cache import (cache_length, captured_sizes, decode_mode, prepared,
                                       static_caches, unsupported)
from backends.torch_generation import BatchingEngine, by_prompt_length

Entry = tuple[Request, TokenSink]


def _need(request: Request) -> int:
    """Cache positions a request writes: its prompt and every token fed back."""
    return len(request.prompt) + request.max_new_tokens - 1


class SlotsEngine(BatchingEngine):
    """Continuous batching on a static KV cache, a row (slot) per request."""

    def __init__(self, artifact: LMArtifactLike, precision: str, options: Mapping[str, str],
                 device: str):
        why = unsupported(artifact.builder)
        if why:
            raise ValueError(f"{artifact.name}: {why}")
        self._graphs, self._compiled, words = decode_mode(options, device)
        self.description = (f"static KV cache engine with continuous batching (a cache row "
                            f"per request), decode {words}")
        self._store: _Store | None = None
        # Sized once max_batch is parsed; the serving thread starts in between.
        self._rows: list[Entry | None] = []
        self._given: list[int] = []
        super().__init__(artifact, precision, options, device)
        attention = getattr(self._lm.model.config, "_attn_implementation", None)
        if attention != "sdpa":
            self.close()
            raise ValueError(f"{artifact.name}: the slots engine masks rows for torch's SDPA "
                             f"attention, not {attention!r}")
        self._sizes = captured_sizes(self.max_batch)
        self._rows = [None] * self.max_batch
        self._given = [0] * self.max_batch

    def _release(self) -> None:
        self._store = None
        super()._release()

    def _busy(self) -> bool:
        return any(self._rows)

    def _admit(self) -> list[Entry]:
        """Queued requests, in order, as many as rows are free; while rows are in
        use, only those that fit the cache (the first that does not waits for them
        to drain, and the ones behind it with it)."""
        free = self._rows.count(None)
        length = self._store.length if self._store is not None and self._busy() else None
        taken = []
        while self._queue and len(taken) < free:
            if length is not None and _need(self._queue[0][0]) > length:
                break
            taken.append(self._queue.popleft())
        return taken

    def _advance(self, arrivals: list[Entry]) -> None:
        if arrivals:
            need = max(_need(request) for request, _ in arrivals)
            if self._store is None or self._store.length < need:  # nothing runs: see _admit
                self._release()
                self._store = _Store(self, cache_length(need))
        for group in by_prompt_length(arrivals):
            rows = [i for i, entry in enumerate(self._rows) if entry is None][:len(group)]
            first = self._store.fill(rows, [request.prompt for request, _ in group])
            for row, entry in zip(rows, group):
                self._rows[row], self._given[row] = entry, 0
            self._deliver(dict(zip(rows, first)))
        if self._busy():
            top = max(i for i, entry in enumerate(self._rows) if entry is not None) + 1
            tokens = self._store.step(next(s for s in self._sizes if s >= top))
            self._deliver({i: tokens[i] for i, entry in enumerate(self._rows) if entry is not None})

    def _abandon(self, arrivals: list[Entry]) -> list[TokenSink]:
        running = [entry for entry in self._rows if entry is not None]
        self._rows = [None] * self.max_batch
        self._release()  # in whatever state the error left it: the next arrivals build anew
        return [sink for _, sink in running + arrivals]

    def _deliver(self, tokens: dict[int, int]) -> None:
        """Each row's newest token to its request's sink; a request given its last leaves its row."""
        for row, token in tokens.items():
            request, sink = self._rows[row]
            sink.token(token)
            self._given[row] += 1
            if self._given[row] == request.max_new_tokens:
                sink.finish()
                self._free(row)

    def _free(self, row: int) -> None:
        self._rows[row] = None
        self._store.idle(row)


class _Store:
    """The slots: a static KV cache of ``length`` tokens per row, and the state the
    decode steps read and write, each a tensor that never moves: ``tokens`` [rows,
    1] (each row's last token), ``positions`` [rows] (where its next key goes),
    ``mask`` [rows, 1, 1, length] (its tokens), ``active`` [rows] (1 if in use)."""

    def __init__(self, engine: SlotsEngine, length: int):
        self.engine, self.length = engine, length
        rows, device = engine.max_batch, engine.device
        self.tokens = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, dtype=torch.long, device=device)
        self.active = torch.zeros(rows, dtype=torch.long, device=device)
        self.mask = torch.zeros(rows, 1, 1, length, dtype=torch.bool, device=device)
        self.mask[:, :, :, 0] = True  # an idle row attends to one key: no row of NaNs
        self.caches = static_caches(engine, length)
        self.storage = self.caches[max(self.caches)].layers
        self.steps = {size: self._step(size, cache) for size, cache in self.caches.items()}

    def _step(self, size: int, cache: Any) -> Any:
        lm = self.engine._lm
        index = torch.arange(size, device=self.positions.device)
        positions, mask = self.positions[:size], self.mask[:size]
        tokens, active = self.tokens[:size], self.active[:size]
        for layer in cache.layers:
            layer.update = _per_row_update(layer, index, positions)

        def step() -> Any:
            mask[index, 0, 0, positions] = True  # the key this step writes
            nxt = lm(tokens, cache, attention_mask=mask, position_ids=positions[:, None])[:, -1]
            nxt = nxt.argmax(-1)
            tokens[:, 0] = nxt
            positions.add_(active)
            return nxt
        # No row is active while capturing: the runs write only idle rows' first key.
        return prepared(self.engine, step)

    def fill(self, rows: list[int], prompts: list[tuple[int, ...]]) -> list[int]:
        """Prefill the same-length ``prompts`` into ``rows``; their first tokens."""
        lm, length = self.engine._lm, len(prompts[0])
        cache = lm.new_cache()
        first = lm(torch.tensor(prompts, device=self.engine.device), cache)[:, -1].argmax(-1)
        index = torch.tensor(rows, device=self.positions.device)
        for mine, theirs in zip(self.storage, cache.layers):
            mine.keys[index, :, :length] = theirs.keys
            mine.values[index, :, :length] = theirs.values
        self.mask[index] = False
        self.mask[index, :, :, :length] = True
        self.positions[index] = length
        self.active[index] = 1
        self.tokens[index, 0] = first
        return first.tolist()

    def step(self, size: int) -> list[int]:
        """One decode step of the first ``size`` rows; each row's next token."""
        return self.steps[size]().tolist()

    def idle(self, row: int) -> None:
        self.active[row] = 0
        self.positions[row] = 0
        self.mask[row] = False
        self.mask[row, :, :, 0] = True


def _per_row_update(layer: Any, index: Any, positions: Any) -> Any:
    """A StaticCache layer's update that writes one token a row at that row's own
    position (StaticCache writes every row at one position)."""
    def update(keys: Any, values: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        layer.keys[index, :, positions] = keys[:, :, 0]
        layer.values[index, :, positions] = values[:, :, 0]
        return layer.keys, layer.values
    return update
