"""CAIL2019-SCM similar case matching (open_cail2019), scored by top-1.

Each line of the JSON-lines file is a triplet {"A": text, "B": text, "C": text,
"label": "B" or "C"}: which of B and C is the case more similar to A. The model
sees pairs, as a sentence-pair classifier does: every triplet gives two samples,
[CLS] A [SEP] B [SEP] and [CLS] A [SEP] C [SEP] (segment 0 up to the first [SEP],
1 after; the longer text is cut first when a pair does not fit; [PAD] is id 0),
so a sequence holds two of CAIL's long texts, which is why the model takes 1024
tokens. The model's logits [N, 2] score a pair by logit 1 - logit 0 ("similar"
against "not similar"; a single score column is taken as it is), and a triplet
counts as right when the labelled candidate's pair scores strictly higher: a tie
is a miss, so a constant output scores 0, not 50.

Tokens are characters (whitespace dropped), as Chinese BERT-style vocabularies
mostly are: looked up in a vocab.txt when the option `vocab` names one, else in a
vocabulary built from the file's own text (the most frequent characters first,
ties by code point, so every process builds the same one).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xpuperf.datasets.base import ArrayDataset, data_percent_count, model_arrays
from xpuperf.zoo import TensorSpec

NAME = "open_cail2019"
FILE = "test.json"
CANDIDATES = ("B", "C")
PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP)
_LAYOUT = 'one JSON object per line: {"A": text, "B": text, "C": text, "label": "B" or "C"}'


@dataclass(frozen=True)
class Triplet:
    a: str
    b: str
    c: str
    label: str  # "B" or "C"


class Cail2019Dataset(ArrayDataset):
    """Samples 2i and 2i + 1 are triplet i's pairs (A, B) and (A, C)."""

    name = NAME
    primary_metric = "top1"

    def __init__(self, path: Path, triplets: list[Triplet], arrays: dict[str, np.ndarray]):
        self.path = str(path)
        self.triplets = triplets
        super().__init__(arrays)

    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        if "logits" not in outputs:
            raise ValueError(f"{NAME}: evaluate needs output 'logits' ([N, 2] or [N]); got "
                             f"{', '.join(outputs) or 'none'}")
        logits = np.asarray(outputs["logits"], dtype=np.float64)
        columns = logits.shape[1] if logits.ndim == 2 else 1
        if logits.ndim not in (1, 2) or len(logits) != len(self) or columns not in (1, 2):
            raise ValueError(f"{NAME}: output 'logits' has shape {logits.shape}; expected "
                             f"[{len(self)}, 2], [{len(self)}, 1] or [{len(self)}]")
        return {"top1": top1(pair_scores(logits), [t.label for t in self.triplets])}


def load(path: Path | None, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
         options: dict[str, Any]) -> Cail2019Dataset:
    """Read the triplets (a file, or a folder holding test.json) into fields
    'token_ids' and 'segment_ids' (int64 [2 x triplets, seq]).

    Options: vocab (a vocab.txt, one token per line, holding [PAD] [UNK] [CLS]
    [SEP]; else a character vocabulary is built), vocab_size (the most entries to
    build, and the bound every id is checked against), data_percent (the share of
    triplets, first ones first; default 100).
    """
    if "logits" not in {o.field for o in outputs}:
        raise ValueError(f"{NAME}: the model declares no output with field 'logits'; scoring "
                         "needs one ([N, 2] or [N])")
    tokens_spec = next((t for t in inputs if t.field == "token_ids"), None)
    if tokens_spec is None or len(tokens_spec.shape) != 2:
        raise ValueError(f"{NAME}: the model needs an input with field 'token_ids' and shape "
                         "[batch, seq]; its length sets the pair length")
    file = _json_file(path)
    triplets = read_triplets(file)
    vocab_size = options.get("vocab_size")
    vocab = (read_vocab(Path(options["vocab"])) if options.get("vocab")
             else build_vocab([text for t in triplets for text in (t.a, t.b, t.c)], vocab_size))
    # After building: the vocabulary, and so every id, stays the same for any share.
    triplets = triplets[:data_percent_count(len(triplets), options, NAME)]
    fields = encode_pairs(triplets, vocab, tokens_spec.shape[1])
    if vocab_size is not None and fields["token_ids"].max() >= vocab_size:
        raise ValueError(f"{NAME}: token id {int(fields['token_ids'].max())} >= vocab_size {vocab_size}; "
                         "the vocabulary is larger than the model's")
    return Cail2019Dataset(file, triplets, model_arrays(NAME, fields, inputs))


# --------------------------------------------------------------------------- reading

def _json_file(path: Path | None) -> Path:
    if path is None:
        raise ValueError(f"{NAME}: no dataset path; expected CAIL2019-SCM's {FILE}")
    file = path / FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{NAME}: {file} not found; expected CAIL2019-SCM's {FILE} "
                                f"({_LAYOUT}) or a folder holding it")
    return file


