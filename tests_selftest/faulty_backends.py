"""A backend that fails the way vendor SDKs do, per model, for the fault-injection
suite (test_faults.py): --hardware tests_selftest.faulty_backends:FaultyBackend
--backend-option fault:<model>=<fault>. Models without a fault run as on the
CPU backend, so a session shows both that a fault is caught with its reason and
that the other combinations are untouched.

Faults: segfault_run, hang_run, segfault_compile, hang_compile, raise_compile
(a plain exception), and outputs that break the contract: fp16_outputs,
none_outputs, scalar_outputs, missing_output, wide_outputs (a column too many on
the last axis, the batch axis right); for an LLM workload (the <model> is the
workload's name), segfault_generate: its engine segfaults on the first request,
as one capturing a CUDA graph in its warm-up might. A hang first touches the file named
by the environment variable FAULT_MARKER, if set, so a test knows it hangs now.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from backends.base import Compiled
from backends.cpu import CpuBackend
from backends.generation import GenerationEngine

FAULTS = ("segfault_run", "hang_run", "segfault_compile", "hang_compile", "raise_compile",
          "fp16_outputs", "none_outputs", "scalar_outputs", "missing_output", "wide_outputs",
          "segfault_generate")
PREFIX = "fault:"


def segfault() -> None:
    """What a native library's bad pointer does: SIGSEGV, no Python exception."""
    ctypes.string_at(0)


def hang() -> None:
    marker = os.environ.get("FAULT_MARKER")
    if marker:
        Path(marker).touch()
    while True:
        time.sleep(60)


def _forked_sleeper() -> int:
    pid = os.fork()
    if pid == 0:
        time.sleep(300)
        os._exit(0)
    return pid


def _parse_ratio(text: str) -> float:  # a helper a backend calls on a bad input
    return float(text)


class _Faulty(Compiled):
    def __init__(self, inner: Compiled, fault: str):
        self._inner, self.report, self._fault = inner, inner.report, fault

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._fault == "segfault_run":
            segfault()
        if self._fault == "hang_run":
            hang()
        out = self._inner.run(feeds)
        first = next(iter(out))
        if self._fault == "fp16_outputs":
            return {k: v.astype(np.float16) for k, v in out.items()}
        if self._fault == "none_outputs":
            return None  # type: ignore[return-value]
        if self._fault == "scalar_outputs":
            return {k: float(v.flat[0]) for k, v in out.items()}  # type: ignore[misc]
        if self._fault == "missing_output":
            return {f"{first}_renamed": out[first]}
        if self._fault == "wide_outputs":
            return {k: np.concatenate([v, v[..., :1]], axis=-1) for k, v in out.items()}
        return out

    def close(self) -> None:
        self._inner.close()


class FaultyBackend(CpuBackend):
    name = "FAULTY"

    def compile(self, artifact, precision, batch_sizes, options, cache_dir=None) -> Compiled:
        fault = options.get(f"{PREFIX}{artifact.name}", "")
        if fault and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")
        if fault == "segfault_compile":
            segfault()
        if fault == "hang_compile":
            hang()
        if fault == "raise_compile":
            _parse_ratio("not a number")
        return _Faulty(super().compile(artifact, precision, batch_sizes, _plain(options),
                                       cache_dir), fault)

    def generation_engine(self, artifact, precision, options):
        if options.get(f"{PREFIX}{artifact.name}") == "segfault_generate":
            return _SegfaultingEngine()
        return super().generation_engine(artifact, precision, _plain(options))


def _plain(options: Mapping[str, str]) -> dict[str, str]:
    """The options without the faults, for the CPU backend."""
    return {k: v for k, v in options.items() if not k.startswith(PREFIX)}


class _SegfaultingEngine(GenerationEngine):
    def submit(self, request, sink) -> None:
        segfault()

    def logits(self, token_ids):
        segfault()


class EchoHost:
    """A worker host (xpuperf.worker) with no backend: the worker's own selftests."""

    COMMANDS = ("echo", "crash", "sleep", "where", "spawn", "fork_then_crash", "imported",
                "fail_as_the_launcher_ends")

    def __init__(self, note):
        self.note = note

    @staticmethod
    def follow() -> None:
        """A rank past 0 (xpuperf.worker.ranks): it waits to be ended."""
        threading.Event().wait()

    def fail_as_the_launcher_ends(self) -> None:
        """Rank 0 when another rank dies mid-collective: it answers the
        collective's error while the launcher, which saw that rank die, ends."""
        os.kill(os.getppid(), signal.SIGTERM)
        raise RuntimeError("Connection closed by peer")

    def echo(self, value):
        self.note("echoing")
        return value

    def crash(self) -> None:
        self.note("about to crash")
        print("last words", flush=True)
        segfault()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def spawn(self) -> list[int]:
        """Start what outlives a careless backend: a long sleep (exec'd) and a
        forked copy of the worker that sleeps; their pids."""
        self.children = [subprocess.Popen(["sleep", "300"])]  # kept: no ResourceWarning
        return [self.children[0].pid, _forked_sleeper()]

    def fork_then_crash(self) -> None:
        """A helper forked without exec (it holds the worker's pipe), then SIGSEGV."""
        print(f"helper {_forked_sleeper()}", flush=True)
        segfault()

    def imported(self, module: str) -> bool:
        """Whether ``module`` was imported before this host imported anything: by
        the fork server the worker was forked from."""
        return module in sys.modules

    def where(self, variable: str) -> dict:
        """The worker's view of its start: an environment variable, folder, import path."""
        return {"value": os.environ.get(variable), "cwd": os.getcwd(), "path": sys.path}

    def close(self) -> None:
        pass


class SlowStartHost(EchoHost):
    """A host that takes ``seconds`` to build, as a backend's start may."""

    def __init__(self, note, seconds: float):
        super().__init__(note)
        time.sleep(seconds)
