"""The GPU backend's static-cache generation engine (backends/gpu/generation.py),
on the CPU: the same static cache as on CUDA, decoded eagerly (the CUDA-graph
path runs in benchmarks/gpu_generation_check.py on a GPU). Its tokens and logits
against the reference engine's, its fallbacks, and the backend's option."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backends.continuous_batching import ContinuousEngine
from backends.gpu.backend import GpuBackend
from backends.gpu.generation import StaticCacheEngine, engine
from backends.gpu.slots import SlotsEngine
from backends.torch_generation import TorchEngine
from xpuperf.generation import harness, prompts
from xpuperf.generation.models import LMArtifact
from xpuperf.zoo import load_zoo

ROOT = Path(__file__).resolve().parents[1]
# (batch, prompt tokens, new tokens), in this order: 3 pads up to 4 rows of the
# max_batch=4 engine; the last needs a longer cache than the ones before (it grows).
CASES = ((1, 6, 5), (3, 6, 5), (4, 9, 3), (2, 70, 4))


@pytest.fixture(scope="module")
def smoke():
    return {w.builder: w for w in load_zoo(ROOT / "zoo.yaml", "smoke").generation}


def _artifact(spec) -> LMArtifact:
    return LMArtifact(spec.name, spec.builder, spec.config, spec.seed)


def _tokens(engine, requests):
    return harness.tokens(harness.closed_loop(engine, requests, len(requests), 60))


@pytest.mark.parametrize("builder", ["gpt2", "llama", "qwen3"])
def test_static_cache_tokens_and_logits_equal_the_reference_engines(smoke, builder):
    artifact = _artifact(smoke[builder])
    static = StaticCacheEngine(artifact, "fp32", {"max_batch": "4"}, "cpu")
    reference = TorchEngine(artifact, "fp32", {}, "cpu")
    try:
        lengths = []
        for batch, prompt, new in CASES:
            requests = prompts.requests(batch, prompt, new, artifact.vocab_size)
            got = _tokens(static, requests)
            assert got == _tokens(reference, requests), (batch, prompt, new)
            assert [len(t) for t in got] == [new] * batch  # the padding row's tokens dropped
            lengths.append(static._decoder.length)
        assert lengths == [64, 64, 64, 128]  # rounded up; grown for 70 + 3 tokens
        text = prompts.text_ids(20, artifact.vocab_size)
        np.testing.assert_allclose(static.logits(text), reference.logits(text), rtol=0, atol=1e-5)
    finally:
        static.close()
        reference.close()


def test_a_compiled_decode_gives_the_eager_decodes_tokens(smoke):
    # torch.compile's fused kernels (decode=compiled, what a GPU captures) in place
    # of the eager step: the same greedy tokens. One batch size: one compile.
    artifact = _artifact(smoke["llama"])
    requests = prompts.requests(1, 6, 5, artifact.vocab_size)
    got = {}
    for decode in ("eager", "compiled"):
        served = StaticCacheEngine(artifact, "fp32", {"max_batch": "1", "decode": decode}, "cpu")
        try:
            got[decode] = _tokens(served, requests)
        finally:
            served.close()
        assert f"decode {decode}" in served.description
    assert got["compiled"] == got["eager"]


def test_requests_of_different_lengths_in_one_batch_each_get_theirs(smoke):
    artifact = _artifact(smoke["llama"])
    static = StaticCacheEngine(artifact, "fp32", {"max_batch": "4"}, "cpu")
    try:
        requests = prompts.requests(3, 8, 6, artifact.vocab_size)
        short = [type(r)(r.prompt, n) for r, n in zip(requests, (2, 6, 1))]
        got = _tokens(static, short)
        assert [len(t) for t in got] == [2, 6, 1]
        assert got == [t[:n] for t, n in zip(_tokens(static, requests), (2, 6, 1))]
    finally:
        static.close()


@pytest.mark.parametrize("builder, reason", [
    ("chatglm2", "transformers has no static cache for it"),
    ("qwen3_moe", "mixture of experts"),
])
@pytest.mark.parametrize("choice, kind", [("static", StaticCacheEngine), ("slots", SlotsEngine)])
def test_what_the_static_engines_cannot_serve_falls_back_saying_why(smoke, builder, reason,
                                                                    choice, kind):
    artifact = _artifact(smoke[builder])
    served = engine(artifact, "fp32", {"engine": choice}, "cpu")
    try:
        assert isinstance(served, TorchEngine)
        assert "reference engine" in served.description and reason in served.description
        requests = prompts.requests(2, 6, 3, artifact.vocab_size)
        assert [len(t) for t in _tokens(served, requests)] == [3, 3]
    finally:
        served.close()
    with pytest.raises(ValueError, match=reason):
        kind(artifact, "fp32", {}, "cpu")


def test_the_gpu_backend_chooses_its_engine_by_option(smoke):
    artifact = _artifact(smoke["gpt2"])
    backend = GpuBackend()
    for options, kind, words in (({"device": "cpu"}, StaticCacheEngine, "static KV cache"),
                                 ({"device": "cpu", "engine": "slots"}, SlotsEngine,
                                  "static KV cache engine with continuous batching"),
                                 ({"device": "cpu", "engine": "continuous"}, ContinuousEngine,
                                  "continuous-batching engine"),
                                 ({"device": "cpu", "engine": "reference"}, TorchEngine,
                                  "engine=reference")):
        served = backend.generation_engine(artifact, "fp32", options)
        served.close()
        assert type(served) is kind and words in served.description
    with pytest.raises(ValueError,
                       match=r"engine='paged': use one of static, slots, continuous, reference"):
        backend.generation_engine(artifact, "fp32", {"device": "cpu", "engine": "paged"})
    with pytest.raises(ValueError, match="decode=graphs: CUDA graphs need a CUDA device"):
        StaticCacheEngine(artifact, "fp32", {"decode": "graphs"}, "cpu")
    with pytest.raises(ValueError, match="decode='fast': use one of graphs, compiled, eager"):
        StaticCacheEngine(artifact, "fp32", {"decode": "fast"}, "cpu")


def test_a_model_built_on_a_device_has_the_same_facts_and_no_reference(smoke):
    spec = smoke["llama"]
    on_cpu = _artifact(spec)
    built = LMArtifact(spec.name, spec.builder, spec.config, spec.seed, build_on=("cpu", "bf16"))
    assert built.facts() == on_cpu.facts() and built.vocab_size == on_cpu.vocab_size
    lm = built.causal_lm()
    assert {p.dtype for p in lm.parameters()} == {torch.bfloat16}
    with pytest.raises(RuntimeError, match="without the fp32 reference"):
        built.reference()
