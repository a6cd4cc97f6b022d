"""Each dataset loader on its shipped sample, shaped by real TensorSpecs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xpuperf import datasets
from xpuperf.datasets import cifar, criteo, fake, imagenet, squad
from xpuperf.zoo import DatasetSpec, TensorSpec

SQUAD_FILE = datasets.SAMPLES / "open_squad" / "dev-v1.1.json"
IMAGENET_DIR = datasets.SAMPLES / "open_imagenet"
CRITEO_FILE = datasets.SAMPLES / "open_criteo_kaggle" / "train.txt"
SEQ = 64


def _spec(name: str, shape: tuple[int, ...], dtype: str, field: str | None = None,
          range: tuple[int, int] | None = None, batched: bool = True) -> TensorSpec:
    return TensorSpec(name=name, shape=shape, dtype=dtype, field=field or name, range=range,
                      batched=batched)


# --------------------------------------------------------------------------- SQuAD

SQUAD_INPUTS = (_spec("input_ids", (-1, SEQ), "int64"),
                _spec("input_mask", (-1, SEQ), "int32", field="attention_mask"),
                _spec("token_type_ids", (-1, SEQ), "int64"))
SQUAD_OUTPUTS = (_spec("start_logits", (-1, SEQ), "float32"), _spec("end_logits", (-1, SEQ), "float32"))


@pytest.fixture(scope="module")
def squad_data() -> squad.SquadDataset:
    return squad.load(SQUAD_FILE, SQUAD_INPUTS, SQUAD_OUTPUTS, {})


def test_squad_feeds_by_model_name_and_dtype(squad_data):
    batch = squad_data.feeds([0, 2, 5])
    assert set(batch) == {"input_ids", "input_mask", "token_type_ids"}
    assert batch["input_ids"].shape == (3, SEQ) and batch["input_ids"].dtype == np.int64
    assert batch["input_mask"].dtype == np.int32
    assert (batch["input_mask"] == (batch["input_ids"] != 0)).all()  # [PAD] is id 0
    assert squad_data.primary_metric == "f1" and squad_data.path == str(SQUAD_FILE)


def test_squad_long_contexts_make_several_features(squad_data):
    assert len(squad_data.examples) == 44
    assert len(squad_data) > len(squad_data.examples)
    assert np.array_equal(np.unique(squad_data.feature_example), np.arange(44))


def test_squad_scores_100_on_one_hot_gold_spans(squad_data):
    """Postprocessing and metric end to end: logits at the first gold answer give F1 100."""
    raw = json.loads(SQUAD_FILE.read_text())
    gold = {qa["id"]: (qa["answers"][0]["answer_start"], len(qa["answers"][0]["text"]))
            for article in raw["data"] for p in article["paragraphs"] for qa in p["qas"]}
    start = np.zeros((len(squad_data), SEQ), np.float32)
    end = np.zeros_like(start)
    for f, ex in enumerate(squad_data.feature_example):
        first, length = gold[squad_data.examples[ex].id]
        last = first + length
        off = squad_data.offsets[f]
        s = np.flatnonzero((off[:, 0] <= first) & (first < off[:, 1]))
        e = np.flatnonzero((off[:, 0] < last) & (last <= off[:, 1]))
        if len(s) and len(e):  # the answer lies whole in this window
            start[f, s[0]] = end[f, e[0]] = 1.0
    assert squad_data.evaluate({"start_logits": start, "end_logits": end}) == {
        "f1": pytest.approx(100.0), "exact_match": pytest.approx(100.0)}


def test_squad_trained_vocabulary_is_the_same_in_every_process():
    texts = squad.training_texts(squad.read_examples(SQUAD_FILE))
    here = squad.train_tokenizer(texts, 300).get_vocab()
    assert here == squad.train_tokenizer(texts, 300).get_vocab()
    code = ("import json, sys; from xpuperf.datasets import squad; "
            "t = squad.training_texts(squad.read_examples(squad.Path(sys.argv[1]))); "
            "print(json.dumps(squad.train_tokenizer(t, 300).get_vocab()))")
    out = subprocess.run([sys.executable, "-c", code, str(SQUAD_FILE)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).parents[1]).stdout
    assert json.loads(out) == here


@pytest.fixture(scope="module")
def vocab_txt(tmp_path_factory) -> Path:
    """The vocabulary load() trains by default, written as a BERT vocab.txt."""
    vocab = squad.train_tokenizer(squad.training_texts(squad.read_examples(SQUAD_FILE)), 1000).get_vocab()
    file = tmp_path_factory.mktemp("tokenizer") / "vocab.txt"
    file.write_text("".join(t + "\n" for t in sorted(vocab, key=vocab.get)))
    return file


def test_squad_local_vocab_txt(squad_data, vocab_txt):
    from_file = squad.load(SQUAD_FILE, SQUAD_INPUTS, SQUAD_OUTPUTS, {"tokenizer": str(vocab_txt)})
    assert np.array_equal(from_file.feeds(range(len(from_file)))["input_ids"],
                          squad_data.feeds(range(len(squad_data)))["input_ids"])


def test_squad_ids_beyond_vocab_size_are_an_error(vocab_txt):
    with pytest.raises(ValueError, match=r"token id \d+ >= vocab_size 100"):
        squad.load(SQUAD_FILE, SQUAD_INPUTS, SQUAD_OUTPUTS, {"tokenizer": str(vocab_txt), "vocab_size": 100})


def test_squad_doc_stride_must_leave_room_for_the_context():
    with pytest.raises(ValueError, match=r"doc_stride \(60\) must be smaller"):
        squad.load(SQUAD_FILE, SQUAD_INPUTS, SQUAD_OUTPUTS, {"doc_stride": 60})


def test_squad_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.json not found; expected a SQuAD"):
        squad.load(tmp_path / "nothere.json", SQUAD_INPUTS, SQUAD_OUTPUTS, {})
    (tmp_path / "dev-v1.1.json").write_text('{"data": [{"paragraphs": [{"qas": []}]}]}')
    with pytest.raises(ValueError, match=r"dev-v1\.1\.json: not SQuAD v1\.1 \(missing key 'context'\)"):
        squad.load(tmp_path, SQUAD_INPUTS, SQUAD_OUTPUTS, {})


# --------------------------------------------------------------------------- ImageNet

def _image_specs(shape: tuple[int, ...]) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    return (_spec("pixel_values", shape, "float32", field="image"),), (_spec("softmax", (), "float32", "scores"),)


def test_imagenet_nchw_and_nhwc_hold_the_same_pixels():
    nchw = imagenet.load(IMAGENET_DIR, *_image_specs((-1, 3, 56, 56)), {})
    nhwc = imagenet.load(IMAGENET_DIR, *_image_specs((-1, 56, 56, 3)), {})
    a, b = nchw.feeds([0, 31])["pixel_values"], nhwc.feeds([0, 31])["pixel_values"]
    assert a.shape == (2, 3, 56, 56) and b.shape == (2, 56, 56, 3) and a.dtype == np.float32
    assert np.array_equal(a, b.transpose(0, 3, 1, 2))
    assert len(nchw) == 32 and nchw.path == str(IMAGENET_DIR)


def test_imagenet_preprocess_normalizes_a_flat_colour(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), (255, 128, 0)).save(tmp_path / "flat.png")
    pixels = imagenet.preprocess(tmp_path / "flat.png", 24)
    expected = (np.array([255, 128, 0]) / 255 - imagenet.MEAN) / imagenet.STD
    assert pixels.shape == (24, 24, 3)
    assert np.allclose(pixels, expected, atol=1e-5)


def test_imagenet_scores_with_label_offset():
    data = imagenet.load(IMAGENET_DIR, *_image_specs((-1, 3, 32, 32)), {"label_offset": 1})
    scores = np.zeros((len(data), 1001), np.float32)
    scores[np.arange(len(data)), data.labels + 1] = 1.0
    assert data.evaluate({"scores": scores}) == {"top1": 100.0, "top5": 100.0}
    assert data.evaluate({"scores": np.roll(scores, 1, axis=1)})["top1"] == 0.0


def test_imagenet_errors_name_the_file_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"val_map\.txt not found; expected a folder with val_map\.txt"):
        imagenet.load(tmp_path, *_image_specs((-1, 3, 32, 32)), {})
    (tmp_path / "val_map.txt").write_text("missing.JPEG 3\n")
    with pytest.raises(ValueError, match=r"missing\.JPEG: cannot read the image"):
        imagenet.load(tmp_path, *_image_specs((-1, 3, 32, 32)), {})
    with pytest.raises(ValueError, match="NCHW"):
        imagenet.load(IMAGENET_DIR, *_image_specs((-1, 4, 32, 32)), {})


# --------------------------------------------------------------------------- Criteo

CRITEO_INPUTS = (_spec("categorical", (-1, 26), "int64"), _spec("numeric", (-1, 13), "float32"))
CRITEO_OUTPUTS = (_spec("probabilities", (-1, 1), "float32"),)


def test_criteo_sample_shapes_and_ranges():
    data = criteo.load(CRITEO_FILE, CRITEO_INPUTS, CRITEO_OUTPUTS, {"hash_buckets": 97})
    batch = data.feeds(range(len(data)))
    assert len(data) == 64 and data.primary_metric == "accuracy"
    assert batch["categorical"].shape == (64, 26) and batch["categorical"].dtype == np.int64
    assert batch["numeric"].shape == (64, 13) and batch["numeric"].dtype == np.float32
    assert batch["categorical"].min() >= 0 and batch["categorical"].max() < 97
    assert batch["numeric"].min() >= 0
    perfect = data.evaluate({"probabilities": data.labels[:, None].astype(np.float32)})
    assert perfect == {"accuracy": 100.0, "auc": 100.0}


def test_criteo_parses_one_line_by_hand(tmp_path):
    numeric = ["0", "-5", "", "3"] + ["1"] * 9
    categorical = ["0000000a", "", "ffffffff"] + ["00000001"] * 23
    (tmp_path / "train.txt").write_text("\t".join(["1", *numeric, *categorical]) + "\n")
    data = criteo.load(tmp_path, CRITEO_INPUTS, CRITEO_OUTPUTS, {"hash_buckets": 7})
    batch = data.feeds([0])
    assert np.allclose(batch["numeric"][0, :4], [0, 0, 0, np.log(4)])
    assert batch["categorical"][0, :4].tolist() == [10 % 7, 0, 0xFFFFFFFF % 7, 1]


def test_criteo_max_rows_and_required_option():
    assert len(criteo.load(CRITEO_FILE, CRITEO_INPUTS, CRITEO_OUTPUTS, {"hash_buckets": 5, "max_rows": 10})) == 10
    with pytest.raises(ValueError, match="'hash_buckets'"):
        criteo.load(CRITEO_FILE, CRITEO_INPUTS, CRITEO_OUTPUTS, {})


def test_criteo_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.txt not found; expected the Criteo Kaggle"):
        criteo.load(tmp_path, CRITEO_INPUTS, CRITEO_OUTPUTS, {"hash_buckets": 5})
    (tmp_path / "train.txt").write_text("1\t2\t3\n")
    with pytest.raises(ValueError, match=r"train\.txt:1: expected 40 tab-separated fields"):
        criteo.load(tmp_path, CRITEO_INPUTS, CRITEO_OUTPUTS, {"hash_buckets": 5})


# --------------------------------------------------------------------------- CIFAR-100 prompts

CIFAR_DIR = datasets.SAMPLES / "open_cifar"
CIFAR_OUTPUTS = (_spec("output", (), "float32", "scores"),)


def _zero_shot_inputs(length: int, batched: bool = False) -> tuple[TensorSpec, ...]:
    """videobert's: images, and one prompt per class with no batch axis."""
    return (_spec("image", (-1, 3, 32, 32), "float32"),
            _spec("text", (100, length) if not batched else (-1, 100, length), "int64", batched=batched))


