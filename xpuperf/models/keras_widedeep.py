"""Wide & Deep for Criteo in Keras: a linear 'wide' part over hashed categorical
ids and the numeric features, and a 'deep' MLP over their embeddings."""
from __future__ import annotations

from typing import Any, Mapping

from xpuperf.zoo import ModelSpec


def build(config: Mapping[str, Any], spec: ModelSpec) -> Any:
    import keras

    by_field = {t.field: t for t in spec.inputs}
    cat_spec, num_spec = by_field["categorical"], by_field["numeric"]
    cat = keras.Input(cat_spec.shape[1:], dtype=cat_spec.dtype, name=cat_spec.name)
    num = keras.Input(num_spec.shape[1:], dtype=num_spec.dtype, name=num_spec.name)
    buckets = config["hash_buckets"]

    wide_cat = keras.layers.Flatten()(keras.layers.Embedding(buckets, 1)(cat))
    wide = keras.layers.Dense(1)(keras.layers.Concatenate()([wide_cat, num]))

    emb = keras.layers.Flatten()(keras.layers.Embedding(buckets, config["embedding_dim"])(cat))
    deep = keras.layers.Concatenate()([emb, num])
    for units in config["deep_units"]:
        deep = keras.layers.Dense(units, activation="relu")(deep)
    deep = keras.layers.Dense(1)(deep)

    prob = keras.layers.Activation("sigmoid", name=spec.outputs[0].name)(keras.layers.Add()([wide, deep]))
    return keras.Model([cat, num], [prob], name="wide_deep")
