"""The interface every dataset format implements (pure numpy, no framework)."""
from __future__ import annotations

import abc
from typing import Any, Mapping, Sequence

import numpy as np

from xpuperf.zoo import TensorSpec


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


class ArrayDataset(Dataset):
    """Samples preprocessed once into one array per model input, so that feeds()
    only gathers rows."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self._arrays = arrays

    def __len__(self) -> int:
        return len(next(iter(self._arrays.values())))

    def feeds(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.intp)
        return {name: np.take(a, idx, axis=0) for name, a in self._arrays.items()}


def model_arrays(dataset: str, fields: Mapping[str, np.ndarray],
                 inputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """Each model input's array, taken from the dataset field it names and cast once."""
    arrays = {}
    for spec in inputs:
        if spec.field not in fields:
            raise ValueError(f"{dataset}: input {spec.name!r} reads field {spec.field!r}; this dataset "
                             f"has {', '.join(fields)}")
        data = fields[spec.field]
        if np.prod(spec.shape[1:], dtype=np.int64) != np.prod(data.shape[1:], dtype=np.int64):
            raise ValueError(f"{dataset}: input {spec.name!r} declares shape {list(spec.shape)}; field "
                             f"{spec.field!r} has {list(data.shape[1:])} per sample")
        arrays[spec.name] = data.reshape(len(data), *spec.shape[1:]).astype(numpy_dtype(spec.dtype))
    return arrays


def numpy_dtype(dtype: str) -> str:
    """numpy has no bfloat16: such inputs get float32, which backends cast on the way in."""
    return "float32" if dtype == "bfloat16" else dtype


def data_percent_count(total: int, options: Mapping[str, Any], dataset: str) -> int:
    """How many of ``total`` records the option ``data_percent`` keeps (a number in
    (0, 100], default 100): the first ones, so every run reads the same records,
    and at least one."""
    percent = options.get("data_percent", 100)
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
        raise ValueError(f"{dataset}: option 'data_percent' must be a number in (0, 100], got {percent!r}")
    return max(1, int(total * percent / 100))