@pytest.fixture(scope="module")
def prompt_vocab(tmp_path_factory) -> Path:
    """A BERT vocab.txt with the prompt's words and a few class names; the others are [UNK]."""
    file = tmp_path_factory.mktemp("prompts") / "vocab.txt"
    file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "photo", "of", "apple", "_", "fish",
                               "worm"]) + "\n")
    return file


def test_cifar_text_is_one_prompt_per_class_for_every_batch(prompt_vocab):
    data = cifar.load(CIFAR_DIR, _zero_shot_inputs(10), CIFAR_OUTPUTS, {"tokenizer": str(prompt_vocab)})
    names = cifar.class_names(CIFAR_DIR / cifar.NAMES_FILE)
    assert (names[0], names[1], names[99]) == ("apple", "aquarium_fish", "worm")
    two, five = data.feeds([0, 1]), data.feeds(range(5))
    assert two["image"].shape == (2, 3, 32, 32) and five["image"].shape == (5, 3, 32, 32)
    text = two["text"]
    assert text.shape == (100, 10) and text.dtype == np.int64 and len(data) == 32
    assert np.array_equal(text, five["text"])  # the same prompts, whatever the batch
    # [CLS] a photo of a {name} [SEP], then [PAD]: "aquarium" is unknown, "_" and "fish" are not.
    assert text[0].tolist() == [2, 4, 5, 6, 4, 7, 3, 0, 0, 0]
    assert text[1].tolist() == [2, 4, 5, 6, 4, 1, 8, 9, 3, 0]
    assert text[99].tolist() == [2, 4, 5, 6, 4, 10, 3, 0, 0, 0]
    cut = cifar.load(CIFAR_DIR, _zero_shot_inputs(6), CIFAR_OUTPUTS,
                     {"tokenizer": str(prompt_vocab), "prompt": "{}"})
    assert cut.feeds([0])["text"][1].tolist() == [2, 1, 8, 9, 3, 0]  # the class name alone


