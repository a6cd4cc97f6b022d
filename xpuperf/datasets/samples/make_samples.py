"""Regenerate the synthetic open_imagenet and open_criteo_kaggle samples (seeded).

    python xpuperf/datasets/samples/make_samples.py

open_squad/dev-v1.1.json is hand-written text and is not generated here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).parent
IMAGES, IMAGE_SIZE = 32, 64
CRITEO_ROWS = 64


def make_imagenet(folder: Path, rng: np.random.Generator) -> None:
    """Gradients with a coloured shape and light noise: smooth enough to stay small as JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0.0, 1.0, IMAGE_SIZE, dtype=np.float32)
    lines = []
    for i in range(1, IMAGES + 1):
        a, b = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        pixels = a + (b - a) * ramp[:, None, None] if i % 2 else a + (b - a) * ramp[None, :, None]
        pixels = np.broadcast_to(pixels, (IMAGE_SIZE, IMAGE_SIZE, 3)) + rng.normal(0, 6, (IMAGE_SIZE, IMAGE_SIZE, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        x0, y0 = rng.integers(0, IMAGE_SIZE // 2, size=2)
        x1, y1 = rng.integers(IMAGE_SIZE // 2, IMAGE_SIZE, size=2)
        shape = ImageDraw.Draw(image).ellipse if i % 3 else ImageDraw.Draw(image).rectangle
        shape((int(x0), int(y0), int(x1), int(y1)), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        image.save(folder / name, quality=75)
        lines.append(f"{name} {int(rng.integers(0, 1000))}\n")
    (folder / "val_map.txt").write_text("".join(lines))


def make_criteo(file: Path, rng: np.random.Generator) -> None:
    """Lines in the Kaggle format; the label leans on I1 and C1 so a trained model can beat chance."""
    file.parent.mkdir(parents=True, exist_ok=True)
    pools = rng.integers(0, 2**32, size=(26, 6))  # few values per column, so categories repeat
    lines = []
    for _ in range(CRITEO_ROWS):
        ints = rng.geometric(0.05, size=13) - 1
        ints[1] -= 2  # I2 is the one column with negative values in the real data
        cats = [pools[c, rng.integers(0, 6)] for c in range(26)]
        logit = 0.8 * (np.log1p(ints[0]) - 2.5) + (1.5 if cats[0] == pools[0, 0] else -0.3)
        label = int(rng.random() < 1 / (1 + np.exp(-logit)))
        num = ["" if rng.random() < 0.1 else str(v) for v in ints]
        cat = ["" if rng.random() < 0.1 else f"{int(v):08x}" for v in cats]
        lines.append("\t".join([str(label), *num, *cat]) + "\n")
    file.write_text("".join(lines))


if __name__ == "__main__":
    make_imagenet(HERE / "open_imagenet", np.random.default_rng(0))
    make_criteo(HERE / "open_criteo_kaggle" / "train.txt", np.random.default_rng(1))
