"""Read and validate zoo.yaml into the specs of xpuperf.zoo.specs.

Pure: YAML in, dataclasses out. Every error names the file, the line, the entry
and the field, so that a broken zoo.yaml costs its author one glance. The tables
here are the schema of the file's top level, models, datasets and tensors; the
tiers and the models' scenarios are validated in xpuperf.zoo.tiers, a model that
is a file in xpuperf.zoo.model_file, the LLM workloads in xpuperf.zoo.generation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from backends.base import PRECISIONS
from xpuperf import safe_yaml
from xpuperf.zoo.specs import (DOMAINS, DTYPES, FLOAT_DTYPES, FRAMEWORKS, DatasetSpec, ModelSpec, TensorSpec,
                               Zoo)
from xpuperf.zoo.tiers import TIERS, model_scenarios, selected, small_shapes, tier_settings
from xpuperf.zoo.validator import Validator, ZooError
from xpuperf.zoo.generation import generation_workloads
from xpuperf.zoo import model_file

TOLERANCE_KEYS = ("max_abs", "mean_abs", "max_rel", "min_cosine", "rtol", "atol")

# field -> (required, kind); kinds are checked by Validator.kind
MODEL_FIELDS: dict[str, tuple[bool, str]] = {
    "family": (True, "str"),
    "framework": (True, "str"),
    "domain": (True, "str"),
    "builder": (True, "str"),
    "model": (False, "str"),
    "golden": (False, "str"),
    "config": (False, "map"),
    "weights": (False, "str?"),
    "seed": (False, "int"),
    "dims": (False, "map"),
    "dataset": (True, "str"),
    "dataset_options": (False, "map"),
    "inputs": (True, "list"),
    "outputs": (True, "list"),
    "batch_sizes": (True, "list"),
    "precisions": (False, "list"),
    "scenarios": (False, "list"),
    "tolerances": (False, "map"),
    "max_drop": (False, "map"),
    "timeout_s": (False, "num"),
    "smoke": (False, "map"),
}
DATASET_FIELDS: dict[str, tuple[bool, str]] = {
    "id": (True, "str"),
    "format": (True, "str"),
    "path": (False, "str?"),
    "sample": (False, "str?"),
}
TENSOR_FIELDS: dict[str, tuple[bool, str]] = {
    "name": (True, "str"),
    "shape": (False, "list"),
    "dtype": (False, "str"),
    "field": (False, "str"),
    "range": (False, "list"),
    "batched": (False, "bool"),
}
TOP_FIELDS = {"defaults": (False, "map"), "tiers": (False, "map"),
              "datasets": (True, "map"), "models": (True, "map"),
              "generation": (False, "map")}
DEFAULT_FIELDS = ("precisions", "scenarios", "tolerances", "max_drop", "seed")
# The zoo a user's zoo file (one without datasets:) layers on.
BUILTIN_ZOO = Path(__file__).resolve().parents[2] / "zoo.yaml"


# --------------------------------------------------------------------------- loading

def load_zoo(path: str | Path, tier: str = "full") -> Zoo:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ZooError(f"{path}: cannot read the zoo file ({e.strerror}); pass --zoo PATH") from None
    return parse_zoo(text, tier, path)


def parse_zoo(text: str, tier: str = "full", path: Path = Path("zoo.yaml")) -> Zoo:
    if tier not in TIERS:
        raise ZooError(f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")
    data, lines = _read_yaml(text, path)
    if isinstance(data, dict) and "datasets" not in data and path.resolve() != BUILTIN_ZOO:
        data = _layered(data)
    v = Validator(path, lines)
    v.fields("", data, TOP_FIELDS)
    defaults = data.get("defaults") or {}
    v.fields("defaults", defaults, {k: (False, MODEL_FIELDS[k][1]) for k in DEFAULT_FIELDS})
    settings = tier_settings(v, data.get("tiers"), tier)

    from xpuperf.datasets.formats import FORMATS  # a table of names, imports no loader
    datasets = {}
    for name, raw in data["datasets"].items():
        where = f"datasets.{name}"
        v.fields(where, raw, DATASET_FIELDS)
        v.one_of(f"{where}.format", raw["format"], tuple(FORMATS), "format")
        datasets[name] = DatasetSpec(name=name, id=raw["id"], format=raw["format"],
                                     path=raw.get("path"), sample=raw.get("sample"))
    for name in data["models"]:  # before any entry: a clash is the first thing said
        v.entry_name(f"models.{name}", name)
    models = tuple(_model(v, name, raw, defaults, tier, datasets)
                   for name, raw in data["models"].items())
    generation = generation_workloads(v, data.get("generation"), tier, {m.name: m for m in models})
    models, generation = selected(v, data.get("tiers"), tier, models, generation)
    return Zoo(path=path, tier=tier, models=models, datasets=datasets, lines=v.lines,
               generation=generation, default_tolerances=defaults.get("tolerances") or {},
               default_max_drop=defaults.get("max_drop") or {}, **settings)


def _read_yaml(text: str, path: Path) -> tuple[Any, dict[str, int]]:
    """The document and the line of each of its fields (see _ZooLoader)."""
    loader = _ZooLoader(text, path)
    try:
        return loader.get_single_data(), loader.lines
    except safe_yaml.YamlError as e:
        raise ZooError(str(e)) from None
    except yaml.YAMLError as e:
        raise ZooError(safe_yaml.problem(e, str(path))) from None
    finally:
        loader.dispose()


def _layered(user: Mapping[str, Any]) -> dict[str, Any]:
    """A user's zoo (a file without ``datasets:``) on top of the built-in one: the
    built-in datasets; its ``defaults`` and each of its ``tiers`` with the user's
    fields in place of theirs; the user's models (and LLM workloads) only."""
    builtin, _ = _read_yaml(BUILTIN_ZOO.read_text(), BUILTIN_ZOO)
    layered = {**user, "datasets": builtin["datasets"],
               "defaults": {**builtin.get("defaults", {}), **(user.get("defaults") or {})}}
    tiers = {**builtin.get("tiers", {})}
    for name, fields in (user.get("tiers") or {}).items():
        both_maps = isinstance(fields, dict) and isinstance(tiers.get(name), dict)
        tiers[name] = {**tiers[name], **fields} if both_maps else fields
    layered["tiers"] = tiers
    return layered


