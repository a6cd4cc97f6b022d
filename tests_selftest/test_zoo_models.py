"""The torch / TensorFlow zoo's datasets (open_cifar, open_cail2019), the
data_percent option of every loader, and the hand-written Keras encoders against
transformers' reference implementations (tiny sizes only)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from xpuperf import datasets
from xpuperf.datasets import cail2019, cifar, criteo, fake, imagenet, squad
from xpuperf.zoo import TensorSpec, parse_zoo

CIFAR_DIR = datasets.SAMPLES / "open_cifar"
CAIL_FILE = datasets.SAMPLES / "open_cail2019" / "test.json"
SEQ = 96


def _spec(name: str, shape: tuple[int, ...], dtype: str = "float32", field: str | None = None) -> TensorSpec:
    return TensorSpec(name=name, shape=shape, dtype=dtype, field=field or name)


def _cifar_specs(shape: tuple[int, ...]) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    return (_spec("pixel_values", shape, field="image"),), (_spec("output", (), field="scores"),)


CAIL_INPUTS = (_spec("input_segment", (-1, SEQ), field="segment_ids"),
               _spec("input_token", (-1, SEQ), field="token_ids"))
CAIL_OUTPUTS = (_spec("logits", (-1, 2)),)


# --------------------------------------------------------------------------- CIFAR-100

def test_cifar_sample_in_both_layouts_and_sizes():
    nchw = cifar.load(CIFAR_DIR, *_cifar_specs((-1, 3, 32, 32)), {})
    nhwc = cifar.load(CIFAR_DIR / "test.bin", *_cifar_specs((-1, 48, 48, 3)), {})
    a, b = nchw.feeds([0, 31])["pixel_values"], nhwc.feeds([0, 31])["pixel_values"]
    assert a.shape == (2, 3, 32, 32) and b.shape == (2, 48, 48, 3) and a.dtype == np.float32
    assert len(nchw) == 32 and nchw.primary_metric == "top1"
    assert nchw.labels.min() >= 0 and nchw.labels.max() < 100
    assert np.array_equal(nchw.coarse_labels, nchw.labels // 5)  # how the sample was made


def test_cifar_reads_planes_into_pixels(tmp_path):
    """A record whose red plane is 255 and green plane counts 0..255 four times."""
    green = np.tile(np.arange(256, dtype=np.uint8), 4)
    record = bytes([7, 42]) + bytes([255] * 1024) + green.tobytes() + bytes(1024)
    (tmp_path / "test.bin").write_bytes(record * 2)
    coarse, fine, images = cifar.read_records(tmp_path / "test.bin")
    assert coarse.tolist() == [7, 7] and fine.tolist() == [42, 42] and images.shape == (2, 32, 32, 3)
    assert (images[..., 0] == 255).all() and (images[..., 2] == 0).all()
    assert images[0, 1, 0, 1] == 32  # row 1, column 0 is byte 32 of the green plane
    data = cifar.load(tmp_path, *_cifar_specs((-1, 32, 32, 3)), {"mean": [0, 0, 0], "std": [1, 1, 1]})
    assert np.allclose(data.feeds([0])["pixel_values"][0, 1, 0], [1.0, 32 / 255, 0.0])


def test_cifar_top1_on_hand_made_scores():
    data = cifar.load(CIFAR_DIR, *_cifar_specs((-1, 3, 32, 32)), {})
    scores = np.zeros((32, 100), np.float32)
    scores[np.arange(32), data.labels] = 1.0
    assert data.evaluate({"scores": scores}) == {"top1": 100.0, "top5": 100.0}
    assert data.evaluate({"scores": np.roll(scores, 1, axis=1)})["top1"] == 0.0
    assert data.evaluate({"scores": np.zeros((32, 100), np.float32)})["top1"] == 0.0  # ties are misses
    with pytest.raises(ValueError, match=r"expected \[32, 100\]"):
        data.evaluate({"scores": scores[:, :10]})


def test_cifar_errors_name_the_file_and_format(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"test\.bin not found; expected the CIFAR-100 binary"):
        cifar.load(tmp_path, *_cifar_specs((-1, 3, 32, 32)), {})
    (tmp_path / "test.bin").write_bytes(bytes(3075))
    with pytest.raises(ValueError, match="not a whole number of records"):
        cifar.load(tmp_path, *_cifar_specs((-1, 3, 32, 32)), {})
    (tmp_path / "test.bin").write_bytes(bytes([0, 100]) + bytes(3072))
    with pytest.raises(ValueError, match="label is out of range"):
        cifar.load(tmp_path, *_cifar_specs((-1, 3, 32, 32)), {})
    with pytest.raises(ValueError, match="'mean' must be three numbers"):
        cifar.load(CIFAR_DIR, *_cifar_specs((-1, 3, 32, 32)), {"mean": [0.5]})


# --------------------------------------------------------------------------- CAIL2019-SCM

@pytest.fixture(scope="module")
def cail() -> cail2019.Cail2019Dataset:
    return cail2019.load(CAIL_FILE, CAIL_INPUTS, CAIL_OUTPUTS, {"vocab_size": 1000})


def test_cail2019_pairs_a_with_each_candidate(cail):
    vocab = cail2019.build_vocab([x for t in cail.triplets for x in (t.a, t.b, t.c)])
    batch = cail.feeds([0, 1])
    tokens, segments = batch["input_token"], batch["input_segment"]
    assert len(cail) == 64 and tokens.shape == (2, SEQ) and tokens.dtype == np.float32
    t = cail.triplets[0]
    for row, other in zip(tokens.astype(int), (t.b, t.c)):
        first, second = cail2019._truncate(cail2019.characters(t.a), cail2019.characters(other), SEQ - 3)
        expected = ["[CLS]", *first, "[SEP]", *second, "[SEP]"]
        assert row[:len(expected)].tolist() == [vocab[c] for c in expected]
        assert (row[len(expected):] == 0).all()  # [PAD]
    # Segment 1 runs from after the first [SEP] to the last one.
    sep = np.flatnonzero(tokens[0] == vocab["[SEP]"])
    assert segments[0].tolist() == [0] * (sep[0] + 1) + [1] * (sep[1] - sep[0]) + [0] * (SEQ - sep[1] - 1)


def test_cail2019_vocabulary_is_by_count_then_code_point():
    vocab = cail2019.build_vocab(["b a c", "ab"], vocab_size=6)
    assert vocab == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "b": 5}  # c is cut: [UNK]
    fields = cail2019.encode_pairs([cail2019.Triplet("ac", "b", "c", "B")], vocab, 8)
    assert fields["token_ids"].tolist() == [[2, 4, 1, 3, 5, 3, 0, 0], [2, 4, 1, 3, 1, 3, 0, 0]]


def test_cail2019_truncates_the_longer_text_first():
    a, b = list(range(10)), list(range(3))
    assert cail2019._truncate(a, b, 8) == (a[:5], b)
    assert cail2019._truncate(b, a, 8) == (b, a[:5])
    assert cail2019._truncate(a, a, 8) == (a[:4], a[:4])
    assert cail2019._truncate(b, b, 8) == (b, b)


def test_cail2019_top1_on_hand_made_logits(cail):
    labels = np.array([t.label for t in cail.triplets])
    right = np.where(labels == "B", 1.0, -1.0)  # (A, B)'s score minus (A, C)'s
    scores = np.stack([right, -right], axis=1).reshape(-1)
    logits = np.stack([np.zeros_like(scores), scores], axis=1)
    assert cail.evaluate({"logits": logits}) == {"top1": 100.0}
    assert cail.evaluate({"logits": -logits}) == {"top1": 0.0}
    assert cail.evaluate({"logits": scores[:, None]}) == {"top1": 100.0}  # one score column
    assert cail.evaluate({"logits": np.ones((64, 2))}) == {"top1": 0.0}  # ties are misses
    assert cail2019.top1(np.array([np.nan, 0.0, 1.0, 0.0]), ["B", "B"]) == 50.0
    with pytest.raises(ValueError, match=r"expected \[64, 2\]"):
        cail.evaluate({"logits": np.zeros((64, 3))})


def test_cail2019_vocab_file_and_bounds(tmp_path, cail):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n原\n告\n")
    data = cail2019.load(CAIL_FILE, CAIL_INPUTS, CAIL_OUTPUTS, {"vocab": str(tmp_path / "vocab.txt")})
    assert data.feeds([0])["input_token"][0, :3].tolist() == [2, 4, 5]  # every line opens with 原告
    assert set(np.unique(data.feeds(range(64))["input_token"])) <= {0, 1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match=r"token id \d+ >= vocab_size 5"):
        cail2019.load(CAIL_FILE, CAIL_INPUTS, CAIL_OUTPUTS,
                      {"vocab": str(tmp_path / "vocab.txt"), "vocab_size": 5})
    assert cail.feeds(range(64))["input_token"].max() < 1000


def test_cail2019_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"test\.json not found; expected CAIL2019-SCM"):
        cail2019.load(tmp_path, CAIL_INPUTS, CAIL_OUTPUTS, {})
    (tmp_path / "test.json").write_text(json.dumps({"A": "x", "B": "y", "C": "z", "label": "B"}) + "\n{\n")
    with pytest.raises(ValueError, match=r"test\.json:2: JSONDecodeError"):
        cail2019.load(tmp_path, CAIL_INPUTS, CAIL_OUTPUTS, {})
    (tmp_path / "test.json").write_text(json.dumps({"A": "x", "B": "y", "C": "z", "label": "A"}) + "\n")
    with pytest.raises(ValueError, match=r"test\.json:1: label 'A'"):
        cail2019.load(tmp_path, CAIL_INPUTS, CAIL_OUTPUTS, {})


# --------------------------------------------------------------------------- data_percent

SQUAD_IO = ((_spec("input_ids", (-1, 64), "int64"),),
            (_spec("start_logits", (-1, 64)), _spec("end_logits", (-1, 64))))
IMAGENET_IO = ((_spec("pixel_values", (-1, 3, 32, 32), field="image"),),
               (_spec("softmax", (), field="scores"),))
CRITEO_IO = ((_spec("categorical", (-1, 26), "int64"), _spec("numeric", (-1, 13))),
             (_spec("probabilities", (-1, 1)),))
# loader, path, (inputs, outputs), fixed options, (percent, records it keeps), records of a dataset
LOADERS = {
    "squad": (squad, datasets.SAMPLES / "open_squad" / "dev-v1.1.json", SQUAD_IO, {}, (50, 22),
              lambda d: len(d.examples)),
    "imagenet": (imagenet, datasets.SAMPLES / "open_imagenet", IMAGENET_IO, {}, (25, 8), len),
    "criteo": (criteo, datasets.SAMPLES / "open_criteo_kaggle" / "train.txt", CRITEO_IO, {"hash_buckets": 50},
               (10, 6), len),
    "fake": (fake, None, CRITEO_IO, {"samples": 10}, (35, 3), len),
    "cifar": (cifar, CIFAR_DIR, _cifar_specs((-1, 3, 32, 32)), {}, (50, 16), len),
    "cail2019": (cail2019, CAIL_FILE, (CAIL_INPUTS, CAIL_OUTPUTS), {}, (1, 1), lambda d: len(d.triplets)),
}


@pytest.mark.parametrize("name", LOADERS)
def test_data_percent_keeps_the_first_records(name):
    module, path, (inputs, outputs), options, (percent, expected), records = LOADERS[name]
    whole = module.load(path, inputs, outputs, options)
    part = module.load(path, inputs, outputs, {**options, "data_percent": percent})
    assert records(part) == expected
    n = len(part)
    for key, value in part.feeds(range(n)).items():
        assert np.array_equal(value, whole.feeds(range(n))[key]), key


@pytest.mark.parametrize("bad", [0, 101, "50", True, None])
def test_data_percent_outside_0_to_100_is_an_error(bad):
    with pytest.raises(ValueError, match=r"open_cifar: option 'data_percent' must be a number in \(0, 100\]"):
        cifar.load(CIFAR_DIR, *_cifar_specs((-1, 3, 32, 32)), {"data_percent": bad})


# --------------------------------------------------------------------------- Keras encoders

TINY = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 32, "type_vocab_size": 2}
KERAS_ZOO = """
datasets: {fake: {id: fake, format: fake}}
defaults: {tolerances: {fp32: {max_abs: 1.0e-3}}}
models:
  bert:
    {family: bert, framework: tf, domain: nlp, builder: keras_bert_qa, dataset: fake, batch_sizes: [1],
     inputs: [{name: input_ids, shape: [batch, 12], dtype: int32},
              {name: input_mask, shape: [batch, 12], dtype: int32, field: attention_mask},
              {name: segment_ids, shape: [batch, 12], dtype: int32, field: token_type_ids}],
     outputs: [start_logits, end_logits]}
  roformer:
    {family: roformer, framework: tf, domain: nlp, builder: keras_roformer, dataset: fake, batch_sizes: [1],
     inputs: [{name: input_segment, shape: [batch, 12], dtype: float32, field: segment_ids},
              {name: input_token, shape: [batch, 12], dtype: float32, field: token_ids}],
     outputs: [logits]}
