"""Backends that break the contract the way shipped ones did, each in one way, for
test_contract_kit.py: the contract kit must fail each of them. They run the CPU
backend and spoil one thing of what its compiled model does."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from backends.base import Compiled
from backends.cpu import CpuBackend


class _Spoiled(Compiled):
    def __init__(self, inner: Compiled, run: Callable[[Compiled, Mapping[str, np.ndarray]], dict]):
        self._inner, self._run, self.report = inner, run, inner.report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(self._inner, feeds)

    def close(self) -> None:
        self._inner.close()


def _drop_unknown(inner: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """OpenVINO's old run(): feeds whose name the model lacks were left out, silently."""
    known = {i.name for i in inner._session.get_inputs()}
    return inner.run({k: v for k, v in feeds.items() if k in known})


def _float64(inner: Compiled, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in inner.run(feeds).items()}


class _Memo:
    """Outputs remembered by batch size: fast, and wrong for any new batch."""

    def __init__(self) -> None:
        self.seen: dict[int, dict[str, np.ndarray]] = {}

    def __call__(self, inner: Compiled, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = len(next(iter(feeds.values())))
        if batch not in self.seen:
            self.seen[batch] = inner.run(feeds)
        return self.seen[batch]


def _spoiling(run: Callable[[], Callable]) -> type[CpuBackend]:
    class Spoiled(CpuBackend):
        def compile(self, *args: Any, **kwargs: Any) -> Compiled:
            return _Spoiled(super().compile(*args, **kwargs), run())
    return Spoiled


DropsFeed = _spoiling(lambda: _drop_unknown)
WrongDtype = _spoiling(lambda: _float64)
CachesOutputs = _spoiling(_Memo)