def _model(v: Validator, name: str, raw: Any, defaults: Mapping, tier: str,
           datasets: Mapping[str, DatasetSpec]) -> ModelSpec:
    where = f"models.{name}"
    # A model that is a file needs none of the fields the file answers.
    v.fields(where, raw, MODEL_FIELDS if not (isinstance(raw, dict) and "model" in raw)
             else {k: (False, kind) for k, (_, kind) in MODEL_FIELDS.items()})
    smoke = raw.get("smoke") or {}
    v.fields(f"{where}.smoke", smoke, {k: (False, kind) for k, (_, kind) in MODEL_FIELDS.items()
                                       if k != "smoke"})
    merged = {**defaults, **{k: val for k, val in raw.items() if k != "smoke"}}
    if small_shapes(tier):
        for key, val in smoke.items():
            both_maps = isinstance(val, dict) and isinstance(merged.get(key), dict)
            merged[key] = {**merged[key], **val} if both_maps else val
    # Errors in merged values point at the smoke override when it supplied them.
    src = lambda key: f"{where}.smoke" if small_shapes(tier) and key in smoke else where  # noqa: E731
    file_io = model_file.from_file(v, f"{src('model')}.model", name, merged) if "model" in merged else None
    if "golden" in merged:
        model_file.golden(v, f"{src('golden')}.golden", merged)

    for key, allowed in (("framework", FRAMEWORKS), ("domain", DOMAINS)):
        v.one_of(f"{src(key)}.{key}", merged[key], allowed)
    v.one_of(f"{src('dataset')}.dataset", merged["dataset"], tuple(datasets), "dataset")
    from xpuperf.models import BUILDERS  # a table of names, imports no framework
    if file_io is None:
        v.one_of(f"{src('builder')}.builder", merged["builder"], tuple(BUILDERS), "builder")

    dims = merged.get("dims") or {}
    for dim, size in dims.items():
        if not (isinstance(size, int) and size > 0):
            v.fail(f"{src('dims')}.dims.{dim}", f"must be a positive integer, got {size!r}")
    inputs = tuple(_tensor(v, f"{src('inputs')}.inputs[{i}]", t, dims, need_shape=True)
                   for i, t in enumerate(merged["inputs"]))
    outputs = tuple(_tensor(v, f"{src('outputs')}.outputs[{i}]", t, dims, need_shape=False)
                    for i, t in enumerate(merged["outputs"]))
    for key in ("inputs", "outputs"):
        if not merged[key]:
            v.fail(f"{src(key)}.{key}", "must list at least one tensor")
    fixed_batch = None
    if file_io is not None:
        fixed_batch = model_file.check_against_file(v, src("inputs"), src("outputs"), src("batch_sizes"),
                                          inputs, outputs, merged["batch_sizes"], *file_io)

    batch_sizes = merged["batch_sizes"]
    for i, bs in enumerate(batch_sizes):
        if not (isinstance(bs, int) and bs > 0):
            v.fail(f"{src('batch_sizes')}.batch_sizes[{i}]", f"must be a positive integer, got {bs!r}")
    precisions = merged.get("precisions") or ["fp32"]
    for i, p in enumerate(precisions):
        v.one_of(f"{src('precisions')}.precisions[{i}]", p, PRECISIONS)
    # Scenario entries from defaults are checked against each model that inherits them.
    from_model = "scenarios" in raw or (small_shapes(tier) and "scenarios" in smoke)
    scenario_src = src("scenarios") if from_model else "defaults"
    scenarios = model_scenarios(v, f"{scenario_src}.scenarios", merged.get("scenarios"), name,
                                tuple(batch_sizes))
    tolerances = merged.get("tolerances") or {}
    for p, tol in tolerances.items():
        v.one_of(f"{src('tolerances')}.tolerances", p, PRECISIONS, "precision")
        v.fields(f"{src('tolerances')}.tolerances.{p}", tol, {k: (False, "num") for k in TOLERANCE_KEYS})
    max_drop = merged.get("max_drop") or {}
    for p, drop in max_drop.items():
        v.one_of(f"{src('max_drop')}.max_drop", p, PRECISIONS, "precision")
        v.kind(f"{src('max_drop')}.max_drop.{p}", drop, "num")
    for p in precisions:
        if p not in tolerances:
            v.fail(f"{src('tolerances')}.tolerances", f"no tolerance for precision {p!r}; add one "
                   "here or under defaults.tolerances")
    config = _substitute(v, f"{src('config')}.config", merged.get("config") or {}, dims)
    dataset_options = _substitute(v, f"{src('dataset_options')}.dataset_options",
                                  merged.get("dataset_options") or {}, dims)
    _check_options(v, where, dataset_options, smoke.get("dataset_options") if small_shapes(tier) else None,
                   datasets[merged["dataset"]].format)
    return ModelSpec(
        name=name, family=merged["family"], framework=merged["framework"], domain=merged["domain"],
        builder=merged.get("builder"), config=config,
        weights=merged.get("weights"), seed=int(merged.get("seed", 0)), dataset=merged["dataset"],
        dataset_options=dataset_options, inputs=inputs, outputs=outputs,
        batch_sizes=tuple(batch_sizes), precisions=tuple(precisions), scenarios=scenarios,
        tolerances={p: dict(t) for p, t in tolerances.items()},
        max_drop={p: float(d) for p, d in max_drop.items()},
        timeout_s=_timeout(v, f"{src('timeout_s')}.timeout_s", merged.get("timeout_s")),
        fixed_batch=fixed_batch,
    )


