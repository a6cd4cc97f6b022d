"""The worker's side of one LLM group (workload, precision): the backend's
generation engine, built, warmed up and driven here, so that a crash in the
engine (a segfault while capturing a CUDA graph, say) costs that group's items,
not the session (xpuperf.generation.remote is the parent's side).

The harness's timed loops (xpuperf.generation.harness) run here in full, as the
model items' loops run in host.GroupHost: no inter-process message is inside a
measurement; the parent receives each item's record fields and its problems.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from backends import tensor_parallel
from backends.generation import GenerationUnsupported
from backends.registry import find
from xpuperf.generation.models import LMArtifact
from xpuperf.generation.serving import LLMSession
from xpuperf.generation.settings import Settings
from xpuperf.zoo import load_zoo


class GenerationHost:
    """Hosts ``hardware``'s generation engine for ``workload`` at ``precision``."""

    COMMANDS = ("start", "scenario", "sweep", "accuracy")

    def __init__(self, note: Callable[[str], None], hardware: str, options: Mapping[str, str],
                 zoo: str, tier: str, workload: str, precision: str,
                 ceilings: Mapping[str, list], settings: Mapping[str, Any]):
        """``ceilings``: those the session measured in earlier groups' workers
        (key -> [value, source]), which this one then does not measure again;
        ``settings``: xpuperf.generation.settings.Settings.to_dict()."""
        self.note = note
        self.spec = next(w for w in load_zoo(zoo, tier).generation if w.name == workload)
        self.precision = precision
        self.llm = LLMSession(find(hardware).load()(), options,
                              ceilings=ceilings,
                              settings=Settings.from_dict(settings))

    def start(self) -> dict[str, Any]:
        """Build and warm up the engine: {} or {"unsupported": why}."""
        self.note(f"building and warming up the engine for {self.spec.combo_id(self.precision)}")
        try:
            self.llm.engine(self.spec, self.precision)
        except GenerationUnsupported as e:
            return {"unsupported": str(e)}
        return {}

    def scenario(self, scenario: str, concurrency: int | None) -> dict[str, Any]:
        self.note(f"running {scenario}"
                  + (f" at concurrency {concurrency}" if concurrency else ""))
        return self._answer(*self.llm.run_scenario(self.spec, self.precision, scenario,
                                                   concurrency))

    def sweep(self) -> dict[str, Any]:
        self.note(f"sweeping {self.llm.settings.sweep}")
        return self._answer(*self.llm.run_sweep(self.spec, self.precision))

    def accuracy(self) -> dict[str, Any]:
        self.note("checking accuracy against the fp32 reference")
        return self._answer(*self.llm.check_accuracy(self.spec, self.precision))

    def close(self) -> None:
        self.llm.close()
        if self.spec.tensor_parallel > 1:  # rank 0 of its ranks (xpuperf.worker.ranks)
            tensor_parallel.stop_followers()

    @staticmethod
    def follow(zoo: str, tier: str, workload: str, precision: str, **_: Any) -> None:
        """A rank after rank 0 of a tensor-parallel workload (xpuperf.worker.ranks
        hands it the host's arguments, of which it needs the model's): the same
        model, its part of every step rank 0's engine leads, until rank 0 closes."""
        spec = next(w for w in load_zoo(zoo, tier).generation if w.name == workload)
        tensor_parallel.follow(LMArtifact(spec.name, spec.builder, spec.config, spec.seed,
                                          tensor_parallel=spec.tensor_parallel),
                               precision)

    def _answer(self, fields: dict[str, Any], problems: list[str]) -> dict[str, Any]:
        return {"fields": fields, "problems": problems,
                "ceilings": self.llm.ceilings.wire()}
