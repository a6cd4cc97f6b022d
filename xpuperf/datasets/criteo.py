"""Criteo Kaggle display advertising (open_criteo_kaggle): click prediction, scored
by accuracy and ROC AUC.

train.txt has no header; each line is a 0/1 label, 13 integer features and 26
categorical features as 8-digit hex strings, tab-separated, any feature may be
empty. Integers become log(1 + max(x, 0)) and categories their value modulo the
model's embedding size, as the reference Wide & Deep models expect.
"""
from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from xpuperf.datasets.base import ArrayDataset, data_percent_count, model_arrays
from xpuperf.zoo import TensorSpec

NAME = "open_criteo_kaggle"
FILE = "train.txt"
N_NUMERIC, N_CATEGORICAL = 13, 26
FORMAT = (f"{1 + N_NUMERIC + N_CATEGORICAL} tab-separated fields per line: label, "
          f"{N_NUMERIC} integers, {N_CATEGORICAL} hex categories")


class CriteoDataset(ArrayDataset):
    name = NAME
    primary_metric = "accuracy"

    def __init__(self, path: Path, arrays: dict[str, np.ndarray], labels: np.ndarray):
        self.path = str(path)
        self.labels = labels
        super().__init__(arrays)

    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        if "probabilities" not in outputs:
            raise ValueError(f"{NAME}: evaluate needs output 'probabilities' ([N, 1] or [N]); got "
                             f"{', '.join(outputs) or 'none'}")
        p = np.asarray(outputs["probabilities"], dtype=np.float64)
        if p.size != len(self) or len(p) != len(self):
            raise ValueError(f"{NAME}: output 'probabilities' has shape {p.shape}; expected "
                             f"[{len(self)}, 1] or [{len(self)}]")
        p = p.reshape(-1)
        return {"accuracy": accuracy(self.labels, p), "auc": roc_auc(self.labels, p)}


def load(path: Path | None, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
         options: dict[str, Any]) -> CriteoDataset:
    """Read train.txt (the file, or a folder holding it) into fields 'numeric'
    (float32 [N, 13]) and 'categorical' (int64 [N, 26]).

    Options: hash_buckets (required: rows of each categorical embedding),
    max_rows (default: all; the full file has 45 million lines), data_percent (the
    share of those rows, first ones first; default 100).
    """
    buckets = options.get("hash_buckets")
    if not (isinstance(buckets, int) and buckets > 0):
        raise ValueError(f"{NAME}: option 'hash_buckets' (a positive integer: rows of the model's "
                         f"categorical embeddings) is required; got {buckets!r}. Set it in the "
                         "model's dataset_options")
    if "probabilities" not in {o.field for o in outputs}:
        raise ValueError(f"{NAME}: the model declares no output with field 'probabilities'; "
                         "scoring needs one ([N, 1] or [N])")
    file = _tsv_file(path)
    max_rows = options.get("max_rows")
    if "data_percent" in options:  # a share needs the row count: one more pass over the file
        max_rows = data_percent_count(_line_count(file, max_rows), options, NAME)
    labels, numeric, categorical = read_rows(file, buckets, max_rows)
    arrays = model_arrays(NAME, {"numeric": numeric, "categorical": categorical}, inputs)
    return CriteoDataset(file, arrays, labels)


def _tsv_file(path: Path | None) -> Path:
    if path is None:
        raise ValueError(f"{NAME}: no dataset path; expected the Criteo Kaggle {FILE}")
    file = path / FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{NAME}: {file} not found; expected the Criteo Kaggle {FILE} "
                                f"({FORMAT}) or a folder holding it")
    return file


def _line_count(file: Path, limit: int | None) -> int:
    with file.open("rb") as f:
        return sum(1 for _ in islice(f, limit))


def read_rows(file: Path, hash_buckets: int, max_rows: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels int64 [N], numeric float32 [N, 13], categorical int64 [N, 26])."""
    rows = []
    try:
        with file.open(encoding="ascii", newline="\n") as f:
            for lineno, line in enumerate(islice(f, max_rows), 1):
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) != 1 + N_NUMERIC + N_CATEGORICAL or fields[0] not in ("0", "1"):
                    raise ValueError(f"{NAME}: {file}:{lineno}: expected {FORMAT}, the label 0 or 1; "
                                     f"got {len(fields)} fields, label {fields[0]!r}")
                rows.append(fields)
    except UnicodeDecodeError as e:
        raise ValueError(f"{NAME}: {file}: not ASCII text ({e}); expected {FORMAT}") from None
    if not rows:
        raise ValueError(f"{NAME}: {file}: holds no rows; expected {FORMAT}")
    table = np.array(rows)
    labels = table[:, 0].astype(np.int64)
    raw = table[:, 1:1 + N_NUMERIC]
    hexes = table[:, 1 + N_NUMERIC:].ravel()
    try:
        numeric = np.log1p(np.maximum(np.where(raw == "", "0", raw).astype(np.float64), 0))
        categorical = np.fromiter((int(h, 16) % hash_buckets if h else 0 for h in hexes),
                                  dtype=np.int64, count=hexes.size)
    except ValueError as e:
        raise ValueError(f"{NAME}: {file}: a feature is neither an integer nor hex ({e}); "
                         f"expected {FORMAT}") from None
    return labels, numeric.astype(np.float32), categorical.reshape(len(rows), N_CATEGORICAL)


def accuracy(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> float:
    """Percent of rows where (probability > threshold) equals the 0/1 label."""
    return 100.0 * float(np.mean((np.asarray(probabilities) > threshold) == (np.asarray(labels) == 1)))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC in percent, by the Mann-Whitney rank sum (tied scores share their
    mean rank, so a tie counts half); NaN when only one class is present."""
    labels = np.asarray(labels) == 1
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    first = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]  # starts of tie groups
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(scores)]
    ranks = np.empty(len(scores))
    ranks[order] = ((starts + 1 + ends) / 2)[group]  # mean of the 1-based ranks start+1..end
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return 100.0 * u / (n_pos * n_neg)