def _timeout(v: Validator, where: str, value: Any) -> float | None:
    if value is not None and not value > 0:
        v.fail(where, f"is the time limit of one item in seconds: must be > 0, got {value!r}")
    return None if value is None else float(value)


def _substitute(v: Validator, where: str, value: Any, dims: Mapping[str, int]) -> Any:
    """Replace "$name" strings by the entry's dim of that name, so that a size the
    model and its dataset share (a vocabulary, hash buckets) is stated once."""
    if isinstance(value, dict):
        return {k: _substitute(v, f"{where}.{k}", x, dims) for k, x in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{where}[{i}]", x, dims) for i, x in enumerate(value)]
    if isinstance(value, str) and value.startswith("$"):
        if value[1:] not in dims:
            v.fail(where, f"{value} names no dim of this entry ({', '.join(dims) or 'none declared'})")
        return dims[value[1:]]
    return value


def _check_options(v: Validator, where: str, options: Mapping[str, Any],
                   smoke_options: Mapping[str, Any] | None, fmt: str) -> None:
    """Check a model's dataset_options (``$dims`` substituted) against what its
    dataset's format reads, so that a misspelt or mistyped option stops the load
    here rather than a run later."""
    from xpuperf.datasets.formats import FORMATS

    takes = FORMATS[fmt].options
    for key, value in options.items():
        at = f"{where}.smoke" if key in (smoke_options or {}) else where
        if key not in takes:
            v.fail(f"{at}.dataset_options.{key}", f"the {fmt} format takes no option {key!r} "
                   f"(it takes: {', '.join(takes)})")
        v.kind(f"{at}.dataset_options.{key}", value, takes[key][1])
    for key, (required, _) in takes.items():
        if required and key not in options:
            # Without any options, point at the dataset that asks for them.
            v.fail(f"{where}.dataset_options" if options else f"{where}.dataset",
                   f"the {fmt} format needs option {key!r}; add it to this model's dataset_options")


def _tensor(v: Validator, where: str, raw: Any, dims: Mapping[str, int], need_shape: bool) -> TensorSpec:
    if isinstance(raw, str):  # an output may be named alone
        raw = {"name": raw}
    v.fields(where, raw, {k: (req or (need_shape and k in ("shape", "dtype")), kind)
                          for k, (req, kind) in TENSOR_FIELDS.items()})
    batched = raw.get("batched", True)
    shape: list[int] = []
    for i, d in enumerate(raw.get("shape") or []):
        if batched and i == 0:
            if d != "batch":
                v.fail(f"{where}.shape[0]", f"the first axis must be 'batch', got {d!r} (an input "
                       "fed whole with every batch has none and says batched: false)")
            shape.append(-1)
        elif d == "batch" and not batched:
            v.fail(f"{where}.shape[{i}]", f"names the batch axis of an {'input' if need_shape else 'output'}"
                   " with batched: false (a tensor whole with every batch has none)")
        elif isinstance(d, int) and d > 0:
            shape.append(d)
        elif isinstance(d, str) and d in dims:
            shape.append(dims[d])
        else:
            v.fail(f"{where}.shape[{i}]", f"{d!r} is neither a positive integer nor a dim of "
                   f"this entry ({', '.join(dims) or 'no dims declared'})")
    dtype = raw.get("dtype", "float32")
    v.one_of(f"{where}.dtype", dtype, DTYPES, "dtype")
    rng = raw.get("range")
    if rng is not None:
        floats = dtype in FLOAT_DTYPES
        number = (int, float) if floats else int
        if dtype == "bool":
            v.fail(f"{where}.range", "a bool input takes no range (its values are true or false)")
        if not (len(rng) == 2 and all(isinstance(x, number) and not isinstance(x, bool) for x in rng)
                and rng[0] < rng[1]):
            v.fail(f"{where}.range", f"must be [low, high) {'numbers' if floats else 'integers'} "
                   f"with low < high for a {dtype} input, got {rng!r}")
    return TensorSpec(name=raw["name"], shape=tuple(shape), dtype=dtype,
                      field=raw.get("field", raw["name"]), range=tuple(rng) if rng else None,
                      batched=batched)


# --------------------------------------------------------------------------- validation

class _ZooLoader(safe_yaml.SafeLoader):
    """xpuperf's safe loader (aliases bounded), which also notes the line of every field in ``lines``
    ('models.bert-torch.inputs[0].dtype' -> 1-based line) and refuses a key given
    twice in one mapping, a field of an entry or a whole entry: plain yaml keeps the
    last one silently, so the first would be ignored without a word."""

    def __init__(self, text: str, path: Path):
        super().__init__(text, str(path))
        self.path = path
        self.lines: dict[str, int] = {}

    def construct_document(self, node: yaml.Node) -> Any:
        self._index(node, "")
        return super().construct_document(node)

    def _index(self, node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}  # path -> line, in this mapping
            for key, value in node.value:
                path = f"{prefix}.{key.value}" if prefix else str(key.value)
                line = key.start_mark.line + 1
                if path in first:
                    raise ZooError(f"{self.path}:{line}: {path}: duplicate key {key.value!r} (first at "
                                   f"line {first[path]}): remove one of the two (yaml would silently "
                                   "keep this one)")
                first[path] = self.lines[path] = line
                self._index(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}[{i}]"
                self.lines[path] = item.start_mark.line + 1
                self._index(item, path)
