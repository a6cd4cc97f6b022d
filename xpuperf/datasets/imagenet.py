"""ImageNet 2012 validation (open_imagenet) as MLPerf lays it out, scored by top-1/top-5.

The folder holds the images and val_map.txt ("ILSVRC2012_val_00000001.JPEG 65" per
line). Preprocessing is the usual ResNet one: shorter side to S/0.875, centre crop
S x S, ImageNet mean/std; the model's input shape gives S and the layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xpuperf.datasets.base import ArrayDataset, data_percent_count, image_layout, model_arrays
from xpuperf.zoo import TensorSpec

NAME = "open_imagenet"
MAP_FILE = "val_map.txt"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CROP_FRACTION = 0.875


class ImagenetDataset(ArrayDataset):
    name = NAME
    primary_metric = "top1"

    def __init__(self, path: Path, arrays: dict[str, np.ndarray], labels: np.ndarray, label_offset: int):
        self.path = str(path)
        self.labels = labels
        self.label_offset = label_offset
        super().__init__(arrays)

    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return top_k_scores(NAME, outputs, self.labels + self.label_offset,
                            hint=f" (label_offset {self.label_offset} included)")


def load(path: Path | None, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
         options: dict[str, Any]) -> ImagenetDataset:
    """Decode and preprocess every listed image (or the first ``max_images``).

    Options: label_offset (added to each label: 1 for 1001-class models whose class
    0 is background; default 0), max_images (default: all; the full set at 224 x 224
    takes 30 GB as float32), data_percent (the share of those images, first ones
    first; default 100).
    """
    if "scores" not in {o.field for o in outputs}:
        raise ValueError(f"{NAME}: the model declares no output with field 'scores'; top-k "
                         "scoring needs one ([N, classes])")
    if len(inputs) != 1:
        raise ValueError(f"{NAME}: the model has {len(inputs)} inputs; this dataset feeds one image")
    size, channels_first = image_layout(NAME, inputs[0])
    folder, names, labels = read_val_map(path, options.get("max_images"))
    count = data_percent_count(len(names), options, NAME)
    names, labels = names[:count], labels[:count]
    images = np.stack([preprocess(folder / n, size) for n in names])
    if channels_first:
        images = images.transpose(0, 3, 1, 2)
    arrays = model_arrays(NAME, {"image": np.ascontiguousarray(images)}, inputs)
    return ImagenetDataset(folder, arrays, labels, int(options.get("label_offset", 0)))


def read_val_map(path: Path | None, max_images: int | None = None) -> tuple[Path, list[str], np.ndarray]:
    """(folder, image names, labels) from the folder's val_map.txt."""
    expected = f"expected a folder with {MAP_FILE} and the images it lists"
    if path is None:
        raise ValueError(f"{NAME}: no dataset path; {expected}")
    file = path / MAP_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{NAME}: {file} not found; {expected}")
    names, labels = [], []
    with file.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if max_images is not None and len(names) >= max_images:
                break
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"{NAME}: {file}:{lineno}: expected 'IMAGE_NAME LABEL', got {line.strip()!r}")
            names.append(parts[0])
            labels.append(int(parts[1]))
    if not names:
        raise ValueError(f"{NAME}: {file}: lists no images; {expected}")
    return path, names, np.array(labels, dtype=np.int64)


def preprocess(file: Path, size: int) -> np.ndarray:
    """One image as float32 [S, S, 3]: RGB, shorter side to S/0.875 (bilinear), centre
    crop, scaled to [0, 1] and normalized by the ImageNet mean and std."""
    from PIL import Image

    try:
        with Image.open(file) as src:
            im = src.convert("RGB")
    except OSError as e:  # missing file or not an image (PIL's UnidentifiedImageError)
        raise ValueError(f"{NAME}: {file}: cannot read the image ({e}); expected a file listed "
                         f"in {MAP_FILE}") from None
    short = round(size / CROP_FRACTION)
    w, h = im.size
    im = im.resize((short, round(h * short / w)) if w <= h else (round(w * short / h), short),
                   Image.BILINEAR)
    left, top = (im.width - size) // 2, (im.height - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return (np.asarray(im, dtype=np.float32) / 255.0 - MEAN) / STD


def top_k_scores(dataset: str, outputs: dict[str, np.ndarray], labels: np.ndarray,
                 classes: int | None = None, hint: str = "") -> dict[str, float]:
    """top1 and top5 of output field 'scores' ([N, classes]) against ``labels``,
    after checking the output fits them (classification datasets share this)."""
    want = f"[{len(labels)}, {classes or 'classes'}]"
    if "scores" not in outputs:
        raise ValueError(f"{dataset}: evaluate needs output 'scores' ({want}); got "
                         f"{', '.join(outputs) or 'none'}")
    scores = np.asarray(outputs["scores"], dtype=np.float32)
    if scores.ndim != 2 or len(scores) != len(labels) or scores.shape[1] != (classes or scores.shape[1]):
        raise ValueError(f"{dataset}: output 'scores' has shape {scores.shape}; expected {want}")
    if labels.max() >= scores.shape[1]:
        raise ValueError(f"{dataset}: label {int(labels.max())}{hint} is past the model's "
                         f"{scores.shape[1]} scores")
    return {"top1": top_k_accuracy(scores, labels, 1), "top5": top_k_accuracy(scores, labels, 5)}


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percent of rows whose label is among the k highest scores.

    A score tied with the label's counts as above it, so a constant output scores
    nothing rather than everything; a NaN label score is a miss.
    """
    scores = np.asarray(scores)
    label_scores = np.take_along_axis(scores, np.asarray(labels)[:, None], axis=1)
    rank = (scores >= label_scores).sum(axis=1) - 1  # others at or above the label
    hit = (rank < k) & ~np.isnan(label_scores[:, 0])
    return 100.0 * float(hit.mean())

