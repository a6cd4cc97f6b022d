"""BERT-family encoders in Keras 3: BERT with a SQuAD head (bert-tf) and RoFormer
with a pair-classification head (roformer-tf).

transformers 5 has no TensorFlow classes any more, so the encoder is written here
with Keras layers and keras.ops only (no custom Layer classes), which keeps the
model a plain functional graph that tf2onnx converts and Keras can save. Layers
follow BERT's: post-LayerNorm blocks, exact GELU, -10000 on masked scores.
RoFormer differs only in its position information: no position embeddings,
rotary embeddings applied to queries and keys in every attention layer, with the
original RoFormer's interleaved pairing of channels.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from xpuperf.zoo import ModelSpec

# BERT's masking value: large enough to zero a softmax term, small enough for fp16.
MASKED_SCORE = -10000.0


def bert_qa(config: Mapping[str, Any], spec: ModelSpec) -> Any:
    """Inputs with fields input_ids, attention_mask, token_type_ids; outputs
    start_logits and end_logits ([batch, seq] each), in the spec's order."""
    import keras
    from keras import ops

    inputs = _inputs(spec, ("input_ids", "attention_mask", "token_type_ids"))
    ids, types = ops.cast(inputs["input_ids"], "int32"), ops.cast(inputs["token_type_ids"], "int32")
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1
    x = (keras.layers.Embedding(config["vocab_size"], config["hidden_size"], name="word_embeddings")(ids)
         + keras.layers.Embedding(config["max_position_embeddings"], config["hidden_size"],
                                  name="position_embeddings")(positions)
         + keras.layers.Embedding(config["type_vocab_size"], config["hidden_size"],
                                  name="token_type_embeddings")(types))
    x = _layer_norm(config, "embeddings_norm")(x)
    x = encoder(x, ops.cast(inputs["attention_mask"], "float32"), config, rotary=False)
    logits = keras.layers.Dense(2, name="qa_outputs")(x)
    start, end = ops.unstack(logits, 2, axis=-1)
    by_field = {"start_logits": start, "end_logits": end}
    return keras.Model([inputs[t.field] for t in spec.inputs], [by_field[t.field] for t in spec.outputs],
                       name="bert_qa")


def roformer(config: Mapping[str, Any], spec: ModelSpec) -> Any:
    """Inputs with fields token_ids and segment_ids (integer ids, float ones too:
    ByteMLPerf's roformer-tf takes them as float32); output logits [batch, num_labels]
    from the pooled first token. Token id 0 is padding and is masked out."""
    import keras
    from keras import ops

    inputs = _inputs(spec, ("token_ids", "segment_ids"))
    tokens, segments = ops.cast(inputs["token_ids"], "int32"), ops.cast(inputs["segment_ids"], "int32")
    x = (keras.layers.Embedding(config["vocab_size"], config["hidden_size"], name="word_embeddings")(tokens)
         + keras.layers.Embedding(config["type_vocab_size"], config["hidden_size"],
                                  name="token_type_embeddings")(segments))
    x = _layer_norm(config, "embeddings_norm")(x)
    x = encoder(x, ops.cast(ops.not_equal(tokens, 0), "float32"), config, rotary=True)
    pooled = keras.layers.Dense(config["hidden_size"], activation="tanh", name="pooler")(x[:, 0])
    logits = keras.layers.Dense(config["num_labels"], name="classifier")(pooled)
    return keras.Model([inputs[t.field] for t in spec.inputs], [logits], name="roformer")


def _inputs(spec: ModelSpec, fields: tuple[str, ...]) -> dict[str, Any]:
    """One keras.Input per zoo input, by field; exactly ``fields`` must be declared."""
    import keras

    declared = sorted(t.field for t in spec.inputs)
    if declared != sorted(fields):
        raise ValueError(f"{spec.name}: the builder takes inputs with fields {', '.join(fields)}; "
                         f"the zoo entry declares {', '.join(declared)}")
    return {t.field: keras.Input(t.shape[1:], dtype=t.dtype, name=t.name) for t in spec.inputs}


