"""SQuAD v1.1 (open_squad): question answering, scored by F1 and exact match.

Features are made the way Hugging Face's run_qa does it (question first, context
second, only the context truncated, overlapping windows of the context), so that a
model fine-tuned there scores here what it scores there. The metric is the official
SQuAD v1.1 evaluation script, rewritten as plain functions.
"""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from xpuperf.datasets.base import ArrayDataset, data_percent_count, model_arrays
from xpuperf.zoo import TensorSpec

if TYPE_CHECKING:
    from tokenizers import Tokenizer

NAME = "open_squad"
FILE = "dev-v1.1.json"
INPUT_FIELDS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_FIELDS = ("start_logits", "end_logits")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
N_BEST = 20  # run_qa's n_best_size
_PUNCTUATION = frozenset(string.punctuation)
_LAYOUT = "{'data': [{'paragraphs': [{'context', 'qas': [{'id', 'question', 'answers': [{'text'}]}]}]}]}"


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]


class SquadDataset(ArrayDataset):
    """One sample per feature (a window of one example's context).

    ``feature_example`` maps each feature to its example; ``offsets`` holds each
    token's [start, end) characters in the context, -1 for tokens outside it.
    """

    name = NAME
    primary_metric = "f1"

    def __init__(self, path: Path, examples: list[Example], arrays: dict[str, np.ndarray],
                 feature_example: np.ndarray, offsets: np.ndarray, max_answer_length: int):
        self.path = str(path)
        self.examples = examples
        self.feature_example = feature_example
        self.offsets = offsets
        self.max_answer_length = max_answer_length
        super().__init__(arrays)

    def __len__(self) -> int:
        return len(self.feature_example)

    def evaluate(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        missing = [f for f in OUTPUT_FIELDS if f not in outputs]
        if missing:
            raise ValueError(f"{NAME}: evaluate needs outputs {', '.join(OUTPUT_FIELDS)} "
                             f"([N, seq]); missing {', '.join(missing)}")
        logits = [np.asarray(outputs[f], dtype=np.float32) for f in OUTPUT_FIELDS]
        for f, a in zip(OUTPUT_FIELDS, logits):
            if a.shape != self.offsets.shape[:2]:
                raise ValueError(f"{NAME}: output {f!r} has shape {a.shape}; expected "
                                 f"{self.offsets.shape[:2]} (features x sequence length)")
        predictions = predict_answers(*logits, self.feature_example, self.offsets,
                                      [e.context for e in self.examples], self.max_answer_length)
        return squad_metrics(predictions, [e.answers for e in self.examples])


def load(path: Path | None, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
         options: dict[str, Any]) -> SquadDataset:
    """Read the SQuAD JSON (a file, or a folder holding dev-v1.1.json) and tokenize it.

    Options: tokenizer (a vocab.txt or a Hugging Face tokenizer folder; else a
    WordPiece vocabulary is trained on the file), vocab_size (size to train, and the
    bound every id is checked against), do_lower_case (for a vocab.txt, default
    True), doc_stride (default max_length // 3), max_answer_length (default 30),
    data_percent (the share of questions, first ones first; default 100).
    """
    file = _json_file(path)
    examples = read_examples(file)
    missing = [f for f in OUTPUT_FIELDS if f not in {o.field for o in outputs}]
    if missing:
        raise ValueError(f"{NAME}: the model declares no output with field {', '.join(missing)}; "
                         f"SQuAD scoring needs {', '.join(OUTPUT_FIELDS)}")
    ids_spec = next((s for s in inputs if s.field == "input_ids"), None)
    if ids_spec is None or len(ids_spec.shape) != 2:
        raise ValueError(f"{NAME}: the model needs an input with field 'input_ids' and shape "
                         "[batch, seq]; its length sets the feature length")
    max_length = ids_spec.shape[1]
    stride = int(options.get("doc_stride", max_length // 3))

    vocab_size = options.get("vocab_size")
    tokenizer = (local_tokenizer(Path(options["tokenizer"]), bool(options.get("do_lower_case", True)))
                 if options.get("tokenizer")
                 else train_tokenizer(training_texts(examples), int(vocab_size or 1000)))
    # After training: the vocabulary, and so every id, stays the same for any share.
    examples = examples[:data_percent_count(len(examples), options, NAME)]
    fields, feature_example, offsets = tokenize(tokenizer, examples, max_length, stride, file)
    if vocab_size is not None and fields["input_ids"].max() >= vocab_size:
        raise ValueError(f"{NAME}: token id {int(fields['input_ids'].max())} >= vocab_size "
                         f"{vocab_size}; the tokenizer's vocabulary is larger than the model's")
    return SquadDataset(file, examples, model_arrays(NAME, fields, inputs), feature_example, offsets,
                        int(options.get("max_answer_length", 30)))


# --------------------------------------------------------------------------- reading

def _json_file(path: Path | None) -> Path:
    if path is None:
        raise ValueError(f"{NAME}: no dataset path; expected a SQuAD v1.1 {FILE}")
    file = path / FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{NAME}: {file} not found; expected a SQuAD v1.1 JSON file "
                                f"({FILE}) or a folder holding one")
    return file


def read_examples(file: Path) -> list[Example]:
    """The questions of a SQuAD v1.1 file, in file order."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{NAME}: {file}: cannot read it as JSON ({e})") from None
    examples = []
    try:
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = tuple(a["text"] for a in qa["answers"])
                    if not answers:
                        raise ValueError(f"question {qa['id']!r} has no answers")
                    examples.append(Example(qa["id"], qa["question"], context, answers))
    except KeyError as e:
        raise ValueError(f"{NAME}: {file}: not SQuAD v1.1 (missing key {e}); expected {_LAYOUT}") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"{NAME}: {file}: not SQuAD v1.1 ({e}); expected {_LAYOUT}") from None
    if not examples:
        raise ValueError(f"{NAME}: {file}: holds no questions")
    return examples


def training_texts(examples: list[Example]) -> list[str]:
    """What a vocabulary is trained on when no tokenizer is given: paragraphs and questions."""
    contexts = list(dict.fromkeys(e.context for e in examples))  # each paragraph once, in order
    return contexts + [e.question for e in examples]


# --------------------------------------------------------------------------- tokenizers

def local_tokenizer(path: Path, lowercase: bool = True, dataset: str = NAME) -> Tokenizer:
    """A vocab.txt (BERT WordPiece) or a Hugging Face tokenizer folder, never the hub;
    errors name ``dataset`` (other text datasets read their tokenizers here too)."""
    if path.is_file():
        from tokenizers.models import WordPiece

        try:
            vocab = WordPiece.read_file(str(path))
        except Exception as e:  # tokenizers raises plain Exception
            raise ValueError(f"{dataset}: {path}: cannot read it as a vocab.txt ({e})") from None
        return _bert_tokenizer(vocab, lowercase, path, dataset)
    if path.is_dir():
        from transformers import AutoTokenizer

        try:
            hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ValueError(f"{dataset}: {path}: not a Hugging Face tokenizer folder ({e})") from None
        if not hf.is_fast or hf.pad_token_id is None:
            raise ValueError(f"{dataset}: {path}: the tokenizer must be a fast tokenizer with a pad "
                             "token (offsets and padding come from it)")
        tok = hf.backend_tokenizer
        tok.enable_padding(pad_id=hf.pad_token_id, pad_token=hf.pad_token)
        return tok
    raise FileNotFoundError(f"{dataset}: tokenizer {path} not found; expected a vocab.txt file or a "
                            "Hugging Face tokenizer folder")


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """A BERT-style WordPiece vocabulary trained on ``texts``, the same in every process."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The trainer numbers word-inner characters ("##x") in hash-map order, which differs
    # per process, and breaks ties between merges by those numbers; naming them up front,
    # sorted, fixes their ids and so the whole vocabulary.
    inner = sorted({c for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t))
                    for c in w[1:]})
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                        special_tokens=[*SPECIAL_TOKENS, *("##" + c for c in inner)])
    tok.train_from_iterator(texts, trainer)
    # Rebuilt from the vocabulary alone: "##x" must be ordinary tokens, not special ones.
    return _bert_tokenizer(tok.get_vocab(), True, None)


