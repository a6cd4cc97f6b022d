"""A zoo entry materialised: the framework model, its ONNX export, its reference run.

Everything is lazy and cached on disk by content hash, so a second session (or
another xdist worker) that finds the ONNX file and the reference outputs cached
never imports the model's framework at all.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backends.base import ModelArtifactLike
from xpuperf.cache import Cache, content_key, file_digest, source_digest
from xpuperf.datasets.base import numpy_dtype
from xpuperf.extras import require
from xpuperf.models import BUILDERS
from xpuperf.zoo import ModelSpec

# A framework adapter module offers PACKAGES, OPSET, materialize(build, spec,
# weights), export_onnx(model, spec, path, example), run(model, spec, feeds) and
# optionally close(model). One whose reference is the ONNX file itself (onnx)
# also offers open_reference(onnx_path), whose result run() is then given.
FRAMEWORKS = {
    "torch": "xpuperf.models.torch_fw",
    "tf": "xpuperf.models.tf_fw",
    "onnx": "xpuperf.models.onnx_fw",
}
# `weights:` forms that name no path relative to zoo.yaml, so that a zoo can point
# at files whose location depends on the machine: "package:pkg/sub/folder" (data
# shipped in an installed Python package) and "hf:org/name" (the local Hugging
# Face cache; never downloaded).
PACKAGE_PREFIX = "package:"
HF_CACHE_PREFIX = "hf:"


class WeightsError(ValueError):
    """A weights file named in zoo.yaml is missing or unreadable."""


def resolve_weights(weights: str, root: Path) -> Path:
    """The local path a `weights:` value names (it may not exist)."""
    if weights.startswith(PACKAGE_PREFIX):
        import importlib.resources

        package, _, sub = weights[len(PACKAGE_PREFIX):].partition("/")
        try:
            base = importlib.resources.files(package)
        except ModuleNotFoundError:
            raise FileNotFoundError(f"Python package {package!r} is not installed") from None
        return Path(str(base.joinpath(sub))) if sub else Path(str(base))
    if weights.startswith(HF_CACHE_PREFIX):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        repo = weights[len(HF_CACHE_PREFIX):]
        try:
            return Path(snapshot_download(repo, local_files_only=True))
        except LocalEntryNotFoundError:
            raise FileNotFoundError(f"{repo!r} is not in the local Hugging Face cache") from None
    path = Path(weights)
    return path if path.is_absolute() else root / path


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in packages:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "absent"
    return out


def example_feeds(spec: ModelSpec, batch: int = 2) -> dict[str, np.ndarray]:
    """Inputs of the right names, shapes and dtypes for tracing and export."""
    return {t.name: np.zeros(t.batch_shape(batch), dtype=numpy_dtype(t.dtype)) for t in spec.inputs}


class ModelArtifact(ModelArtifactLike):
    def __init__(self, spec: ModelSpec, cache: Cache, weights_root: Path,
                 calibration: Callable[[int], list[dict[str, np.ndarray]]]):
        self.spec = spec
        self.name = spec.name
        self.input_names = tuple(t.name for t in spec.inputs)
        self.output_names = tuple(t.name for t in spec.outputs)
        self._cache = cache
        self._calibration = calibration
        self._fw = require(FRAMEWORKS[spec.framework], f"{spec.name} ({spec.framework} model)")
        self._model: Any = None
        self._reference_runner: Any = None
        self.weights_path = self._weights_path(weights_root)
        self.weights = (str(self.weights_path) if self.weights_path
                        else f"seeded (seed {spec.seed})")
        self.key = content_key(
            spec.framework, spec.builder, spec.config, spec.seed,
            [(t.name, t.shape, t.dtype) for t in spec.inputs], [t.name for t in spec.outputs],
            self._weights_digest(),
            _versions(self._fw.PACKAGES), self._fw.OPSET,
            # The builder's and the exporter's code: a changed model is a new artifact.
            source_digest(*([BUILDERS[spec.builder].split(":")[0]] if spec.builder else []),
                          FRAMEWORKS[spec.framework]),
        )

    def _weights_path(self, root: Path) -> Path | None:
        if not self.spec.weights:
            return None
        fix = f"fix models.{self.name}.weights in zoo.yaml or remove it for seeded weights"
        try:
            path = resolve_weights(self.spec.weights, root)
        except FileNotFoundError as e:
            raise WeightsError(f"{self.name}: weights {self.spec.weights!r}: {e}; {fix}") from None
        if not path.exists():
            raise WeightsError(f"{self.name}: weights file {path} does not exist; {fix}")
        if not (path.is_file() or path.is_dir()):  # its digest would read a device forever
            raise WeightsError(f"{self.name}: weights {path} is not a regular file or a folder "
                               f"(a device, a pipe or a socket); {fix}")
        return path

    def _weights_digest(self) -> str | None:
        """The digest of the weights and of every file they bring (an .onnx file's
        external data): a changed .data file is a new artifact."""
        if self.weights_path is None:
            return None
        files = getattr(self._fw, "weights_files", lambda path: [path])
        try:
            return content_key(*(file_digest(f) for f in files(self.weights_path)))
        except ValueError as e:
            raise WeightsError(f"{self.name}: cannot load weights {self.weights_path}: "
                               f"{e}") from None

    @property
    def seeded(self) -> bool:
        return self.weights_path is None

    def model(self) -> Any:
        """The framework model, built on first use."""
        if self._model is None:
            build = None  # a model that is a file (zoo.yaml's model:) has no builder
            if self.spec.builder:
                module, func = BUILDERS[self.spec.builder].split(":")
                build = getattr(require(module, f"{self.name}'s builder {self.spec.builder}"), func)
            try:
                self._model = self._fw.materialize(build, self.spec, self.weights_path)
            except (OSError, ValueError, RuntimeError) as e:
                if self.weights_path is None:
                    raise
                raise WeightsError(f"{self.name}: cannot load weights {self.weights_path}: {e}") from e
        return self._model

    def onnx_path(self) -> Path:
        def export(folder: Path) -> None:
            self._fw.export_onnx(self.model(), self.spec, folder / "model.onnx",
                                 example_feeds(self.spec))
        return self._cache.entry("onnx", self.key, export) / "model.onnx"

    def reference(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The framework's own fp32 outputs: the ground truth backends are held to
        (for framework onnx, onnxruntime's on the exported file)."""
        if self._reference_runner is None:
            open_reference = getattr(self._fw, "open_reference", None)
            self._reference_runner = (open_reference(self.onnx_path()) if open_reference
                                      else self.model())
        return self._fw.run(self._reference_runner, self.spec, feeds)

    def calibration_feeds(self, count: int) -> list[dict[str, np.ndarray]]:
        return self._calibration(count)

    def torch_module(self) -> Any:
        """A deep copy of the torch model the reference runs (so that a backend's
        conversions never reach the reference), or None for another framework."""
        if self.spec.framework != "torch":
            return None
        import copy

        return copy.deepcopy(self.model())

    def example_feeds(self, batch_size: int) -> dict[str, np.ndarray]:
        return example_feeds(self.spec, batch_size)

    def close(self) -> None:
        if self._model is not None and hasattr(self._fw, "close"):
            self._fw.close(self._model)
        self._model = self._reference_runner = None
