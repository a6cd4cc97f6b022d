"""The continuous-batching engines: torch's (backends/continuous_batching.py) and
the GPU backend's on a static cache (backends/gpu/slots.py, its decode eager on
the CPU as on device=cpu). Their tokens against the reference engine's with
requests joining and leaving at different positions, a late request served at
once (not after the running batch, as the static engines serve it), the cache's
rows, an error mid-run, and how a backend picks them."""
from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backends.continuous_batching import ContinuousEngine, _Rows
from backends.cpu import CpuBackend
from backends.generation import Request, TokenSink
from backends.gpu.generation import StaticCacheEngine
from backends.gpu.slots import SlotsEngine
from backends.torch_generation import TorchEngine
from xpuperf.generation import harness, prompts
from xpuperf.generation.models import LMArtifact
from xpuperf.zoo import load_zoo

ROOT = Path(__file__).resolve().parents[1]
# (prompt tokens, new tokens): lengths that differ, rows that end at different
# steps (one after its first token), more requests than the engines' 4 rows.
MIXED = ((6, 5), (9, 3), (6, 8), (70, 4), (3, 1), (12, 6))
# Each engine on the CPU, with four rows.
ENGINES = {
    "continuous": lambda artifact: ContinuousEngine(artifact, "fp32", {"max_batch": "4"}),
    "slots": lambda artifact: SlotsEngine(artifact, "fp32", {"max_batch": "4"}, "cpu"),
    "reference": lambda artifact: TorchEngine(artifact, "fp32", {"max_batch": "4"}),
    "static": lambda artifact: StaticCacheEngine(artifact, "fp32", {"max_batch": "4"}, "cpu"),
}


@pytest.fixture(scope="module")
def smoke():
    return {w.builder: w for w in load_zoo(ROOT / "zoo.yaml", "smoke").generation}


def _artifact(spec) -> LMArtifact:
    return LMArtifact(spec.name, spec.builder, spec.config, spec.seed)


def _mixed(vocab_size: int) -> list[Request]:
    return [prompts.requests(1, prompt, new, vocab_size)[0] for prompt, new in MIXED]


@pytest.mark.parametrize("kind, builder", [
    *[("continuous", b) for b in ("gpt2", "llama", "qwen3", "qwen3_moe")],
    *[("slots", b) for b in ("gpt2", "llama", "qwen3")],
])
def test_tokens_and_logits_equal_the_reference_engines(smoke, kind, builder):
    artifact = _artifact(smoke[builder])
    requests = _mixed(artifact.vocab_size)
    served = ENGINES[kind](artifact)
    reference = TorchEngine(artifact, "fp32", {})
    try:
        got = harness.tokens(harness.closed_loop(served, requests, len(requests), 60))
        # Each alone on the reference engine: no batch, no padding.
        want = [harness.tokens(harness.closed_loop(reference, [r], 1, 60))[0] for r in requests]
        assert got == want
        assert [len(t) for t in got] == [new for _, new in MIXED]
        text = prompts.text_ids(20, artifact.vocab_size)
        np.testing.assert_allclose(served.logits(text), reference.logits(text), rtol=0, atol=0)
    finally:
        served.close()
        reference.close()
    assert not served._busy()  # every request left its row when it was done (read once stopped)


class _Log(TokenSink):
    """Appends (name, event) to a shared log; ``then`` runs after the n-th token."""

    def __init__(self, log: list, name: str, then: tuple[int, object] | None = None):
        self.log, self.name, self.then, self.count = log, name, then, 0
        self.done = threading.Event()

    def token(self, token_id: int) -> None:
        self.count += 1
        self.log.append((self.name, self.count))
        if self.then and self.then[0] == self.count:
            self.then[1]()

    def finish(self, error=None) -> None:
        self.log.append((self.name, "end" if error is None else error))
        self.done.set()


