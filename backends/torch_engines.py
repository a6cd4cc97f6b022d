"""Which engine on torch serves a backend's LLM items: the backend option
``engine=continuous|reference`` picks continuous batching
(backends/continuous_batching.py) or the reference engine
(backends/torch_generation.py), which the continuous one builds on; apart from
both, so that neither imports the other.
"""
from __future__ import annotations

from typing import Mapping

from backends import continuous_batching, tensor_parallel
from backends.generation import GenerationEngine, LMArtifactLike
from backends.torch_generation import TorchEngine

# Option engine= of a backend that serves these (the GPU backend adds its own).
ENGINES = ("continuous", "reference")


def engine(artifact: LMArtifactLike, precision: str, options: Mapping[str, str], device: str,
           default: str) -> GenerationEngine:
    """The torch engine ``options["engine"]`` names (else ``default``): continuous
    batching, or the reference; the reference, saying why, where the continuous
    one cannot serve the model."""
    choice = options.get("engine", default)
    if choice not in ENGINES:
        raise ValueError(f"backend option engine={choice!r}: use one of {', '.join(ENGINES)}")
    if artifact.tensor_parallel > 1:  # the reference engine, split; batching continuously is not
        return tensor_parallel.TensorParallelEngine(artifact, precision, options, device)
    if choice == "reference":
        return TorchEngine(artifact, precision, options, device, why="engine=reference")
    why = continuous_batching.unsupported(artifact.builder)
    if why:
        return TorchEngine(artifact, precision, options, device,
                           why=f"the continuous-batching engine declined: {why}")
    return continuous_batching.ContinuousEngine(artifact, precision, options, device)
