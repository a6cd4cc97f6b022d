"""Deliberately faulty backends, selected with --hardware tests_selftest.fakes:Name,
to prove that the suites catch what they claim to catch."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from backends.base import Compiled, CompileError
from backends.cpu import CpuBackend


class _NanOutputs(Compiled):
    def __init__(self, inner: Compiled):
        self._inner, self.report = inner, inner.report

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._inner.run(feeds)
        first = next(iter(out))
        out[first] = out[first].copy()
        out[first].flat[0] = np.nan
        return out


class NanBackend(CpuBackend):
    """Compiles like the CPU backend, then puts a NaN in every batch's first output."""
    name = "NANCPU"

    def compile(self, artifact, precision, batch_sizes, options) -> Compiled:
        return _NanOutputs(super().compile(artifact, precision, batch_sizes, options))


class NoCompileBackend(CpuBackend):
    name = "NOCOMPILE"

    def compile(self, artifact, precision, batch_sizes, options) -> Compiled:
        raise CompileError("no kernel for op Erf in this SDK")