def _bert_tokenizer(vocab: dict[str, int], lowercase: bool, source: Path | None,
                    dataset: str = NAME) -> Tokenizer:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    absent = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in vocab]
    if absent:
        raise ValueError(f"{dataset}: {source}: vocabulary lacks {', '.join(absent)}; expected a BERT vocab.txt")
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if t in vocab])
    tok.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]")
    return tok


def tokenize(tokenizer: Tokenizer, examples: list[Example], max_length: int, stride: int,
             file: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Features as run_qa makes them: (fields, feature -> example, token offsets in the context)."""
    # run_qa strips the question's leading blanks: some SQuAD questions have many.
    questions = [e.question.lstrip() for e in examples]
    pad = tokenizer.padding  # set by whoever made the tokenizer; only the length is ours
    tokenizer.no_padding()
    tokenizer.no_truncation()
    # tokenizers panics (killing the batch with a Rust backtrace) when a window leaves no
    # more room for the context than the stride, so that is checked here first.
    lengths = [len(q) for q in tokenizer.encode_batch(questions, add_special_tokens=False)]
    longest = int(np.argmax(lengths))
    room = max_length - tokenizer.num_special_tokens_to_add(is_pair=True) - lengths[longest]
    if stride >= room:
        raise ValueError(f"{NAME}: {file}: question {examples[longest].id!r} takes {lengths[longest]} "
                         f"tokens, leaving {room} of max_length {max_length} for the context; "
                         f"doc_stride ({stride}) must be smaller")
    tokenizer.enable_truncation(max_length, stride=stride, strategy="only_second")
    tokenizer.enable_padding(length=max_length, pad_id=pad["pad_id"], pad_token=pad["pad_token"])
    encodings = tokenizer.encode_batch(list(zip(questions, (e.context for e in examples))))
    features, owner = [], []
    for i, enc in enumerate(encodings):
        for feature in (enc, *enc.overflowing):
            features.append(feature)
            owner.append(i)
    fields = {
        "input_ids": np.array([f.ids for f in features], dtype=np.int64),
        "attention_mask": np.array([f.attention_mask for f in features], dtype=np.int64),
        "token_type_ids": np.array([f.type_ids for f in features], dtype=np.int64),
    }
    offsets = np.array([f.offsets for f in features], dtype=np.int32)
    in_context = np.array([[s == 1 for s in f.sequence_ids] for f in features])
    offsets[~in_context] = -1
    return fields, np.array(owner, dtype=np.int64), offsets


# --------------------------------------------------------------------------- postprocessing

def best_span(start_logits: np.ndarray, end_logits: np.ndarray, in_context: np.ndarray,
              max_answer_length: int, n_best: int = N_BEST) -> tuple[int, int, float] | None:
    """run_qa's choice in one feature: the best-scoring (start, end, score) among the
    top ``n_best`` starts and ends that lie in the context, in order, and short enough."""
    starts = np.argsort(start_logits)[::-1][:n_best, None]
    ends = np.argsort(end_logits)[::-1][None, :n_best]
    ok = in_context[starts] & in_context[ends] & (ends >= starts) & (ends - starts < max_answer_length)
    if not ok.any():
        return None
    scores = np.where(ok, start_logits[starts] + end_logits[ends], -np.inf)
    i, j = np.unravel_index(np.argmax(scores), scores.shape)
    return int(starts[i, 0]), int(ends[0, j]), float(scores[i, j])


def predict_answers(start_logits: np.ndarray, end_logits: np.ndarray, feature_example: np.ndarray,
                    offsets: np.ndarray, contexts: Sequence[str], max_answer_length: int) -> list[str]:
    """Each example's answer text: its best span over all its features ('' if none fits)."""
    best: list[tuple[float, str]] = [(-np.inf, "")] * len(contexts)
    for f, ex in enumerate(feature_example):
        span = best_span(start_logits[f], end_logits[f], offsets[f, :, 0] >= 0, max_answer_length)
        if span is not None and span[2] > best[ex][0]:
            s, e, score = span
            best[ex] = (score, contexts[ex][offsets[f, s, 0]:offsets[f, e, 1]])
    return [text for _, text in best]


# --------------------------------------------------------------------------- official metric

def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-overlap F1 of the normalized answers, in [0, 1]."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def squad_metrics(predictions: Sequence[str], ground_truths: Sequence[Sequence[str]]) -> dict[str, float]:
    """{'f1', 'exact_match'} in percent: best over each question's answers, mean over questions."""
    if len(predictions) != len(ground_truths) or not predictions:
        raise ValueError(f"need one prediction per question, got {len(predictions)} predictions "
                         f"for {len(ground_truths)} questions")
    f1 = sum(max(f1_score(p, g) for g in golds) for p, golds in zip(predictions, ground_truths))
    em = sum(max(exact_match(p, g) for g in golds) for p, golds in zip(predictions, ground_truths))
    return {"f1": 100.0 * f1 / len(predictions), "exact_match": 100.0 * em / len(predictions)}


# --------------------------------------------------------------------------- model inputs
