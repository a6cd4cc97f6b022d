"""Which samples of a dataset go into which batch, for every process that feeds a
model: the parent's reference run and the worker's backend runs must agree."""
from __future__ import annotations

from typing import Callable, Collection

import numpy as np

from xpuperf.datasets.base import Dataset
from xpuperf.zoo import TensorSpec

PERF_DISTINCT_BATCHES = 8  # real batches rotated through during a timed run


def run_in_batches(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                   dataset: Dataset, batch_size: int, whole: Collection[str] = ()
                   ) -> dict[str, np.ndarray]:
    """Outputs for every sample of ``dataset``, in order. The last batch is padded
    with its final sample so backends compiled for fixed batch sizes can run it.

    An output named in ``whole`` has no batch axis (a sum over the batch, a
    length): it has no row per sample to cut the padding from or to join, so it
    comes back as one entry per batch, stacked. The reference and the backend run
    the same batches, so such an output is compared batch by batch, whether or not
    it depends on what the batch holds."""
    n = len(dataset)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        real = len(idx)
        idx += [idx[-1]] * (batch_size - real)
        for name, value in run(dataset.feeds(idx)).items():
            value = np.asarray(value)
            parts.setdefault(name, []).append(value if name in whole else value[:real])
    return {name: np.stack(chunks) if name in whole else np.concatenate(chunks)
            for name, chunks in parts.items()}


def batch_free(outputs: tuple[TensorSpec, ...]) -> frozenset[str]:
    """The outputs without a batch axis (zoo.yaml's ``batched: false``), which
    run_in_batches keeps whole."""
    return frozenset(t.name for t in outputs if not t.batched)


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
