"""A zoo entry made ready to run: its dataset, its artifact (built with the
dataset's calibration feeds, exported to ONNX) and its data key (the digest of
the dataset's inputs, which the reference's and the compiled model's cache keys
include). The parent (xpuperf.session) and the group's worker
(xpuperf.worker.host) both make them here, so they make the same things with
the same keys, and a failure is one SetupError naming zoo.yaml's line.
"""
from __future__ import annotations

from pathlib import Path

from xpuperf import datasets
from xpuperf.batches import calibration_feeds
from xpuperf.cache import Cache, arrays_key
from xpuperf.datasets.base import Dataset
from xpuperf.models.artifact import ModelArtifact
from xpuperf.zoo import ModelSpec, Zoo


class SetupError(Exception):
    """What an item needs could not be made (a dataset, weights, the zoo entry's
    model): the items of that combination error in setup, not as a backend failure."""


class ZooEntry:
    """One model of ``zoo``: each thing made on first use and kept."""

    def __init__(self, zoo: Zoo, model: ModelSpec, cache: Cache, data_dir: Path):
        self.zoo, self.model, self.cache, self.data_dir = zoo, model, cache, data_dir
        self._dataset: Dataset | None = None
        self._artifact: ModelArtifact | None = None
        self._data_key: str | None = None

    def where(self, key: str) -> str:
        """zoo.yaml's file, line and field of this model's ``key``."""
        lines, name = self.zoo.lines, self.model.name
        line = lines.get(f"models.{name}.{key}") or lines.get(f"models.{name}")
        return f"{self.zoo.path}{f':{line}' if line else ''}: models.{name}.{key}"

    def failed(self, key: str, what: str, error: BaseException) -> SetupError:
        """The SetupError of ``error``, raised making what ``key`` declares."""
        return SetupError(f"{self.where(key)}: {what}: {type(error).__name__}: {error}")

    def dataset(self) -> Dataset:
        if self._dataset is None:
            model = self.model
            spec = self.zoo.datasets[model.dataset]
            try:
                self._dataset = datasets.load(spec, self.data_dir, model.inputs, model.outputs,
                                              model.dataset_options)
            except Exception as e:  # noqa: BLE001 - any loader failure is this model's setup error
                raise self.failed("dataset", f"dataset {model.dataset!r} (format {spec.format}) "
                                  "cannot be loaded", e) from e
        return self._dataset

    def artifact(self) -> ModelArtifact:
        """The model's artifact with its ONNX export made (the second process to
        ask finds it in the cache). Its int8 calibration reads the dataset, which
        is loaded only then."""
        if self._artifact is None:
            model = self.model
            try:
                artifact = ModelArtifact(  # hashes the weights file
                    model, self.cache, self.zoo.path.parent,
                    calibration=lambda n: calibration_feeds(self.dataset(), n,
                                                            model.fixed_batch or 1))
                artifact.onnx_path()
            except SetupError:
                raise
            except Exception as e:  # noqa: BLE001 - weights, builder or export: a setup error
                raise self.failed("weights" if model.weights else "builder",
                                  "the model cannot be made", e) from e
            self._artifact = artifact
        return self._artifact

    def data_key(self) -> str:
        """The digest of every input of the dataset."""
        if self._data_key is None:
            ds = self.dataset()
            self._data_key = arrays_key(ds.feeds(range(len(ds))))
        return self._data_key

    def close(self) -> None:
        if self._artifact is not None:
            self._artifact.close()
