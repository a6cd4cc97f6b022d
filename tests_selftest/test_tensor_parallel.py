"""Tensor-parallel LLM workers (zoo.yaml's tensor_parallel: N): a tiny llama
split over 2 ranks on the CPU (torchrun, gloo) gives the greedy tokens of the
whole model on 1 rank and its logits within float rounding; a killed rank ends
the worker with the launcher's report; a tensor_parallel workload of the zoo
runs through the LLM items' session (xpuperf.generation.remote)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from backends.torch_generation import TorchEngine
from xpuperf.generation import harness, prompts
from xpuperf.generation.models import LMArtifact
from xpuperf.worker.process import Worker, WorkerLost
from xpuperf.worker.ranks import Ranks
from xpuperf.zoo import load_zoo

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 120.0
# (prompt tokens, new tokens)
REQUESTS = ((6, 5), (11, 3))


@pytest.fixture(scope="module")
def llama():
    return next(w for w in load_zoo(ROOT / "zoo.yaml", "smoke").generation
                if w.builder == "llama")


def test_two_ranks_give_one_ranks_tokens_and_logits_and_a_killed_rank_ends_the_worker(
        llama, tmp_path):
    whole = LMArtifact("tiny", "llama", llama.config, seed=0)
    requests = [prompts.requests(1, p, n, whole.vocab_size)[0] for p, n in REQUESTS]
    text = prompts.text_ids(24, whole.vocab_size)
    one = TorchEngine(whole, "fp32", {})
    try:
        want = [harness.tokens(harness.closed_loop(one, [r], 1, 60))[0] for r in requests]
        want_logits = one.logits(text)
    finally:
        one.close()
    pid_file = tmp_path / "rank1.pid"
    worker = Worker("tests_selftest.tp_host:TPHost",
                    {"builder": "llama", "config": dict(llama.config), "ranks": 2,
                     "pid_file": str(pid_file)}, "tp2", ranks=Ranks(2))
    try:
        got = worker.call("generate", LIMIT_S,
                          requests=[[list(r.prompt), r.max_new_tokens] for r in requests])
        assert got == want
        got_logits = worker.call("logits", LIMIT_S, ids=list(text))
        np.testing.assert_allclose(got_logits, want_logits, rtol=0, atol=1e-6)

        killed = int(pid_file.read_text())
        os.kill(killed, signal.SIGKILL)
        with pytest.raises(WorkerLost) as lost:
            worker.call("generate", LIMIT_S, requests=[[list(requests[0].prompt), 2]])
    finally:
        worker.close()
    message = str(lost.value)
    # torchrun's report: rank 1, killed, is the root cause of rank 0's exit.
    assert "exited with code 1 while generate" in message, message
    root = message[message.index("Root Cause"):]
    assert f"(pid: {killed})" in root and "SIGKILL" in root, message


def test_a_tensor_parallel_workload_runs_through_the_llm_session(tmp_path):
    """zoo.yaml's tensor_parallel: 2 on the CPU backend: the group's worker is 2
    ranks, rank 0's engine the split one, and it passes the fp32 accuracy gate
    against the whole model."""
    from xpuperf.generation.remote import RemoteLLM

    zoo_file = tmp_path / "zoo.yaml"
    zoo_file.write_text(TP_ZOO)
    zoo = load_zoo(zoo_file, "full")
    (spec,) = zoo.generation
    session = RemoteLLM("CPU", {}, zoo, LIMIT_S)
    try:
        assert session.start(spec, "fp32") == ""
        fields, problems = session.check_accuracy(spec, "fp32")
    finally:
        session.close()
    assert problems == [], problems
    assert fields["engine"].startswith("tensor parallel over 2 ranks (gloo)"), fields


TP_ZOO = """\
datasets:
  fake: {id: fake, format: fake}
models: {}
generation:
  workloads:
    tiny-tp2:
      family: llama
      builder: llama
      config: {vocab_size: 300, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
               num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128}
      tensor_parallel: 2
      precisions: [fp32]
      prompt_tokens: 8
      output_tokens: 4
      requests: 2
      concurrency: [1]
      scenarios: [offline]
      accuracy: {greedy_tokens: 6, text_tokens: 32}
      tolerances: {fp32: {min_cosine: 0.99999, max_abs: 1.0e-5, min_greedy_match: 1.0,
                          max_perplexity_ratio: 1.0001}}
"""