"""


def _copy_encoder(keras_model, embeddings, layers) -> None:
    """transformers' BERT-family weights into keras_transformer's layers, by name."""
    def put(name: str, module, transpose: bool = False) -> None:
        weight = module.weight.detach().numpy()
        weight = weight.T if transpose else weight
        keras_model.get_layer(name).set_weights(
            [weight, module.bias.detach().numpy()] if hasattr(module, "bias") else [weight])

    put("word_embeddings", embeddings.word_embeddings)
    put("token_type_embeddings", embeddings.token_type_embeddings)
    put("embeddings_norm", embeddings.LayerNorm)
    for i, layer in enumerate(layers):
        attention = layer.attention
        for part in ("query", "key", "value"):
            put(f"layer_{i}_{part}", getattr(attention.self, part), transpose=True)
        put(f"layer_{i}_attention_output", attention.output.dense, transpose=True)
        put(f"layer_{i}_attention_norm", attention.output.LayerNorm)
        put(f"layer_{i}_intermediate", layer.intermediate.dense, transpose=True)
        put(f"layer_{i}_output", layer.output.dense, transpose=True)
        put(f"layer_{i}_output_norm", layer.output.LayerNorm)


def test_keras_encoders_match_transformers_with_the_same_weights():
    """bert_qa against BertForQuestionAnswering, roformer's encoder (rotary
    positions) against RoFormerModel: the hand-written graphs compute the same."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    keras = pytest.importorskip("keras")
    from xpuperf.models import keras_transformer

    bert_spec, roformer_spec = parse_zoo(KERAS_ZOO).models
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 50, (2, 12))
    ids[1, 8:] = 0  # padding
    mask, types = (ids != 0).astype(np.int64), np.repeat([[0] * 5 + [1] * 7], 2, axis=0)
    torch.manual_seed(0)

    config = transformers.BertConfig(**TINY, max_position_embeddings=16)
    hf = transformers.BertForQuestionAnswering(config).eval()
    ours = keras_transformer.bert_qa({**TINY, "max_position_embeddings": 16}, bert_spec)
    _copy_encoder(ours, hf.bert.embeddings, hf.bert.encoder.layer)
    positions = hf.bert.embeddings.position_embeddings.weight.detach().numpy()
    ours.get_layer("position_embeddings").set_weights([positions])
    head = hf.qa_outputs
    ours.get_layer("qa_outputs").set_weights([head.weight.detach().numpy().T, head.bias.detach().numpy()])
    with torch.no_grad():
        expected = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                      token_type_ids=torch.tensor(types))
    start, end = ours({"input_ids": ids.astype(np.int32), "input_mask": mask.astype(np.int32),
                       "segment_ids": types.astype(np.int32)})
    real = mask == 1  # padded positions' own logits are not compared: HF masks with -inf, BERT with -10000
    assert np.allclose(np.asarray(start)[real], expected.start_logits.numpy()[real], atol=1e-5)
    assert np.allclose(np.asarray(end)[real], expected.end_logits.numpy()[real], atol=1e-5)

    config = transformers.RoFormerConfig(**TINY, embedding_size=16, max_position_embeddings=16, pad_token_id=0)
    hf = transformers.RoFormerModel(config).eval()
    ours = keras_transformer.roformer({**TINY, "num_labels": 2}, roformer_spec)
    _copy_encoder(ours, hf.embeddings, hf.encoder.layer)
    with torch.no_grad():
        expected = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                      token_type_ids=torch.tensor(types)).last_hidden_state.numpy()
    # Every token's encoding: the first token's alone barely depends on positions.
    last = ours.get_layer(f"layer_{TINY['num_hidden_layers'] - 1}_output_norm")
    encoder = keras.Model(ours.inputs, last.output)
    got = encoder({"input_segment": types.astype(np.float32), "input_token": ids.astype(np.float32)})
    assert np.allclose(np.asarray(got)[real], expected[real], atol=1e-5)