def read_triplets(file: Path) -> list[Triplet]:
    triplets = []
    try:
        with file.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    triplet = Triplet(row["A"], row["B"], row["C"], row["label"])
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{NAME}: {file}:{lineno}: {type(e).__name__} {e}; "
                                     f"expected {_LAYOUT}") from None
                if triplet.label not in CANDIDATES or not all(isinstance(x, str) for x in
                                                              (triplet.a, triplet.b, triplet.c)):
                    raise ValueError(f"{NAME}: {file}:{lineno}: label {triplet.label!r} or a text is "
                                     f"malformed; expected {_LAYOUT}")
                triplets.append(triplet)
    except UnicodeDecodeError as e:
        raise ValueError(f"{NAME}: {file}: not UTF-8 text ({e}); expected {_LAYOUT}") from None
    if not triplets:
        raise ValueError(f"{NAME}: {file}: holds no triplets; expected {_LAYOUT}")
    return triplets


# --------------------------------------------------------------------------- tokens

def characters(text: str) -> list[str]:
    return [ch for ch in text if not ch.isspace()]


def build_vocab(texts: Sequence[str], vocab_size: int | None = None) -> dict[str, int]:
    """Special tokens, then the texts' characters by falling count (ties by code
    point), cut to ``vocab_size`` entries: the rarest characters become [UNK]."""
    counts = Counter(ch for text in texts for ch in characters(text))
    ranked = sorted(counts, key=lambda ch: (-counts[ch], ch))
    tokens = [*SPECIAL_TOKENS, *ranked]
    if vocab_size is not None:
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"{NAME}: vocab_size {vocab_size} leaves no room for characters")
        tokens = tokens[:vocab_size]
    return {tok: i for i, tok in enumerate(tokens)}


def read_vocab(file: Path) -> dict[str, int]:
    """A BERT-style vocab.txt: one token per line, its id its line number from 0."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{NAME}: {file}: cannot read it as a vocab.txt ({e})") from None
    vocab = {tok: i for i, tok in reversed(list(enumerate(lines)))}  # a repeated token keeps its first id
    absent = [t for t in SPECIAL_TOKENS if t not in vocab]
    if absent:
        raise ValueError(f"{NAME}: {file}: vocabulary lacks {', '.join(absent)}")
    if vocab[PAD] != 0:
        raise ValueError(f"{NAME}: {file}: [PAD] must be id 0 (the model masks id 0), it is {vocab[PAD]}")
    return vocab


def encode_pairs(triplets: Sequence[Triplet], vocab: dict[str, int], length: int) -> dict[str, np.ndarray]:
    """Fields 'token_ids' and 'segment_ids' (int64 [2 x triplets, length]): rows
    2i and 2i + 1 are [CLS] A [SEP] B [SEP] and [CLS] A [SEP] C [SEP], padded with 0."""
    if length < 5:
        raise ValueError(f"{NAME}: a pair needs 3 special tokens and some text; length {length} is too short")
    unk = vocab[UNK]
    tokens = np.zeros((2 * len(triplets), length), dtype=np.int64)
    segments = np.zeros_like(tokens)
    for i, t in enumerate(triplets):
        a = [vocab.get(ch, unk) for ch in characters(t.a)]
        for j, other in enumerate((t.b, t.c)):
            first, second = _truncate(a, [vocab.get(ch, unk) for ch in characters(other)], length - 3)
            ids = [vocab[CLS], *first, vocab[SEP], *second, vocab[SEP]]
            tokens[2 * i + j, :len(ids)] = ids
            segments[2 * i + j, len(first) + 2:len(ids)] = 1
    return {"token_ids": tokens, "segment_ids": segments}


def _truncate(first: list[int], second: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Cut the longer of the two (from its end) until both fit ``budget`` together."""
    keep_first = min(len(first), max(budget - len(second), budget // 2))
    return first[:keep_first], second[:budget - keep_first]


# --------------------------------------------------------------------------- metric

def pair_scores(logits: np.ndarray) -> np.ndarray:
    """One similarity score per pair: logit 1 - logit 0, or the single score column."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2 and logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    return logits.reshape(-1)


def top1(scores: np.ndarray, labels: Sequence[str]) -> float:
    """Percent of triplets whose labelled candidate's pair scores strictly higher
    (scores[2i] is (A, B)'s, scores[2i + 1] (A, C)'s); NaN counts as a miss."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 2)
    if len(scores) != len(labels):
        raise ValueError(f"{NAME}: {2 * len(scores)} pair scores for {len(labels)} triplets")
    pick = np.array([CANDIDATES.index(label) for label in labels])
    rows = np.arange(len(scores))
    return 100.0 * float(np.mean(scores[rows, pick] > scores[rows, 1 - pick]))
