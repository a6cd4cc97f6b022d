"""Generated inputs for models without a dataset: numeric agreement and speed only.

Values follow each input's declaration: integers uniform in its range [low, high)
(default [0, 2)), strings the decimals of such integers, booleans at random,
floats standard normal or, given a range, uniform in it; the same seed gives the
same data in every process.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xpuperf.datasets.base import ArrayDataset, data_percent_count, numpy_dtype, shared_inputs
from xpuperf.zoo import FLOAT_DTYPES, TensorSpec

NAME = "fake"


class FakeDataset(ArrayDataset):
    name = NAME
    primary_metric = None

    def __init__(self, arrays: dict[str, np.ndarray], shared: tuple[str, ...]):
        self.path = ""
        super().__init__(arrays, shared)

    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return {}


def load(path: Path | None, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
         options: dict[str, Any]) -> FakeDataset:
    """Options: samples (default 64), seed (default 0), data_percent (the share of
    the samples, first ones first; default 100). ``path`` is not read."""
    samples = options.get("samples", 64)
    if not (isinstance(samples, int) and samples > 0):
        raise ValueError(f"{NAME}: option 'samples' must be a positive integer, got {samples!r}")
    rng = np.random.default_rng(int(options.get("seed", 0)))
    count = data_percent_count(samples, options, NAME)  # the first ones: the same rows as without it
    shared = shared_inputs(inputs)
    arrays = {spec.name: generate(rng, spec, samples) for spec in inputs}
    return FakeDataset({name: a if name in shared else a[:count] for name, a in arrays.items()}, shared)


def generate(rng: np.random.Generator, spec: TensorSpec, samples: int) -> np.ndarray:
    """``samples`` rows shaped and typed as ``spec`` declares (for an input without
    a batch axis, the one tensor)."""
    shape = spec.batch_shape(samples)
    if spec.dtype == "bool":
        return rng.random(size=shape) < 0.5
    if spec.dtype in FLOAT_DTYPES:
        # float32 draws for all but float64: the data every earlier run was given
        wide = np.float64 if spec.dtype == "float64" else np.float32
        values = (rng.standard_normal(size=shape, dtype=wide) if spec.range is None
                  else rng.uniform(*spec.range, size=shape))
        return values.astype(numpy_dtype(spec.dtype))
    low, high = spec.range or (0, 2)
    if spec.dtype == "string":
        return rng.integers(low, high, size=shape).astype(str)
    return rng.integers(low, high, size=shape, dtype=spec.dtype)
