"""CIFAR-100 test set (open_cifar) in its binary format, scored by top-1 (and top-5)
on the 100 fine labels.

test.bin is a run of 3074-byte records: the coarse label, the fine label, then the
32 x 32 image as 1024 red, 1024 green and 1024 blue bytes, rows first. Only this
format is read (never the pickled "python version"). Images are resized to the
model's input size (bicubic, as CLIP-style models are fed) and normalized with
per-channel mean and std, by default CLIP's, which ByteMLPerf's videobert used.

A zero-shot model (ByteMLPerf's videobert, a CLIP dual encoder) also takes field
'text': the token ids [100, length] of one prompt per class, "a photo of a
{name}" in label order, fed whole with every batch of images (the input has no
batch axis); its output [N, 100] scores each image against each prompt. The class
names are read from fine_label_names.txt beside test.bin, as the binary
distribution ships them, and used verbatim (with their underscores), as in CLIP's
own CIFAR-100 example.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xpuperf.datasets.base import (ArrayDataset, data_percent_count, image_layout, model_arrays,
                                   shared_inputs)
from xpuperf.datasets.imagenet import top_k_scores
from xpuperf.zoo import TensorSpec

NAME = "open_cifar"
FILE = "test.bin"
NAMES_FILE = "fine_label_names.txt"
PROMPT = "a photo of a {}"  # CLIP's
SIDE = 32
RECORD_BYTES = 2 + 3 * SIDE * SIDE
FINE_CLASSES = 100
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FORMAT = f"{RECORD_BYTES}-byte records: coarse label, fine label, 3072 pixel bytes (R, G, B planes)"


class CifarDataset(ArrayDataset):
    name = NAME
    primary_metric = "top1"

    def __init__(self, path: Path, arrays: dict[str, np.ndarray], fine: np.ndarray, coarse: np.ndarray,
                 shared: tuple[str, ...]):
        self.path = str(path)
        self.labels = fine
        self.coarse_labels = coarse
        super().__init__(arrays, shared)

    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return top_k_scores(NAME, outputs, self.labels, classes=FINE_CLASSES)


def load(path: Path | None, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
         options: dict[str, Any]) -> CifarDataset:
    """Read test.bin (the file, or a folder holding it) into field 'image' (float32,
    the model's layout and size), and field 'text' when the model takes it.

    Options: mean and std (three floats each, applied to pixels scaled to [0, 1];
    default CLIP's), data_percent (the share of records, first ones first; default
    100). For 'text': tokenizer (a vocab.txt or a Hugging Face tokenizer folder, a
    local path or "package:pkg/path"; required), prompt (with {} for the class
    name; default "a photo of a {}"), vocab_size (the bound every id is checked
    against).
    """
    if "scores" not in {o.field for o in outputs}:
        raise ValueError(f"{NAME}: the model declares no output with field 'scores'; top-k "
                         "scoring needs one ([N, 100])")
    image = next((t for t in inputs if t.field == "image"), None)
    if image is None:
        raise ValueError(f"{NAME}: the model declares no input with field 'image'")
    size, channels_first = image_layout(NAME, image)
    file = _bin_file(path)
    coarse, fine, pixels = read_records(file)
    count = data_percent_count(len(fine), options, NAME)
    coarse, fine, pixels = coarse[:count], fine[:count], pixels[:count]
    images = preprocess(pixels, size, _channel_values(options, "mean", CLIP_MEAN),
                        _channel_values(options, "std", CLIP_STD))
    if channels_first:
        images = images.transpose(0, 3, 1, 2)
    fields = {"image": np.ascontiguousarray(images)}
    text = next((t for t in inputs if t.field == "text"), None)
    if text is not None:
        fields["text"] = prompt_ids(file.parent / NAMES_FILE, text, options)
    return CifarDataset(file, model_arrays(NAME, fields, inputs), fine, coarse, shared_inputs(inputs))


def prompt_ids(names_file: Path, spec: TensorSpec, options: dict[str, Any]) -> np.ndarray:
    """Token ids [100, length] (int64) of each fine class's prompt, in label order,
    padded or cut to the length that ``spec`` ([100, length], no batch axis) declares."""
    if spec.batched or len(spec.shape) != 2 or spec.shape[0] != FINE_CLASSES:
        raise ValueError(f"{NAME}: input {spec.name!r} (field 'text') must have shape "
                         f"[{FINE_CLASSES}, length] and batched: false (one prompt per class, fed "
                         f"whole with every batch); it has {list(spec.shape)}, batched: "
                         f"{str(spec.batched).lower()}")
    prompt = options.get("prompt", PROMPT)
    if not (isinstance(prompt, str) and "{}" in prompt):
        raise ValueError(f"{NAME}: option 'prompt' must be a string with {{}} for the class name, "
                         f"got {prompt!r}")
    if not options.get("tokenizer"):
        raise ValueError(f"{NAME}: input {spec.name!r} needs option 'tokenizer' (a vocab.txt or a "
                         "Hugging Face tokenizer folder) to turn the prompts into ids")
    from xpuperf.datasets.squad import local_tokenizer
    from xpuperf.models.artifact import resolve_weights  # the same path forms as weights

    try:
        path = resolve_weights(str(options["tokenizer"]), Path())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{NAME}: tokenizer {options['tokenizer']!r}: {e}") from None
    tokenizer = local_tokenizer(path, dataset=NAME)
    length = spec.shape[1]
    pad = tokenizer.padding  # set by local_tokenizer; only the length is ours
    tokenizer.enable_padding(pad_id=pad["pad_id"], pad_token=pad["pad_token"], length=length)
    tokenizer.enable_truncation(length)
    names = class_names(names_file)
    ids = np.array([e.ids for e in tokenizer.encode_batch([prompt.format(n) for n in names])], np.int64)
    vocab_size = options.get("vocab_size")
    if vocab_size is not None and ids.max() >= vocab_size:
        raise ValueError(f"{NAME}: token id {int(ids.max())} >= vocab_size {vocab_size}; the "
                         "tokenizer's vocabulary is larger than the model's")
    return ids


def class_names(file: Path) -> list[str]:
    """The 100 fine class names, in label order, one a line."""
    if not file.is_file():
        raise FileNotFoundError(f"{NAME}: {file} not found; the prompts need the CIFAR-100 fine class "
                                f"names, one a line in label order, as cifar-100-binary ships them")
    names = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(names) != FINE_CLASSES:
        raise ValueError(f"{NAME}: {file}: {len(names)} class names; expected {FINE_CLASSES}, one a line")
    return names


def _channel_values(options: dict[str, Any], key: str, default: Sequence[float]) -> np.ndarray:
    values = options.get(key, default)
    if not (isinstance(values, (list, tuple)) and len(values) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"{NAME}: option {key!r} must be three numbers (R, G, B), got {values!r}")
    return np.array(values, dtype=np.float32)


def _bin_file(path: Path | None) -> Path:
    if path is None:
        raise ValueError(f"{NAME}: no dataset path; expected the CIFAR-100 binary {FILE}")
    file = path / FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{NAME}: {file} not found; expected the CIFAR-100 binary {FILE} "
                                f"({FORMAT}) or a folder holding it")
    return file


def read_records(file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coarse labels int64 [N], fine labels int64 [N], images uint8 [N, 32, 32, 3])."""
    data = np.fromfile(file, dtype=np.uint8)
    if data.size == 0 or data.size % RECORD_BYTES:
        raise ValueError(f"{NAME}: {file}: {data.size} bytes is not a whole number of records; "
                         f"expected {FORMAT}")
    records = data.reshape(-1, RECORD_BYTES)
    coarse, fine = records[:, 0].astype(np.int64), records[:, 1].astype(np.int64)
    if fine.max() >= FINE_CLASSES or coarse.max() >= 20:
        raise ValueError(f"{NAME}: {file}: a label is out of range (fine < {FINE_CLASSES}, coarse < 20); "
                         f"expected {FORMAT}")
    images = records[:, 2:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return coarse, fine, np.ascontiguousarray(images)


def preprocess(pixels: np.ndarray, size: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 [N, 32, 32, 3] -> float32 [N, S, S, 3]: resized (bicubic), scaled to
    [0, 1], normalized by ``mean`` and ``std``."""
    from PIL import Image

    if size != SIDE:
        pixels = np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BICUBIC))
                           for p in pixels])
    return (pixels.astype(np.float32) / 255.0 - mean) / std
