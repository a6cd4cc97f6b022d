"""The zoo's dataset formats: ``FORMATS`` maps a zoo ``format`` to the module that
reads it and the ``dataset_options`` that module takes, so that xpuperf.zoo checks
a model's options when it loads zoo.yaml. Names only: it imports nothing, so the
zoo's loader reads it without the datasets' loaders (or a cycle through them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Format:
    module: str  # defines load() and the dataset's task metric
    # dataset_options it reads: name -> (required, kind), kinds as xpuperf.zoo checks
    # them; the loader's docstring says what each one means and its default.
    options: Mapping[str, tuple[bool, str]]


# Every loader takes data_percent (ByteMLPerf's option): the share of records kept.
_PERCENT = {"data_percent": (False, "num")}
FORMATS = {
    "squad": Format("xpuperf.datasets.squad", {
        "tokenizer": (False, "str"), "vocab_size": (False, "int"), "do_lower_case": (False, "bool"),
        "doc_stride": (False, "int"), "max_answer_length": (False, "int"), **_PERCENT}),
    "imagenet": Format("xpuperf.datasets.imagenet", {
        "label_offset": (False, "int"), "max_images": (False, "int"), **_PERCENT}),
    "criteo": Format("xpuperf.datasets.criteo", {
        "hash_buckets": (True, "int"), "max_rows": (False, "int"), **_PERCENT}),
    "fake": Format("xpuperf.datasets.fake", {
        "samples": (False, "int"), "seed": (False, "int"), **_PERCENT}),
    "cifar": Format("xpuperf.datasets.cifar", {
        "mean": (False, "rgb"), "std": (False, "rgb"), "tokenizer": (False, "str"),
        "prompt": (False, "str"), "vocab_size": (False, "int"), **_PERCENT}),
    "cail2019": Format("xpuperf.datasets.cail2019", {
        "vocab": (False, "str"), "vocab_size": (False, "int"), **_PERCENT}),
    "golden": Format("xpuperf.datasets.golden", {"path": (True, "str")}),
}
