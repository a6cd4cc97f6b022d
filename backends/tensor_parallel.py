"""Tensor parallelism for the in-tree torch LLMs of llama and qwen3 style
(zoo.yaml's ``tensor_parallel: N``): Megatron's split of each decoder layer over
N ranks. Attention's q/k/v projections are split by heads and the MLP's
gate/up projections by columns (column-parallel: each rank computes its heads
and columns alone); the attention output and MLP down projections take those
rows (row-parallel) and are summed over the ranks by an all_reduce. Embeddings,
norms and the LM head stay whole on every rank: each rank ends a step with the
same logits.

Rank 0 leads: ``TensorParallelEngine`` is the reference engine
(backends/torch_generation.py: dynamic KV cache, static batching) on rank 0's
shard, which broadcasts each step's token ids before running it; the other
ranks ``follow``, running the same step on their shards, each with its own KV
cache of its heads, until rank 0's ``stop_followers``. The ranks are launched and
joined by xpuperf.worker.ranks. A collective that fails (a rank died) ends rank
0 too: the world cannot go on, and its launcher then reports which rank died.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Mapping

import torch
from torch import distributed

from backends.generation import GenerationUnsupported, LMArtifactLike
from backends.torch_generation import DTYPES, TorchEngine
from xpuperf.zoo.generation import tensor_parallel_unsupported

COLUMN = (("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"),
          ("mlp", "gate_proj"), ("mlp", "up_proj"))
ROW = (("self_attn", "o_proj"), ("mlp", "down_proj"))
STOP, NEW_CACHE, FORWARD = 0, 1, 2  # what rank 0 broadcasts before each step


class RowParallel(torch.nn.Module):
    """A linear layer's input columns of one rank; its partial products summed
    over the ranks, then its bias added once."""

    def __init__(self, linear: torch.nn.Linear, rank: int, world: int):
        super().__init__()
        width = linear.in_features // world
        self.weight = torch.nn.Parameter(
            linear.weight[:, rank * width:(rank + 1) * width].clone(), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.linear(x, self.weight)
        distributed.all_reduce(y)
        return y if self.bias is None else y + self.bias


def _column(linear: torch.nn.Linear, rank: int, world: int) -> torch.nn.Linear:
    """A linear layer's output rows of one rank."""
    rows = linear.out_features // world
    part = torch.nn.Linear(linear.in_features, rows, bias=linear.bias is not None,
                           device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        part.weight.copy_(linear.weight[rank * rows:(rank + 1) * rows])
        if linear.bias is not None:
            part.bias.copy_(linear.bias[rank * rows:(rank + 1) * rows])
    return part


def shard(lm: Any, builder: str, config: Mapping[str, Any], rank: int, world: int) -> Any:
    """Split ``lm`` (a CausalLM of ``builder``) in place to rank's part of ``world``."""
    why = tensor_parallel_unsupported(builder, config, world)
    if why:
        raise GenerationUnsupported(why)
    for layer in lm.model.model.layers:
        for part, name in COLUMN:
            setattr(getattr(layer, part), name, _column(getattr(getattr(layer, part), name),
                                                        rank, world))
        for part, name in ROW:
            setattr(getattr(layer, part), name, RowParallel(getattr(getattr(layer, part), name),
                                                            rank, world))
    return lm


def _broadcast_header(op: int, cached: int = 0, shape: tuple[int, ...] = (0, 0)) -> None:
    distributed.broadcast(torch.tensor([op, cached, *shape], device=_device()), 0)


def _device() -> torch.device:
    """Where this rank's collectives take tensors: its CUDA device under nccl."""
    if distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class _Leading:
    """Rank 0's shard as the engine's model: each call is broadcast to the
    followers before it runs here. One KV cache is live at a time (the reference
    engine's batch): the followers keep theirs for it."""

    def __init__(self, lm: Any):
        self.lm = lm

    def new_cache(self) -> Any:
        _broadcast_header(NEW_CACHE)
        return self.lm.new_cache()

    def __call__(self, input_ids: torch.Tensor, cache: Any = None) -> torch.Tensor:
        try:
            _broadcast_header(FORWARD, int(cache is not None), tuple(input_ids.shape))
            distributed.broadcast(input_ids, 0)
            return self.lm(input_ids, cache)
        except Exception as e:  # noqa: BLE001 - whatever it was, the world is broken
            # The ranks run each step in lockstep: one failed here (a rank is gone,
            # gloo's read error) leaves the others mid-step, and no step can run
            # again. Ending rank 0 lets the launcher end the rest and report which
            # rank failed first; the parent quotes that report.
            print(f"rank 0: a tensor-parallel step failed ({type(e).__name__}: {e}); "
                  "ending the ranks", file=sys.stderr, flush=True)
            os._exit(1)


class TensorParallelEngine(TorchEngine):
    """The reference engine on rank 0 of a tensor-parallel world."""

    def __init__(self, artifact: LMArtifactLike, precision: str, options: Mapping[str, str],
                 device: str = "cpu"):
        world = distributed.get_world_size() if distributed.is_initialized() else 1
        if world != artifact.tensor_parallel or distributed.get_rank() != 0:
            raise GenerationUnsupported(
                f"{artifact.name} is split over tensor_parallel={artifact.tensor_parallel} ranks "
                f"but this process is not rank 0 of such a world (world size {world}): its "
                "worker is launched as ranks by xpuperf.worker.ranks")
        super().__init__(artifact, precision, options, device)
        self.tensor_parallel = world
        self.description = (f"tensor parallel over {world} ranks "
                            f"({distributed.get_backend()}): {self.description}")
        self._lm = _Leading(shard(self._lm, artifact.builder, artifact.config, 0, world))


def follow(artifact: LMArtifactLike, precision: str) -> None:
    """A follower rank: its shard runs every step rank 0 broadcasts, until
    ``stop_followers``."""
    device = _device()
    lm = artifact.causal_lm().to(device=device, dtype=getattr(torch, DTYPES[precision]))
    lm = shard(lm, artifact.builder, artifact.config, distributed.get_rank(),
               distributed.get_world_size())
    cache = None
    header = torch.empty(4, dtype=torch.int64, device=device)
    with torch.inference_mode():
        while True:
            distributed.broadcast(header, 0)
            op, cached, *shape = header.tolist()
            if op == STOP:
                return
            if op == NEW_CACHE:
                cache = lm.new_cache()
                continue
            ids = torch.empty(shape, dtype=torch.int64, device=device)
            distributed.broadcast(ids, 0)
            lm(ids, cache if cached else None)


def stop_followers() -> None:
    """Rank 0: release the followers (their ``follow`` returns)."""
    _broadcast_header(STOP)
