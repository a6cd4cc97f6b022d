"""A worker host for the tensor-parallel selftests (xpuperf.worker.ranks):
rank 0 serves a tiny LLM on backends/tensor_parallel.py's engine and answers
with its raw tokens and logits; the other ranks follow, the one after rank 0
writing its process id to ``pid_file`` so that a test can kill it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

from backends import tensor_parallel
from backends.generation import Request
from xpuperf.generation import harness
from xpuperf.generation.models import LMArtifact


def _artifact(builder: str, config: Mapping[str, Any], ranks: int) -> LMArtifact:
    return LMArtifact("tiny", builder, config, seed=0, tensor_parallel=ranks)


class TPHost:
    COMMANDS = ("generate", "logits")

    def __init__(self, note: Callable[[str], None], builder: str, config: Mapping[str, Any],
                 ranks: int, pid_file: str):
        self.engine = tensor_parallel.TensorParallelEngine(_artifact(builder, config, ranks),
                                                           "fp32", {})

    def generate(self, requests: list[list]) -> list[list[int]]:
        """Each [prompt ids, new tokens] alone, in turn: its greedy tokens."""
        return [harness.tokens(harness.closed_loop(self.engine, [Request(tuple(p), n)], 1, 60))[0]
                for p, n in requests]

    def logits(self, ids: list[int]) -> Any:
        return self.engine.logits(ids)

    def close(self) -> None:
        self.engine.close()
        tensor_parallel.stop_followers()

    @staticmethod
    def follow(builder: str, config: Mapping[str, Any], ranks: int, pid_file: str) -> None:
        from torch import distributed

        if distributed.get_rank() == 1:
            Path(pid_file).write_text(str(os.getpid()))
        tensor_parallel.follow(_artifact(builder, config, ranks), "fp32")
