"""Which samples of a dataset go into which batch, for every process that feeds a
model: the parent's reference run and the worker's backend runs must agree."""
from __future__ import annotations

from typing import Callable

import numpy as np

from xpuperf.datasets.base import Dataset

PERF_DISTINCT_BATCHES = 8  # real batches rotated through during a timed run


def run_in_batches(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                   dataset: Dataset, batch_size: int) -> dict[str, np.ndarray]:
    """Outputs for every sample of ``dataset``, in order. The last batch is padded
    with its final sample so backends compiled for fixed batch sizes can run it."""
    n = len(dataset)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        real = len(idx)
        idx += [idx[-1]] * (batch_size - real)
        for name, value in run(dataset.feeds(idx)).items():
            parts.setdefault(name, []).append(np.asarray(value)[:real])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def calibration_feeds(dataset: Dataset, count: int, batch_size: int) -> list[dict[str, np.ndarray]]:
    """The first ``count`` samples (at most the dataset's) for int8 calibration, in
    batches of ``batch_size``, the last padded with its final sample: a model whose
    batch axis is fixed takes no other size."""
    n = min(count, len(dataset))
    batches = [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
    return [dataset.feeds(idx + [idx[-1]] * (batch_size - len(idx))) for idx in batches]


def perf_indices(samples: int, batch_size: int) -> list[list[int]]:
    """Sample indices of the distinct batches a timed run rotates through: the
    dataset in order, wrapping around, at most PERF_DISTINCT_BATCHES of them."""
    count = min(PERF_DISTINCT_BATCHES, max(1, -(-samples // batch_size)))
    return [[(b * batch_size + i) % samples for i in range(batch_size)] for b in range(count)]


def eval_batch_size(batch_sizes: tuple[int, ...], samples: int) -> int:
    """The largest zoo batch size that the dataset fills at least once."""
    fitting = [b for b in batch_sizes if b <= samples]
    return max(fitting) if fitting else min(batch_sizes)


def audit_batch_size(batch_sizes: tuple[int, ...], samples: int) -> int:
    """The largest zoo batch size that the dataset fills at least twice (an audit
    needs two different batches), else the evaluation batch size."""
    fitting = [b for b in batch_sizes if 2 * b <= samples]
    return max(fitting) if fitting else eval_batch_size(batch_sizes, samples)
