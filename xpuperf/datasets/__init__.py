"""Datasets: one module per file format, each with its loader and its task metric
(the table of formats: xpuperf.datasets.formats). A format's module is imported
only when a dataset is loaded, so collection stays free of heavy imports.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from xpuperf.datasets.base import Dataset
from xpuperf.datasets.formats import FORMATS
from xpuperf.zoo.specs import DatasetSpec, TensorSpec


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
