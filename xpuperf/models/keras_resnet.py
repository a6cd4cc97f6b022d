"""ResNet v1 (bottleneck) in Keras, layer for layer as keras.applications builds it.

keras.applications offers only ResNet50 and deeper, which is too slow for the
smoke tier (tf2onnx alone takes half a minute on it), so the architecture is
written out here with the widths and depths as config: with the full tier's
config (64 / [64, 128, 256, 512] / [3, 4, 6, 3]) it is keras.applications.ResNet50,
with the same layer names, shapes and parameter count (25,636,712), so that
Keras's ResNet50 weights load into it by name; the smoke tier shrinks the same code.
"""
from __future__ import annotations

from typing import Any, Mapping

from xpuperf.zoo import ModelSpec

BN_EPSILON = 1.001e-5  # keras.applications' value


def build(config: Mapping[str, Any], spec: ModelSpec) -> Any:
    """One NHWC image input; one output: softmax over ``classes``."""
    import keras
    from keras import layers

    if len(spec.inputs) != 1:
        raise ValueError(f"{spec.name}: a ResNet takes one image input; the zoo entry declares "
                         f"{len(spec.inputs)}")
    image = spec.inputs[0]
    inp = keras.Input(image.shape[1:], dtype=image.dtype, name=image.name)
    x = layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad")(inp)
    x = layers.Conv2D(config["stem_filters"], 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(axis=3, epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks) in enumerate(zip(config["filters"], config["blocks"], strict=True)):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1  # conv2 keeps the stem's resolution
            x = _bottleneck(x, filters, stride, shortcut_conv=block == 0,
                            name=f"conv{stage + 2}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(config["classes"], activation="softmax", name="predictions")(x)
    return keras.Model([inp], [x], name="resnet")  # lists: tf_fw calls it with a dict by name


def _bottleneck(x: Any, filters: int, stride: int, shortcut_conv: bool, name: str) -> Any:
    from keras import layers

    def conv_bn(t: Any, width: int, kernel: int, part: int, strides: int = 1) -> Any:
        t = layers.Conv2D(width, kernel, strides=strides, padding="same" if kernel > 1 else "valid",
                          name=f"{name}_{part}_conv")(t)
        return layers.BatchNormalization(axis=3, epsilon=BN_EPSILON, name=f"{name}_{part}_bn")(t)

    shortcut = conv_bn(x, 4 * filters, 1, 0, stride) if shortcut_conv else x
    x = layers.Activation("relu", name=f"{name}_1_relu")(conv_bn(x, filters, 1, 1, stride))
    x = layers.Activation("relu", name=f"{name}_2_relu")(conv_bn(x, filters, 3, 2))
    x = layers.Add(name=f"{name}_add")([shortcut, conv_bn(x, 4 * filters, 1, 3)])
    return layers.Activation("relu", name=f"{name}_out")(x)