def _second_arrives(served, artifact, first: tuple[int, int], second: tuple[int, int],
                    at: int) -> list:
    """Serve ``first`` (prompt tokens, new tokens), and ``second`` submitted as
    the first's ``at``-th token is handed out; the log of both's tokens and ends."""
    log: list = []
    late = _Log(log, "second")
    early = _Log(log, "first", then=(at, lambda: served.submit(
        prompts.requests(1, *second, artifact.vocab_size)[0], late)))
    served.submit(prompts.requests(1, *first, artifact.vocab_size)[0], early)
    assert early.done.wait(60) and late.done.wait(60)
    return log


@pytest.mark.parametrize("kind, joins", [("continuous", True), ("slots", True),
                                         ("reference", False), ("static", False)])
def test_a_request_arriving_mid_generation_joins_the_running_batch(smoke, kind, joins):
    artifact = _artifact(smoke["llama"])
    served = ENGINES[kind](artifact)
    try:  # another prompt length, arriving at the first one's third token
        log = _second_arrives(served, artifact, (6, 12), (9, 2), at=3)
    finally:
        served.close()
    if joins:  # prefilled before the next step, done long before the first one
        assert log.index(("second", 1)) == log.index(("first", 3)) + 1
        assert log.index(("second", "end")) < log.index(("first", 12))
    else:  # static batching: waits for the running batch's end
        assert log.index(("second", 1)) > log.index(("first", "end"))


def test_a_request_too_long_for_the_slots_waits_for_them_to_drain_then_the_cache_grows(smoke):
    artifact = _artifact(smoke["llama"])
    served = ENGINES["slots"](artifact)
    try:  # 70 prompt tokens need a longer cache than the first request's 64
        log = _second_arrives(served, artifact, (6, 10), (70, 3), at=2)
        assert served._store.length == 128
    finally:
        served.close()
    assert log.index(("second", 1)) > log.index(("first", "end"))
    assert [entry for entry in log if entry[0] == "second"] == [
        ("second", 1), ("second", 2), ("second", 3), ("second", "end")]


def _layers(*rows_of_keys):
    return SimpleNamespace(layers=[SimpleNamespace(keys=k, values=-k) for k in rows_of_keys])


def test_rows_join_padded_on_the_left_and_leave_with_the_padding_no_row_needs():
    # One layer; keys [rows, heads=1, length, dim=1] numbered so columns are visible.
    a = _Rows(["a"], _layers(torch.tensor([[[[1.], [2.], [3.]]]])), torch.ones(1, 3, dtype=torch.long),
              torch.tensor([7]), [2])
    b = _Rows(["b0", "b1"], _layers(torch.arange(10., 20.).reshape(2, 1, 5, 1)),
              torch.ones(2, 5, dtype=torch.long), torch.tensor([8, 9]), [0, 1])
    assert not a.padded
    a.join(b)
    assert a.padded and a.entries == ["a", "b0", "b1"] and a.given == [2, 0, 1] and a.tokens.tolist() == [7, 8, 9]
    assert a.mask.tolist() == [[0, 0, 1, 1, 1], [1] * 5, [1] * 5]
    assert a.cache.layers[0].keys[0, 0, :, 0].tolist() == [0, 0, 1, 2, 3]
    assert a.cache.layers[0].values[0, 0, :, 0].tolist() == [0, 0, -1, -2, -3]
    a.keep([0])  # the long rows leave: the two padding columns go with them
    assert a.entries == ["a"] and a.mask.tolist() == [[1, 1, 1]] and not a.padded
    assert a.cache.layers[0].keys[0, 0, :, 0].tolist() == [1, 2, 3]
    a.keep([0])  # nothing to trim
    assert a.mask.shape == (1, 3)


class _Flaky:
    """The engine's model, raising on its second decode step (one token a row)."""

    def __init__(self, lm):
        self.lm, self.steps = lm, 0

    def __call__(self, ids, *args, **kwargs):
        if ids.shape[1] == 1:
            self.steps += 1
            if self.steps == 2:
                raise RuntimeError("device lost")
        return self.lm(ids, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.lm, name)


