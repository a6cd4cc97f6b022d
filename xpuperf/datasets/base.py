"""The interface every dataset format implements (pure numpy, no framework)."""
from __future__ import annotations

import abc
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from xpuperf.zoo.specs import TensorSpec


class Dataset(abc.ABC):
    """Preprocessed samples of one dataset, shaped for one model.

    ``feeds`` returns model inputs keyed by the model's tensor names (the loader
    maps its own field names through ``TensorSpec.field``), cast to the declared
    dtypes. ``evaluate`` takes the model's outputs for every sample, in order,
    keyed by the output tensors' ``field`` names, and returns the task metrics.
    """

    name: str = ""
    primary_metric: str | None = None  # None: no task metric (fake data)
    # "real", "sample" or "generated", set by xpuperf.datasets.load; "golden" for
    # the model's own data (a class that knows its source says so itself).
    source: str = ""
    path: str = ""  # what was read

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def feeds(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """Model inputs for these samples, batch axis first; an input without a
        batch axis (``TensorSpec.batched`` false) whole, the same for every batch."""

    @abc.abstractmethod
    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Task metrics (in percent where the metric is a rate) for all samples."""


class ArrayDataset(Dataset):
    """Samples preprocessed once into one array per model input, so that feeds()
    only gathers rows; the inputs named in ``shared`` have no batch axis and go
    whole with every batch."""

    def __init__(self, arrays: dict[str, np.ndarray], shared: Collection[str] = ()):
        self._arrays = {name: a for name, a in arrays.items() if name not in shared}
        self._shared = {name: arrays[name] for name in shared}

    def __len__(self) -> int:
        return len(next(iter(self._arrays.values())))

    def feeds(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.intp)
        return {**{name: np.take(a, idx, axis=0) for name, a in self._arrays.items()}, **self._shared}


def model_arrays(dataset: str, fields: Mapping[str, np.ndarray],
                 inputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """Each model input's array, taken from the dataset field it names and cast
    once: rows of samples, or for an input without a batch axis the whole field."""
    arrays = {}
    for spec in inputs:
        if spec.field not in fields:
            raise ValueError(f"{dataset}: input {spec.name!r} reads field {spec.field!r}; this dataset "
                             f"has {', '.join(fields)}")
        data = fields[spec.field]
        want, have = (spec.shape[1:], data.shape[1:]) if spec.batched else (spec.shape, data.shape)
        if np.prod(want, dtype=np.int64) != np.prod(have, dtype=np.int64):
            raise ValueError(f"{dataset}: input {spec.name!r} declares shape {list(spec.shape)}; field "
                             f"{spec.field!r} has {list(have)}"
                             + (" per sample" if spec.batched else " (the input has no batch axis)"))
        arrays[spec.name] = data.reshape(spec.batch_shape(len(data))).astype(numpy_dtype(spec.dtype))
    return arrays


def shared_inputs(inputs: tuple[TensorSpec, ...]) -> tuple[str, ...]:
    """The inputs without a batch axis, for ArrayDataset's ``shared``."""
    return tuple(spec.name for spec in inputs if not spec.batched)


def numpy_dtype(dtype: str) -> str:
    """numpy has no bfloat16: such inputs get float32, which backends cast on the way in.
    Strings are numpy's unicode arrays: onnxruntime reads an object array of bytes
    as strings that equal nothing, without a word."""
    return {"bfloat16": "float32", "string": "str"}.get(dtype, dtype)


def data_percent_count(total: int, options: Mapping[str, Any], dataset: str) -> int:
    """How many of ``total`` records the option ``data_percent`` keeps (a number in
    (0, 100], default 100): the first ones, so every run reads the same records,
    and at least one."""
    percent = options.get("data_percent", 100)
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
        raise ValueError(f"{dataset}: option 'data_percent' must be a number in (0, 100], got {percent!r}")
    return max(1, int(total * percent / 100))


def image_layout(dataset: str, spec: TensorSpec) -> tuple[int, bool]:
    """(S, channels first) from [batch, 3, S, S] (NCHW) or [batch, S, S, 3] (NHWC)."""
    shape = tuple(spec.shape)
    if len(shape) == 4 and shape[1] == 3 and shape[2] == shape[3]:
        return shape[2], True
    if len(shape) == 4 and shape[3] == 3 and shape[1] == shape[2]:
        return shape[1], False
    raise ValueError(f"{dataset}: input {spec.name!r} has shape {list(shape)}; expected "
                     "[batch, 3, S, S] (NCHW) or [batch, S, S, 3] (NHWC)")
