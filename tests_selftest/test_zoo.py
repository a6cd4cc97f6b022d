"""zoo.yaml validation: every mistake gets file:line, the entry and the field."""
from pathlib import Path

import pytest

from xpuperf.zoo import ZooError, load_zoo, parse_zoo

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
defaults:
  tolerances: {fp32: {max_abs: 1.0e-3}, int8: {min_cosine: 0.9}}
datasets:
  fake: {id: fake, format: fake}
models:
  m-torch:
    family: bert
    framework: torch
    domain: nlp
    builder: bert_qa
    dims: {seq: 384, vocab: 100}
    config: {vocab_size: $vocab}
    dataset: fake
    inputs:
      - {name: input_ids, shape: [batch, seq], dtype: int64, range: [0, 100]}
    outputs: [start_logits]
    batch_sizes: [1, 8]
    precisions: [fp32, int8]
    smoke:
      dims: {seq: 16}
      batch_sizes: [2]
"""


def broken(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_the_shipped_zoo_loads_in_both_tiers():
    for tier in ("smoke", "full"):
        zoo = load_zoo(ROOT / "zoo.yaml", tier)
        assert zoo.combinations()


def test_smoke_override_merges_dims_and_replaces_lists():
    full, smoke = parse_zoo(GOOD, "full"), parse_zoo(GOOD, "smoke")
    assert full.models[0].inputs[0].shape == (-1, 384)
    assert smoke.models[0].inputs[0].shape == (-1, 16)
    assert (full.models[0].batch_sizes, smoke.models[0].batch_sizes) == ((1, 8), (2,))
    assert smoke.models[0].config == {"vocab_size": 100}  # "$vocab" substituted


def test_ids_name_model_dataset_precision_and_batch():
    zoo = parse_zoo(GOOD, "full")
    assert [c.id for c in zoo.combinations()] == ["m-torch-fake-fp32", "m-torch-fake-int8"]
    assert [p.id for p in zoo.perf_cases()][:2] == ["m-torch-fake-fp32-bs1-offline",
                                                    "m-torch-fake-fp32-bs8-offline"]


@pytest.mark.parametrize("old,new,expected", [
    ("    domain: nlp\n", "    domain: nlp\n    batchsize: 3\n",
     "zoo.yaml:10: models.m-torch.batchsize: unknown field 'batchsize'"),
    ("    framework: torch\n", "",
     "models.m-torch: missing required field 'framework'"),
    ("dtype: int64", "dtype: int65",
     "zoo.yaml:15: models.m-torch.inputs[0].dtype: unknown dtype 'int65'"),
    ("shape: [batch, seq]", "shape: [batch, sequence]",
     "zoo.yaml:15: models.m-torch.inputs[0].shape[1]: 'sequence' is neither a positive integer"),
    ("shape: [batch, seq]", "shape: [seq, batch]",
     "models.m-torch.inputs[0].shape[0]: the first axis must be 'batch'"),
    ("    dataset: fake\n", "    dataset: fakes\n",
     "zoo.yaml:13: models.m-torch.dataset: unknown dataset 'fakes' (known: fake)"),
    ("precisions: [fp32, int8]", "precisions: [fp32, int4]",
     "models.m-torch.precisions[1]: unknown value 'int4'"),
    ("precisions: [fp32, int8]", "precisions: [fp32, fp16]",
     "models.m-torch.tolerances: no tolerance for precision 'fp16'"),
    ("batch_sizes: [2]", "batch_sizes: [0]",
     "models.m-torch.smoke.batch_sizes[0]: must be a positive integer, got 0"),
    ("config: {vocab_size: $vocab}", "config: {vocab_size: $vocabulary}",
     "models.m-torch.config.vocab_size: $vocabulary names no dim of this entry"),
    ("    builder: bert_qa\n", "    builder: gpt9\n",
     "models.m-torch.builder: unknown builder 'gpt9'"),
    ("config: {vocab_size: $vocab}", "config: [1, 2]",
     "zoo.yaml:12: models.m-torch.config: must be a mapping, got [1, 2]"),
])
def test_errors_name_line_entry_and_field(old, new, expected):
    with pytest.raises(ZooError) as e:
        parse_zoo(broken(old, new), "smoke" if "smoke" in expected else "full")
    assert expected in str(e.value)


def test_invalid_yaml_names_the_line():
    with pytest.raises(ZooError, match=r"zoo.yaml:3: not valid YAML"):
        parse_zoo("models:\n  a: [1,\n  b: }\n")


def test_unknown_tier():
    with pytest.raises(ZooError, match="unknown tier 'huge'"):
        parse_zoo(GOOD, "huge")


PROMPTS = "      - {name: input_ids, shape: [batch, seq], dtype: int64, range: [0, 100]}\n"


def with_prompts(line: str) -> str:
    """GOOD with a second input: ``line``, an input list item."""
    return broken(PROMPTS, PROMPTS + line)


def test_an_input_without_a_batch_axis():
    zoo = parse_zoo(with_prompts("      - {name: text, shape: [8, seq], dtype: int64, batched: false}\n"),
                    "smoke")
    ids, text = zoo.models[0].inputs
    assert (ids.batched, ids.shape, ids.batch_shape(4)) == (True, (-1, 16), (4, 16))
    assert (text.batched, text.shape, text.batch_shape(4)) == (False, (8, 16), (8, 16))


@pytest.mark.parametrize("line,expected", [
    ("      - {name: text, shape: [batch, 8], dtype: int64, batched: false}\n",
     "zoo.yaml:16: models.m-torch.inputs[1].shape[0]: names the batch axis of an input with batched: false"),
    ("      - {name: text, shape: [8, seq], dtype: int64}\n",
     "zoo.yaml:16: models.m-torch.inputs[1].shape[0]: the first axis must be 'batch', got 8"),
    ("      - {name: text, shape: [8], dtype: int64, batched: 'false'}\n",
     "zoo.yaml:16: models.m-torch.inputs[1].batched: must be true or false, got 'false'"),
], ids=["batch-axis-named", "batch-axis-missing", "not-a-bool"])
def test_a_missing_or_misplaced_batch_axis_names_line_and_input(line, expected):
    with pytest.raises(ZooError) as e:
        parse_zoo(with_prompts(line), "full")
    assert expected in str(e.value)


def test_outputs_always_have_a_batch_axis():
    with pytest.raises(ZooError, match=r"zoo.yaml:16: models.m-torch.outputs\[0\].batched: applies to "
                                       "inputs only"):
        parse_zoo(broken("outputs: [start_logits]", "outputs: [{name: start_logits, batched: false}]"))
