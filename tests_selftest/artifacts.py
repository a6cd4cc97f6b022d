"""A model artifact backed by an ONNX file a test wrote, for backend selftests."""
from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from backends.base import ModelArtifactLike


class FileArtifact(ModelArtifactLike):
    """The ONNX file at ``path``; calibration feeds are random x of shape [1, 16]."""

    def __init__(self, path: Path, inputs: tuple[str, ...] = ("x",),
                 outputs: tuple[str, ...] = ("y",)):
        self.name, self._path = path.stem, path
        self.input_names, self.output_names = inputs, outputs

    def onnx_path(self) -> PathLike[str]:
        return self._path

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(0)
        return [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(count)]


def damage(path: Path, how: str) -> None:
    """Leave of a cache file what a crash or a full disk leaves: nothing
    ("missing") or its first bytes ("truncated")."""
    if how == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:20])
