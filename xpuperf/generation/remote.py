"""The parent's side of the LLM items: each (workload, precision) group's engine
runs in a worker process of its own (xpuperf.worker.generation_host), one group
at a time, under the item's time limit. A crash or a hang in the engine fails
that group's items with the reason (the signal, the stage, the worker's last
output) and the session goes on with the next group."""
from __future__ import annotations

from typing import Any, Mapping

from xpuperf.generation.settings import Settings
from xpuperf.session import BackendError, GroupFailed, call, lost_why
from xpuperf.worker.process import Worker
from xpuperf.worker.ranks import Ranks
from xpuperf.zoo import GenerationSpec, Zoo

HOST = "xpuperf.worker.generation_host:GenerationHost"
# The torch device of a tensor-parallel worker's ranks, by hardware (else the CPU).
TORCH_DEVICES = {"GPU": "cuda"}


class RemoteLLM:
    """The LLM items' session: ``hardware``'s engines in workers, each call
    within ``timeout_s``; ``device`` is handed to the workers (--devices);
    ``settings``: a server to measure instead, SLOs, arrivals (--llm-*). A
    tensor-parallel workload's worker is launched as its ranks by ``launcher``
    (--micro-launcher; None: torchrun)."""

    def __init__(self, hardware: str, options: Mapping[str, str], zoo: Zoo, timeout_s: float,
                 device: str | None = None, settings: Settings | None = None,
                 launcher: str | None = None):
        self.hardware, self.options, self.zoo = hardware, dict(options), zoo
        self.launcher = launcher
        self.settings = settings or Settings()
        self.timeout_s, self.device = timeout_s, device
        self._group: tuple[str, Worker] | None = None
        self._unsupported: dict[str, str] = {}  # the open group -> why it cannot generate ("")
        self._failed: dict[str, str] = {}  # group -> how its worker was lost
        self._told: set[str] = set()  # groups whose failure an item has reported in full
        self._start_failed: dict[str, str] = {}  # group -> why its engine did not start
        self._ceilings: dict[str, list] = {}  # measured once per session, handed to each worker

    def start(self, spec: GenerationSpec, precision: str) -> str:
        """Build and warm up the group's engine: why the backend cannot generate
        it, or "". A lost worker is reported by the group's items (as failures,
        the first with the whole reason), not by the fixture that starts it."""
        group = spec.combo_id(precision)
        if group in self._start_failed:  # its later items: at once, not by the same wait
            raise BackendError(f"not run: the engine of {group} did not start for an earlier "
                               f"item: {self._start_failed[group].splitlines()[0]}")
        if group not in self._unsupported:
            try:
                answer = self._call(spec, precision, "start")
            except GroupFailed:
                self._told.discard(group)
                answer = {}
            except BackendError as e:  # a server that stalls would stall every item's start
                self._start_failed[group] = str(e)
                raise
            self._unsupported = {group: answer.get("unsupported", "")}
        return self._unsupported[group]

    def run_scenario(self, spec: GenerationSpec, precision: str, scenario: str,
                     concurrency: int | None) -> tuple[dict[str, Any], list[str]]:
        """As LLMSession.run_scenario, in the group's worker."""
        return self._answer(self._call(spec, precision, "scenario", scenario=scenario,
                                       concurrency=concurrency))

    def run_sweep(self, spec: GenerationSpec, precision: str) -> tuple[dict[str, Any], list[str]]:
        """As LLMSession.run_sweep, in the group's worker."""
        return self._answer(self._call(spec, precision, "sweep"))

    def check_accuracy(self, spec: GenerationSpec, precision: str
                       ) -> tuple[dict[str, Any], list[str]]:
        """As LLMSession.check_accuracy, in the group's worker."""
        return self._answer(self._call(spec, precision, "accuracy"))

    def close(self) -> None:
        if self._group is not None:
            _, worker = self._group
            self._group = None
            worker.close()

    def _answer(self, answer: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        self._ceilings.update(answer["ceilings"])
        return answer["fields"], answer["problems"]

    def _call(self, spec: GenerationSpec, precision: str, command: str, **args: Any) -> Any:
        group = spec.combo_id(precision)
        if group in self._failed:
            first = group not in self._told
            self._told.add(group)
            raise GroupFailed(self._failed[group] if first else
                              f"not run: an earlier item of {group} lost the backend's worker: "
                              f"{lost_why(self._failed[group])}")
        if self._group is None or self._group[0] != group:
            self.close()  # the last group's engine and memory go before the next is built
            self._group = (group, Worker(
                HOST, {"hardware": self.hardware, "options": self.options,
                       "zoo": str(self.zoo.path), "tier": self.zoo.tier, "workload": spec.name,
                       "precision": precision, "ceilings": self._ceilings,
                       "settings": self.settings.to_dict()},
                name=f"xpuperf LLM worker {group}", device=self.device,
                ranks=Ranks(spec.tensor_parallel, self.launcher,
                            TORCH_DEVICES.get(self.hardware, "cpu"))
                if spec.tensor_parallel > 1 else None))
        try:
            return call(self._group[1], self.timeout_s, command, **args)
        except GroupFailed as e:
            self._failed[group] = str(e)
            self._told.add(group)
            self.close()
            raise
