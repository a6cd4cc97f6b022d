"""Datasets: one module per file format, each with its loader and its task metric.

``FORMATS`` maps a zoo ``format`` to the module that reads it and the
``dataset_options`` that module takes, so that xpuperf.zoo checks a model's options
when it loads zoo.yaml; modules are imported only when a dataset is loaded, so
collection stays free of heavy imports.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from xpuperf.datasets.base import Dataset
from xpuperf.zoo.specs import DatasetSpec, TensorSpec


@dataclass(frozen=True)
class Format:
    module: str  # defines load() and the dataset's task metric
    # dataset_options it reads: name -> (required, kind), kinds as xpuperf.zoo checks
    # them; the loader's docstring says what each one means and its default.
    options: Mapping[str, tuple[bool, str]]


# Every loader takes data_percent (ByteMLPerf's option): the share of records kept.
_PERCENT = {"data_percent": (False, "num")}
FORMATS = {
    "squad": Format("xpuperf.datasets.squad", {
        "tokenizer": (False, "str"), "vocab_size": (False, "int"), "do_lower_case": (False, "bool"),
        "doc_stride": (False, "int"), "max_answer_length": (False, "int"), **_PERCENT}),
    "imagenet": Format("xpuperf.datasets.imagenet", {
        "label_offset": (False, "int"), "max_images": (False, "int"), **_PERCENT}),
    "criteo": Format("xpuperf.datasets.criteo", {
        "hash_buckets": (True, "int"), "max_rows": (False, "int"), **_PERCENT}),
    "fake": Format("xpuperf.datasets.fake", {
        "samples": (False, "int"), "seed": (False, "int"), **_PERCENT}),
    "cifar": Format("xpuperf.datasets.cifar", {
        "mean": (False, "rgb"), "std": (False, "rgb"), "tokenizer": (False, "str"),
        "prompt": (False, "str"), "vocab_size": (False, "int"), **_PERCENT}),
    "cail2019": Format("xpuperf.datasets.cail2019", {
        "vocab": (False, "str"), "vocab_size": (False, "int"), **_PERCENT}),
    "golden": Format("xpuperf.datasets.golden", {"path": (True, "str")}),
}
SAMPLES = Path(__file__).parent / "samples"


def resolve(spec: DatasetSpec, data_dir: Path) -> tuple[Path | None, str]:
    """The files to read and what they are: the real files under ``data_dir`` when
    present, else the sample shipped with xpuperf."""
    if spec.path and (data_dir / spec.path).exists():
        return data_dir / spec.path, "real"
    if spec.sample:
        return SAMPLES / spec.sample, "sample"
    return None, "generated"


def load(spec: DatasetSpec, data_dir: Path, inputs: tuple[TensorSpec, ...],
         outputs: tuple[TensorSpec, ...], options: Mapping[str, Any]) -> Dataset:
    path, source = resolve(spec, data_dir)
    module = importlib.import_module(FORMATS[spec.format].module)
    dataset = module.load(path, inputs, outputs, dict(options))
    dataset.source = dataset.source or source
    return dataset
