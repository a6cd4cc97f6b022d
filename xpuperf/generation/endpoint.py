"""An OpenAI-compatible server as a GenerationEngine, so that the harness that
drives the in-tree engines measures a server the same way: one measurement path
(arrivals, timestamps, figures) whatever serves.

A server streams text, not token ids: each chunk is handed to the sink as it
arrives (``TokenSink.text``), and at the end the request's token count comes
from the stream's usage where the server gives it, else from the model's
tokenizer (``token_counts`` says how many requests each way).
"""
from __future__ import annotations

import json
from collections import Counter
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from backends.generation import GenerationEngine, GenerationUnsupported, Request, TokenSink
from xpuperf.extras import require
from xpuperf.generation import prompts
from xpuperf.generation.openai_client import (Endpoint, EndpointError, LoopThread, Pool,
                                              reads_in_c, stream)


class Tokenizer:
    """The served model's tokenizer, loaded from a local path or cache only when
    first needed (``name``: --llm-tokenizer, else --llm-model)."""

    def __init__(self, name: str):
        self.name = name

    def load(self) -> None:
        """Now, not on the client's event loop in the middle of a run."""
        self._tokenizer  # noqa: B018 - the cached property's first read loads it

    @cached_property
    def _tokenizer(self) -> Any:
        # transformers is the torch extra's: a core install names it when missing.
        auto = require("transformers", "the served model's tokenizer").AutoTokenizer
        try:
            return auto.from_pretrained(self.name, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EndpointError(f"the tokenizer {self.name!r} is not on this machine ({e}): give "
                                f"--llm-tokenizer a local directory with the model's "
                                f"tokenizer") from None

    def count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, i: int, tokens: int) -> str:
        """The i-th prompt of the shipped sample, cut to ``tokens`` of this
        tokenizer's tokens (its text may re-tokenize a token or so apart: servers
        tokenize text, the usage's prompt_tokens says what they counted)."""
        min_bytes = 4 * tokens  # most tokenizers average 3 to 4 bytes a token on English
        while True:
            ids = self._tokenizer(prompts.sample(i, min_bytes), add_special_tokens=False)["input_ids"]
            if len(ids) >= tokens:
                return self._tokenizer.decode(ids[:tokens])
            min_bytes *= 2


def greedy_texts(name: str, texts: Sequence[str], max_tokens: int, ignore_eos: bool) -> list[str]:
    """The served model's fp32 greedy continuation of each of ``texts``, computed
    here by transformers from ``name`` (a local folder or cached model that holds
    the weights, not only the tokenizer): the reference a small served model's
    answers are compared with (zoo.yaml's endpoint_accuracy.method: reference)."""
    transformers = require("transformers", "the reference of endpoint_accuracy")
    torch = require("torch", "the reference of endpoint_accuracy")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            name, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise EndpointError(f"endpoint_accuracy's method reference needs the served model's "
                            f"weights on this machine ({e}): give --llm-tokenizer their local "
                            f"folder, or use method exact_match") from None
    out = []
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")
            tokens = model.generate(**ids, do_sample=False, max_new_tokens=max_tokens,
                                    min_new_tokens=max_tokens if ignore_eos else 0,
                                    pad_token_id=tokenizer.eos_token_id)
            out.append(tokenizer.decode(tokens[0, ids["input_ids"].shape[1]:],
                                        skip_special_tokens=True))
    return out


class EndpointEngine(GenerationEngine):
    """Requests go to ``endpoint`` from one event loop in a thread of its own;
    ``tokenizer`` counts the tokens of a reply that comes without usage."""

    device = "endpoint"

    def __init__(self, endpoint: Endpoint, tokenizer: Tokenizer):
        self.endpoint, self.tokenizer = endpoint, tokenizer
        self.token_counts: Counter[str] = Counter()  # "usage" / "tokenizer" -> requests
        self.cached_tokens: list[int] = []  # per request whose usage said (prefix cache hits)
        tokenizer.load()
        self._loop = LoopThread("xpuperf endpoint client")
        # The client's event loop ("uvloop" or "asyncio"), and who reads the answers.
        self.loop_kind = self._loop.kind + (", C reader" if reads_in_c(endpoint.url) else "")
        # What every request carried beside the prompt; the key's variable, never the key.
        sent = f", extra body {json.dumps(endpoint.extra_body)}" if endpoint.extra_body else ""
        if endpoint.api_key_env:
            sent += f", API key from ${endpoint.api_key_env}"
        self.description = f"OpenAI-compatible server {endpoint.url} ({endpoint.api}), " \
                           f"model {endpoint.model}{sent}, client on {self.loop_kind}"
        self.pool = Pool()  # used on the loop's thread only

    def submit(self, request: Request, sink: TokenSink) -> None:
        if not request.text:
            raise ValueError("a request to a server needs its prompt's text (Request.text)")
        self._loop.start(self._one(request, sink))

    async def _one(self, request: Request, sink: TokenSink) -> None:
        try:
            reply = await stream(self.endpoint, self.pool, request.text, request.max_new_tokens,
                                 sink.text, sink.sent, request.history)
            if reply.completion_tokens is not None:
                count, source = reply.completion_tokens, "usage"
            else:  # counted here, between chunks: a fast tokenizer takes microseconds
                count, source = self.tokenizer.count(reply.text), "tokenizer"
        except Exception as e:  # noqa: BLE001 - every failure ends the request, never the loop
            sink.finish(e)
            return
        self.token_counts[source] += 1
        if reply.cached_tokens is not None:
            self.cached_tokens.append(reply.cached_tokens)
        sink.finish(tokens=count)

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        raise GenerationUnsupported("an OpenAI-compatible server gives no logits")

    def close(self) -> None:
        if not self._loop.loop.is_closed():  # a second close has nothing to do
            self._loop.loop.call_soon_threadsafe(self.pool.close)  # runs before the loop stops
        self._loop.close()
