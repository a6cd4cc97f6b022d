"""Tensor-parallel LLM workloads (zoo.yaml's tensor_parallel: N) through the
LLM items' session (xpuperf.generation.remote) on the CPU backend: a small
llama split over 2 ranks (torchrun, gloo) gives the whole model's greedy tokens
and first-token logits within 1e-6 (the fp32 accuracy gate against the model on
one process); a rank killed mid-group fails the group with torchrun's report,
and the session goes on with the next group."""
from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from xpuperf.generation.remote import RemoteLLM
from xpuperf.session import GroupFailed
from xpuperf.zoo import load_zoo

LIMIT_S = 120.0
TINY = """\
      family: llama
      builder: llama
      config: {vocab_size: 300, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
               num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128}
      precisions: [fp32]
      prompt_tokens: 8
      output_tokens: 4
      requests: 2
      concurrency: [1]
      scenarios: [offline]
      accuracy: {greedy_tokens: 8, text_tokens: 32}
      # The split sums each row-parallel product over the ranks in another order:
      # float rounding, no more.
      tolerances: {fp32: {min_cosine: 0.99999, max_abs: 1.0e-6, min_greedy_match: 1.0,
                          max_perplexity_ratio: 1.00001}}
"""
ZOO = f"""\
datasets:
  fake: {{id: fake, format: fake}}
models: {{}}
generation:
  workloads:
    tiny-tp2:
{TINY}      tensor_parallel: 2
    tiny:
{TINY}"""


def _descendant_with(environment: str) -> int:
    """The process id of this process's descendant whose environment holds
    ``environment`` ("RANK=1")."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError):
            continue

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    found = [pid for pid in parents if descends(pid) and environment.encode() in
             Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")]
    assert len(found) == 1, found
    return found[0]


def test_two_ranks_pass_the_fp32_gate_and_a_killed_rank_fails_only_its_group(tmp_path):
    (tmp_path / "zoo.yaml").write_text(ZOO)
    split, whole = load_zoo(tmp_path / "zoo.yaml", "full").generation
    session = RemoteLLM("CPU", {}, load_zoo(tmp_path / "zoo.yaml", "full"), LIMIT_S)
    try:
        assert session.start(split, "fp32") == ""
        fields, problems = session.check_accuracy(split, "fp32")
        assert problems == [], (problems, fields)
        assert fields["engine"].startswith("tensor parallel over 2 ranks (gloo)"), fields
        assert fields["tokens"] == fields["reference_tokens"] and len(fields["tokens"]) == 8

        killed = _descendant_with("RANK=1")
        os.kill(killed, signal.SIGKILL)
        with pytest.raises(GroupFailed) as lost:
            session.run_scenario(split, "fp32", "offline", 1)
        # torchrun's report names the killed rank and its signal. Whether torchrun
        # calls it the root cause or rank 0's exit after it depends on their
        # timestamps, which have a resolution of one second: either may come first.
        message = str(lost.value)
        assert "exited with code 1" in message, message
        assert re.search(rf"exitcode\s*:\s*-9 \(pid: {killed}\)\s*\(SIGKILL\)", message), message

        assert session.start(whole, "fp32") == ""  # the next group, in a worker of its own
        assert session.check_accuracy(whole, "fp32")[1] == []
    finally:
        session.close()
