"""TensorFlow / Keras: build (seeded or from a local file), run in fp32, export ONNX
with tf2onnx."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from xpuperf.zoo import ModelSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up chatter buries test output

PACKAGES = ("tensorflow", "keras", "tf2onnx")
OPSET = 17


def materialize(build: Callable, spec: ModelSpec, weights: Path | None) -> Any:
    import keras
    if weights is not None:
        # safe_mode refuses the Lambda layers that would run arbitrary code.
        return keras.models.load_model(str(weights), safe_mode=True)
    keras.utils.set_random_seed(spec.seed)
    return build(spec.config, spec)


def run(model: Any, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = model({t.name: feeds[t.name] for t in spec.inputs}, training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    return {t.name: np.asarray(o, dtype=np.float32) for t, o in zip(spec.outputs, out)}


def export_onnx(model: Any, spec: ModelSpec, path: Path, example: dict[str, np.ndarray]) -> None:
    import tensorflow as tf
    import tf2onnx

    signature = tuple(tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=t.name) for t in spec.inputs)

    @tf.function(input_signature=signature)
    def forward(*args):  # named outputs, so the ONNX graph's outputs carry the zoo's names
        out = model(dict(zip((t.name for t in spec.inputs), args)), training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        return {t.name: o for t, o in zip(spec.outputs, out)}

    tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET,
                                  output_path=str(path))


def close(model: Any) -> None:
    import keras
    del model
    keras.backend.clear_session()  # Keras keeps every built graph alive otherwise