def _layer_norm(config: Mapping[str, Any], name: str) -> Any:
    import keras
    return keras.layers.LayerNormalization(epsilon=config.get("layer_norm_eps", 1e-12), name=name)


def encoder(x: Any, mask: Any, config: Mapping[str, Any], rotary: bool) -> Any:
    """``num_hidden_layers`` post-LayerNorm transformer blocks over x [batch, seq,
    hidden]; ``mask`` [batch, seq] is 1 for tokens to attend to, 0 for padding."""
    import keras
    from keras import ops

    seq = x.shape[1]
    bias = ops.reshape((1.0 - mask) * MASKED_SCORE, (-1, 1, 1, seq))
    tables = _rotary_tables(seq, config["hidden_size"] // config["num_attention_heads"]) if rotary else None
    for i in range(config["num_hidden_layers"]):
        name = f"layer_{i}"
        x = _layer_norm(config, f"{name}_attention_norm")(x + _attention(x, bias, config, name, tables))
        h = _gelu(keras.layers.Dense(config["intermediate_size"], name=f"{name}_intermediate")(x))
        h = keras.layers.Dense(config["hidden_size"], name=f"{name}_output")(h)
        x = _layer_norm(config, f"{name}_output_norm")(x + h)
    return x


def _gelu(x: Any) -> Any:
    """Exact GELU through erf: Keras's own uses erfc, which tf2onnx cannot convert."""
    from keras import ops
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


def _attention(x: Any, bias: Any, config: Mapping[str, Any], name: str,
               tables: tuple[np.ndarray, np.ndarray] | None) -> Any:
    import keras
    from keras import ops

    seq, hidden, heads = x.shape[1], config["hidden_size"], config["num_attention_heads"]
    size = hidden // heads

    def split_heads(t: Any) -> Any:  # [batch, seq, hidden] -> [batch, seq, heads, size]
        return ops.reshape(t, (-1, seq, heads, size))

    q, k, v = (split_heads(keras.layers.Dense(hidden, name=f"{name}_{part}")(x))
               for part in ("query", "key", "value"))
    if tables is not None:
        q, k = _rotate(q, *tables), _rotate(k, *tables)
    scores = ops.matmul(ops.transpose(q, (0, 2, 1, 3)), ops.transpose(k, (0, 2, 3, 1)))
    probs = ops.softmax(scores * (1.0 / math.sqrt(size)) + bias, axis=-1)
    context = ops.transpose(ops.matmul(probs, ops.transpose(v, (0, 2, 1, 3))), (0, 2, 1, 3))
    context = ops.reshape(context, (-1, seq, hidden))
    return keras.layers.Dense(hidden, name=f"{name}_attention_output")(context)


def _rotary_tables(seq: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position * 10000^(-2i/size), shaped [seq, 1, size/2, 1] to
    broadcast over [batch, seq, heads, size/2, 2] channel pairs."""
    angles = np.arange(seq, dtype=np.float64)[:, None] * 10000.0 ** (-np.arange(0, size, 2) / size)
    shape = (seq, 1, size // 2, 1)
    return np.cos(angles).reshape(shape).astype(np.float32), np.sin(angles).reshape(shape).astype(np.float32)


def _rotate(t: Any, cos: np.ndarray, sin: np.ndarray) -> Any:
    """Rotate each channel pair (2i, 2i+1) of t [batch, seq, heads, size] by its angle."""
    from keras import ops

    seq, heads, size = t.shape[1:]
    pairs = ops.reshape(t, (-1, seq, heads, size // 2, 2))
    even, odd = ops.split(pairs, 2, axis=-1)
    rotated = ops.concatenate([even * cos - odd * sin, odd * cos + even * sin], axis=-1)
    return ops.reshape(rotated, (-1, seq, heads, size))
