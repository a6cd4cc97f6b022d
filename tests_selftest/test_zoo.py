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


def test_an_output_without_a_batch_axis_says_batched_false():
    (m,) = parse_zoo(broken("outputs: [start_logits]",
                            "outputs: [{name: start_logits, batched: false}]")).models
    assert [t.batched for t in m.outputs] == [False]
    with pytest.raises(ZooError, match=r"zoo.yaml:16: models.m-torch.outputs\[0\].shape\[0\]: names "
                                       "the batch axis"):
        parse_zoo(broken("outputs: [start_logits]",
                         "outputs: [{name: start_logits, shape: [batch, 2], batched: false}]"))


MODEL_END = "      batch_sizes: [2]\n"


@pytest.mark.parametrize("old,new,expected", [
    ("    batch_sizes: [1, 8]\n", "    batch_sizes: [1, 8]\n    batch_sizes: [4]\n",
     "zoo.yaml:18: models.m-torch.batch_sizes: duplicate key 'batch_sizes' (first at line 17): "
     "remove one of the two"),
    (MODEL_END, MODEL_END + "  m-torch:\n    family: gpt\n",
     "zoo.yaml:22: models.m-torch: duplicate key 'm-torch' (first at line 6): remove one of the two"),
    ("{id: fake, format: fake}", "{id: fake, format: fake, id: fake2}",
     "zoo.yaml:4: datasets.fake.id: duplicate key 'id' (first at line 4)"),
    ("format: fake}", "format: faker}",
     "zoo.yaml:4: datasets.fake.format: unknown format 'faker' (known: squad, imagenet, criteo, fake"),
    ("    dataset: fake\n", "    dataset: fake\n    dataset_options: {samples: many}\n",
     "zoo.yaml:14: models.m-torch.dataset_options.samples: must be an integer, got 'many'"),
    ("    dataset: fake\n", "    dataset: fake\n    dataset_options: {data_percent: '50%'}\n",
     "zoo.yaml:14: models.m-torch.dataset_options.data_percent: must be a number, got '50%'"),
    ("    dataset: fake\n", "    dataset: fake\n    dataset_options: {tokenizer: vocab.txt}\n",
     "zoo.yaml:14: models.m-torch.dataset_options.tokenizer: the fake format takes no option "
     "'tokenizer' (it takes: samples, seed, data_percent)"),
    (MODEL_END, MODEL_END.replace("batch_sizes: [2]", "dataset_options: {seed: 0.5}"),
     "zoo.yaml:21: models.m-torch.smoke.dataset_options.seed: must be an integer, got 0.5"),
    ("format: fake}", "format: criteo}",
     "zoo.yaml:13: models.m-torch.dataset: the criteo format needs option 'hash_buckets'"),
], ids=["duplicate-field", "duplicate-model", "duplicate-in-flow-mapping", "unknown-format",
        "option-not-int", "option-not-number", "unknown-option", "smoke-option", "required-option"])
def test_duplicates_and_dataset_options_name_line_and_field(old, new, expected):
    with pytest.raises(ZooError) as e:
        parse_zoo(broken(old, new), "smoke" if ".smoke." in expected else "full")
    assert expected in str(e.value)


def test_dataset_options_are_checked_after_dims_are_substituted():
    text = broken("    dataset: fake\n", "    dataset: fake\n    dataset_options: {samples: $seq}\n")
    assert parse_zoo(text, "smoke").models[0].dataset_options == {"samples": 16}
    with pytest.raises(ZooError, match=r"zoo.yaml:14: models.m-torch.dataset_options.samples: must be "
                                       "an integer, got 'seq'"):
        parse_zoo(text.replace("$seq", "seq"), "smoke")