@pytest.mark.parametrize("kind", ["continuous", "slots"])
def test_an_error_mid_run_fails_the_requests_in_flight_and_the_engine_serves_on(smoke, kind):
    artifact = _artifact(smoke["gpt2"])
    served = ENGINES[kind](artifact)
    served._lm = _Flaky(served._lm)  # before the first request: the slots' steps call it
    requests = prompts.requests(3, 6, 5, artifact.vocab_size)
    try:
        with pytest.raises(harness.EngineError, match="request 0: RuntimeError: device lost"):
            harness.closed_loop(served, requests, 3, 60)
        assert [len(t) for t in harness.tokens(harness.closed_loop(served, requests, 3, 60))] \
            == [5, 5, 5]
    finally:
        served.close()


def test_the_cpu_backend_serves_continuous_batching_by_default(smoke):
    backend = CpuBackend()
    for builder, options, kind, words in (
            ("gpt2", {}, ContinuousEngine, "continuous-batching engine"),
            ("gpt2", {"engine": "reference"}, TorchEngine, "engine=reference"),
            ("chatglm2", {}, TorchEngine, "continuous-batching engine declined: builder "
                                          "'chatglm2' takes no attention mask")):
        served = backend.generation_engine(_artifact(smoke[builder]), "fp32", options)
        served.close()
        assert type(served) is kind and words in served.description
    with pytest.raises(ValueError, match=r"engine='static': use one of continuous, reference"):
        backend.generation_engine(_artifact(smoke["gpt2"]), "fp32", {"engine": "static"})


def test_the_slots_engine_declines_attention_its_mask_does_not_fit(smoke):
    artifact = _artifact(smoke["llama"])
    artifact.reference().model.config._attn_implementation = "eager"  # engines copy the model
    with pytest.raises(ValueError, match="masks rows for torch's SDPA attention, not 'eager'"):
        ENGINES["slots"](artifact)


# (prompt tokens, new tokens) with prefill_chunk=4: prompts of two chunks, of two
# and a short one, of four and a short one, of one short chunk.
CHUNKED = ((8, 3), (9, 2), (8, 4), (13, 2), (3, 2))


@pytest.mark.parametrize("kind, builder", [("continuous", "llama"), ("reference", "gpt2")])
def test_chunked_prefill_gives_the_whole_prompts_tokens(smoke, kind, builder):
    artifact = _artifact(smoke[builder])
    requests = [prompts.requests(1, p, new, artifact.vocab_size)[0] for p, new in CHUNKED]
    whole = TorchEngine(artifact, "fp32", {})
    chunked = (ContinuousEngine if kind == "continuous" else TorchEngine)(
        artifact, "fp32", {"max_batch": "4", "prefill_chunk": "4"})
    chunked._lm = _Widths(chunked._lm)
    try:
        got = harness.tokens(harness.closed_loop(chunked, requests, len(requests), 60))
        want = [harness.tokens(harness.closed_loop(whole, [r], 1, 60))[0] for r in requests]
    finally:
        chunked.close()
        whole.close()
    assert got == want
    forwards = chunked._lm.widths
    # Requests of one prompt length may be prefilled together: one chunk a forward.
    assert max(forwards) == 4 and forwards.count(4) >= sum(p // 4 for p in {p for p, _ in CHUNKED})


class _Widths:
    """The engine's model, noting how many tokens a row each forward takes."""

    def __init__(self, lm):
        self.lm, self.widths = lm, []

    def __call__(self, ids, *args, **kwargs):
        self.widths.append(ids.shape[1])
        return self.lm(ids, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.lm, name)


def test_engines_that_cannot_chunk_a_prefill_decline_it_saying_what_serves_it(smoke):
    from backends.generation import GenerationUnsupported
    from backends.gpu import generation

    with pytest.raises(GenerationUnsupported, match="builder 'chatglm2' takes a prompt on an "
                       "empty cache only, not in chunks of prefill_chunk=4"):
        CpuBackend().generation_engine(_artifact(smoke["chatglm2"]), "fp32",
                                       {"prefill_chunk": "4"})
    for choice in ("static", "slots"):
        with pytest.raises(GenerationUnsupported, match=f"the {choice} engine prefills whole "
                           "prompts, not prefill_chunk=4: run this workload with "
                           "--backend-option engine=continuous or reference"):
            generation.engine(_artifact(smoke["gpt2"]), "fp32",
                              {"engine": choice, "prefill_chunk": "4"}, "cpu")
