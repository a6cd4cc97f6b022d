"""Prompts and text for the LLM workloads, from a shipped sample of real prompts
(data/prompts.txt, one a line).

There is no model tokenizer offline (the zoo's LLMs carry seeded weights and no
hub access), so text becomes token ids with a deterministic byte-level
tokenizer: each UTF-8 byte b is id 3 + b (ids 0-2 left for special tokens, as
byte-level vocabularies do). A prompt of N tokens is exactly N ids of real text
(llm_perf fed one repeated character, whose real token count differed from the
nominal); with a real tokenizer at hand the same prompts would tokenize to
other lengths, which is why the workload states lengths in tokens.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from backends.generation import Request

SAMPLE = Path(__file__).parent / "data" / "prompts.txt"
FIRST_BYTE_ID = 3
MIN_VOCAB = FIRST_BYTE_ID + 256
SHARED = -1  # the sample's prompt that a workload's shared prefix starts at: its last


def tokenize(text: str, vocab_size: int) -> list[int]:
    if vocab_size < MIN_VOCAB:
        raise ValueError(f"the byte-level tokenizer needs a vocabulary of >= {MIN_VOCAB} ids, "
                         f"the model has {vocab_size}: give its config a larger vocab_size")
    return [FIRST_BYTE_ID + b for b in text.encode("utf-8")]


@lru_cache(maxsize=1)
def _lines() -> tuple[str, ...]:
    return tuple(line for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip())


def sample(i: int, min_bytes: int) -> str:
    """The sample's prompts i, i+1, ... joined until at least ``min_bytes`` long."""
    lines = _lines()
    text, j = "", i
    while len(text.encode("utf-8")) < min_bytes:
        text += lines[j % len(lines)] + "\n"
        j += 1
    return text


def ids(i: int, prompt_tokens: int, vocab_size: int) -> tuple[int, ...]:
    """``sample(i)`` cut to ``prompt_tokens`` ids: real text of exactly that length."""
    return tuple(tokenize(sample(i, prompt_tokens), vocab_size)[:prompt_tokens])


def requests(count: int, prompt_tokens: int, output_tokens: int, vocab_size: int) -> list[Request]:
    """``count`` distinct requests, the i-th of ``ids(i, ...)``."""
    return [Request(ids(i, prompt_tokens, vocab_size), output_tokens) for i in range(count)]


def text_ids(tokens: int, vocab_size: int) -> list[int]:
    """The sample's first ``tokens`` ids, for perplexity."""
    ids = tokenize("\n".join(_lines()), vocab_size)
    if len(ids) < tokens:
        raise ValueError(f"the text sample {SAMPLE.name} has {len(ids)} tokens, "
                         f"{tokens} asked: lower accuracy.text_tokens")
    return ids[:tokens]