def test_cifar_top1_on_hand_made_logits(prompt_vocab):
    data = cifar.load(CIFAR_DIR, _zero_shot_inputs(10), CIFAR_OUTPUTS, {"tokenizer": str(prompt_vocab)})
    logits = np.random.default_rng(0).standard_normal((32, 100)).astype(np.float32)
    right = logits.copy()
    right[np.arange(32), data.labels] = logits.max() + 1  # each image's own class wins
    assert data.evaluate({"scores": right})["top1"] == 100.0
    wrong = right.copy()
    wrong[:8, data.labels[:8]] = logits.min() - 1  # a quarter of the images lose their class
    assert data.evaluate({"scores": wrong})["top1"] == 75.0


def test_cifar_text_errors_name_what_is_missing(prompt_vocab, tmp_path):
    options = {"tokenizer": str(prompt_vocab)}
    with pytest.raises(ValueError, match=r"input 'text' \(field 'text'\) must have shape \[100, length\] "
                                         r"and batched: false .*; it has \[-1, 100, 10\], batched: true"):
        cifar.load(CIFAR_DIR, _zero_shot_inputs(10, batched=True), CIFAR_OUTPUTS, options)
    with pytest.raises(ValueError, match="needs option 'tokenizer'"):
        cifar.load(CIFAR_DIR, _zero_shot_inputs(10), CIFAR_OUTPUTS, {})
    with pytest.raises(ValueError, match=r"option 'prompt' must be a string with \{\}"):
        cifar.load(CIFAR_DIR, _zero_shot_inputs(10), CIFAR_OUTPUTS, {**options, "prompt": "a photo"})
    with pytest.raises(ValueError, match=r"token id 10 >= vocab_size 10"):
        cifar.load(CIFAR_DIR, _zero_shot_inputs(10), CIFAR_OUTPUTS, {**options, "vocab_size": 10})
    with pytest.raises(FileNotFoundError, match="tokenizer 'package:nopackage/vocab.txt': Python package 'nopackage' is not"):
        cifar.load(CIFAR_DIR, _zero_shot_inputs(10), CIFAR_OUTPUTS, {"tokenizer": "package:nopackage/vocab.txt"})
    (tmp_path / "test.bin").write_bytes((CIFAR_DIR / "test.bin").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"fine_label_names\.txt not found; the prompts need"):
        cifar.load(tmp_path, _zero_shot_inputs(10), CIFAR_OUTPUTS, options)
    (tmp_path / "fine_label_names.txt").write_text("apple\npear\n")
    with pytest.raises(ValueError, match=r"fine_label_names\.txt: 2 class names; expected 100"):
        cifar.load(tmp_path, _zero_shot_inputs(10), CIFAR_OUTPUTS, options)