class Recording(dict):
    """Options that note every name a loader looks up."""

    def __init__(self, options):
        super().__init__(options)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def test_every_option_a_loader_reads_is_one_the_zoo_accepts():
    """Each format's loader, run on its sample for the shipped zoo's first model of
    that format, looks up only options that FORMATS lets zoo.yaml give it."""
    import importlib

    from xpuperf.datasets import resolve
    from xpuperf.datasets.formats import FORMATS

    zoo = load_zoo(ROOT / "zoo.yaml", "smoke")
    firsts = {}
    for model in zoo.models:
        firsts.setdefault(zoo.datasets[model.dataset].format, model)
    # golden is a user's own data (no built-in model has any): test_golden.py loads it.
    assert set(firsts) == set(FORMATS) - {"golden"}
    for fmt, model in firsts.items():
        options = Recording(model.dataset_options)
        path, _ = resolve(zoo.datasets[model.dataset], ROOT / "no-such-data-dir")
        importlib.import_module(FORMATS[fmt].module).load(path, model.inputs, model.outputs, options)
        assert options.read <= set(FORMATS[fmt].options), (fmt, options.read - set(FORMATS[fmt].options))


def test_the_zoo_reference_names_every_field_and_option():
    """docs/zoo.md documents every field the schema accepts and every format's options."""
    from xpuperf import zoo
    from xpuperf.zoo import tiers as zoo_tiers
    from xpuperf.datasets.formats import FORMATS

    text = (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8")
    names = {*zoo.TOP_FIELDS, *zoo.MODEL_FIELDS, *zoo.TENSOR_FIELDS, *zoo.DATASET_FIELDS,
             *zoo.TOLERANCE_KEYS, *zoo.TIERS, *zoo_tiers.TIER_FIELDS, *zoo_tiers.SCENARIO_FIELDS,
             *zoo_tiers.PERF_KEYS, *zoo_tiers.AUDIT_KEYS, *zoo.SCENARIOS, *FORMATS,
             *(option for f in FORMATS.values() for option in f.options)}
    missing = sorted(n for n in names if f"`{n}`" not in text)
    assert not missing, f"docs/zoo.md does not document {', '.join(missing)}"


def test_precisions_widens_every_model_with_the_defaults_tolerances():
    zoo = load_zoo(ROOT / "zoo.yaml", "smoke").with_precisions(("fp32", "tf32", "fp8"))
    yolo = next(m for m in zoo.models if m.name == "yolov5-onnx")
    assert {m.precisions for m in zoo.models} == {("fp32", "tf32", "fp8")}
    # The model's own fp32 tolerance stays; tf32 and fp8, which it lacks, are the defaults'.
    assert yolo.tolerances["fp32"]["max_abs"] == 1.0e-2
    assert yolo.tolerances["tf32"] == zoo.default_tolerances["tf32"]
    assert yolo.max_drop["fp8"] == zoo.default_max_drop["fp8"]
    assert [c.id for c in zoo.combinations() if c.model is yolo][-1] == "yolov5-onnx-fake-fp8"
    with pytest.raises(ZooError, match="unknown precision.*'fp9'"):
        zoo.with_precisions(("fp9",))
    bare = load_zoo(ROOT / "zoo.yaml", "smoke")
    bare = type(bare)(**{**bare.__dict__, "default_tolerances": {"fp32": {}}})
    with pytest.raises(ZooError, match="defaults.tolerances has no bf16"):
        bare.with_precisions(("fp32", "bf16"))


def test_the_gate_tier_selects_models_and_precisions_at_smoke_shapes():
    gate, smoke = load_zoo(ROOT / "zoo.yaml", "gate"), load_zoo(ROOT / "zoo.yaml", "smoke")
    assert [m.name for m in gate.models] == ["bert-torch", "resnet50-torch", "widedeep-tf",
                                             "minilm-l6-torch"]
    assert {m.precisions for m in gate.models} == {("fp32",)} and gate.generation == ()
    shapes = {m.name: m.batch_sizes for m in smoke.models}
    assert all(m.batch_sizes == shapes[m.name] for m in gate.models)
    assert [p.id for p in gate.perf_cases()][1] == "resnet50-torch-imagenet-fp32-bs4-offline"
    assert set(gate.gate) == {"remeasure", "ab_rounds", "ab_block_s"}
    text = GOOD.replace("datasets:", "tiers:\n  gate: {models: [m-tf], gate: {ab_rounds: 0}}\n"
                                     "datasets:")
    with pytest.raises(ZooError, match=r"tiers.gate.gate.ab_rounds: must be > 0, got 0"):
        parse_zoo(text, "gate")
    with pytest.raises(ZooError, match=r"tiers.gate.models: unknown model 'm-tf' \(known: m-torch"):
        parse_zoo(text.replace("ab_rounds: 0", "ab_rounds: 2"), "gate")
