"""Continuous batching on torch: requests join the running batch between decode
steps and leave it as soon as they are done.

Under a server's arrivals, static batching (backends/torch_generation.py) makes
a request that arrives while a batch runs wait for that batch's last token
before its prefill: its TTFT holds a whole generation. Here the serving thread,
before every decode step, prefills what has arrived (requests of one prompt
length together) and adds it to the running batch, up to ``max_batch`` rows.
The price: the running rows wait for that prefill, so TTFT falls and TPOT rises
(benchmarks/llm_engines.py measures both against the reference engine's).

The rows of the running batch stand at different positions. They share one
dynamic KV cache, left-padded to its longest row: the attention mask is 0 at
each row's padding and each row's position ids count its own tokens, so a row
computes what it would alone (the selftests compare its tokens with the
reference engine's). A finished row is dropped from the cache at once, and the
padding columns that no row needs any more with it.

Serves the transformers builders (their forward takes the mask and position
ids); ChatGLM2, xpuperf's own module, has no such inputs (``unsupported``).
Options: max_batch (rows in the running batch, default 64), threads, prefill_chunk
(the arrivals' prompts prefilled that many tokens a forward).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from backends.generation import LMArtifactLike, Request, TokenSink
from backends.torch_generation import BatchingEngine, by_prompt_length

# Builders whose forward takes an attention mask and position ids (HFCausalLM).
ROW_BUILDERS = ("gpt2", "llama", "qwen3", "qwen3_moe")


def unsupported(builder: str) -> str:
    """Why the continuous engine cannot serve ``builder``'s models, or ''."""
    if builder in ROW_BUILDERS:
        return ""
    return (f"builder {builder!r} takes no attention mask or position ids, which rows at "
            f"different positions need (it serves {', '.join(ROW_BUILDERS)})")


@dataclass
class _Rows:
    """Requests decoding together: their KV cache (left-padded to one length),
    ``mask`` [rows, length] (1 where a row has a token), each row's last token,
    and how many tokens each has been given. ``padded``: some row has padding
    (else the rows stand at one position and need no mask)."""

    entries: list[tuple[Request, TokenSink]]
    cache: Any
    mask: Any
    tokens: Any
    given: list[int]
    padded: bool = False

    def join(self, other: "_Rows") -> None:
        """Append ``other``'s rows, padding the shorter cache on the left."""
        width = max(self.mask.shape[1], other.mask.shape[1])

        def pad(t: Any, length: int) -> Any:  # [rows, heads, length, dim] on the left
            return F.pad(t, (0, 0, width - length, 0))
        mine, theirs = self.mask.shape[1], other.mask.shape[1]
        for a, b in zip(self.cache.layers, other.cache.layers):
            a.keys = torch.cat([pad(a.keys, mine), pad(b.keys, theirs)])
            a.values = torch.cat([pad(a.values, mine), pad(b.values, theirs)])
        self.mask = torch.cat([F.pad(self.mask, (width - mine, 0)),
                               F.pad(other.mask, (width - theirs, 0))])
        self.tokens = torch.cat([self.tokens, other.tokens])
        self.entries += other.entries
        self.given += other.given
        self.padded = self.padded or mine != theirs

    def keep(self, rows: list[int]) -> None:
        """Only ``rows``, without the leading columns that are padding in all of them."""
        index = self.mask.new_tensor(rows)
        mask = self.mask[index]
        start = int(mask.any(0).int().argmax())  # the first column any row uses
        self.mask = mask[:, start:]
        self.padded = not bool(self.mask.all())
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        self.tokens = self.tokens[index]
        self.entries = [self.entries[i] for i in rows]
        self.given = [self.given[i] for i in rows]


class ContinuousEngine(BatchingEngine):
    """The reference engine's model and KV cache, batched continuously."""

    def __init__(self, artifact: LMArtifactLike, precision: str, options: Mapping[str, str],
                 device: str = "cpu"):
        why = unsupported(artifact.builder)
        if why:
            raise ValueError(f"{artifact.name}: {why}")
        self.description = (f"torch continuous-batching engine (dynamic KV cache, requests "
                            f"join between decode steps) on {device}")
        self._rows: _Rows | None = None
        super().__init__(artifact, precision, options, device)

    def _busy(self) -> bool:
        return self._rows is not None

    def _admit(self) -> list[tuple[Request, TokenSink]]:
        room = self.max_batch - (len(self._rows.entries) if self._rows else 0)
        return [self._queue.popleft() for _ in range(min(room, len(self._queue)))]

    def _advance(self, arrivals: list[tuple[Request, TokenSink]]) -> None:
        for group in by_prompt_length(arrivals):
            rows = self._deliver(self._prefill(group))  # their first tokens
            if rows is not None and self._rows is not None:
                self._rows.join(rows)
            elif rows is not None:
                self._rows = rows
        if self._rows is not None:
            self._step()
            self._rows = self._deliver(self._rows)

    def _abandon(self, arrivals: list[tuple[Request, TokenSink]]) -> list[TokenSink]:
        running = self._rows.entries if self._rows else []
        self._rows = None
        return [sink for _, sink in running + arrivals]

    def _prefill(self, group: list[tuple[Request, TokenSink]]) -> _Rows:
        ids = torch.tensor([request.prompt for request, _ in group], device=self.device)
        cache = self._lm.new_cache()
        logits = self._prompt_logits(ids, cache)
        return _Rows(list(group), cache, torch.ones_like(ids), logits.argmax(-1),
                     [0] * len(group))

    def _step(self) -> None:
        """One decode step of every row: its last token in, its next token out."""
        rows = self._rows
        mask = torch.cat([rows.mask, rows.mask.new_ones(len(rows.entries), 1)], 1)
        # A row's next position is the count of its tokens so far, padding aside.
        # Rows without padding run as the reference engine's do: no mask to build.
        padding = {"attention_mask": mask, "position_ids": rows.mask.sum(1, keepdim=True)} \
            if rows.padded else {}
        logits = self._lm(rows.tokens[:, None], rows.cache, **padding)[:, -1]
        rows.mask, rows.tokens = mask, logits.argmax(-1)

    @staticmethod
    def _deliver(rows: _Rows) -> _Rows | None:
        """Each row's newest token to its sink; the rows still running, if any."""
        keep = []
        for i, (token, (request, sink)) in enumerate(zip(rows.tokens.tolist(), rows.entries)):
            sink.token(token)
            rows.given[i] += 1
            if rows.given[i] == request.max_new_tokens:
                sink.finish()
            else:
                keep.append(i)
        if not keep:
            return None
        if len(keep) < len(rows.entries):
            rows.keep(keep)
        return rows