# --------------------------------------------------------------------------- fake and resolution

FAKE_INPUTS = (_spec("ids", (-1, 8), "int32", range=(5, 9)), _spec("mask", (-1, 8), "bool"),
               _spec("x", (-1, 2, 3), "float16"), _spec("bits", (-1, 4), "int64"))


def test_fake_follows_the_specs_and_the_seed():
    data = fake.load(None, FAKE_INPUTS, (), {"samples": 10, "seed": 3})
    batch = data.feeds(range(10))
    assert len(data) == 10 and data.primary_metric is None and data.evaluate({}) == {}
    assert batch["ids"].dtype == np.int32 and batch["ids"].min() >= 5 and batch["ids"].max() < 9
    assert batch["mask"].dtype == np.bool_ and batch["x"].shape == (10, 2, 3) and batch["x"].dtype == np.float16
    assert set(np.unique(batch["bits"])) <= {0, 1}
    again = fake.load(None, FAKE_INPUTS, (), {"samples": 10, "seed": 3}).feeds(range(10))
    other = fake.load(None, FAKE_INPUTS, (), {"samples": 10, "seed": 4}).feeds(range(10))
    assert all(np.array_equal(batch[k], again[k]) for k in batch)
    assert not np.array_equal(batch["x"], other["x"])


def test_fake_input_without_a_batch_axis_goes_whole_with_every_batch():
    inputs = (_spec("ids", (-1, 8), "int64"), _spec("table", (5, 3), "float32", batched=False))
    data = fake.load(None, inputs, (), {"samples": 10, "data_percent": 50})
    one, three = data.feeds([0]), data.feeds([0, 1, 2])
    assert len(data) == 5 and one["ids"].shape == (1, 8) and three["ids"].shape == (3, 8)
    assert one["table"].shape == (5, 3) and np.array_equal(one["table"], three["table"])


def test_load_falls_back_to_the_shipped_sample(tmp_path):
    spec = DatasetSpec(name="open_squad", id="squad", format="squad", path="open_squad/dev-v1.1.json",
                       sample="open_squad/dev-v1.1.json")
    data = datasets.load(spec, tmp_path, SQUAD_INPUTS, SQUAD_OUTPUTS, {})
    assert data.source == "sample" and data.path == str(SQUAD_FILE)
