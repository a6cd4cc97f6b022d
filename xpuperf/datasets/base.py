"""The interface every dataset format implements (pure numpy, no framework)."""
from __future__ import annotations

import abc
from typing import Sequence

import numpy as np


class Dataset(abc.ABC):
    """Preprocessed samples of one dataset, shaped for one model.

    ``feeds`` returns model inputs keyed by the model's tensor names (the loader
    maps its own field names through ``TensorSpec.field``), cast to the declared
    dtypes. ``evaluate`` takes the model's outputs for every sample, in order,
    keyed by the output tensors' ``field`` names, and returns the task metrics.
    """

    name: str = ""
    primary_metric: str | None = None  # None: no task metric (fake data)
    source: str = ""  # "real", "sample" or "generated"; set by xpuperf.datasets.load
    path: str = ""  # what was read

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def feeds(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Model inputs for these samples, batch axis first."""

    @abc.abstractmethod
    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Task metrics (in percent where the metric is a rate) for all samples."""
