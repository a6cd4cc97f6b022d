"""The zoo's data model: the frozen specs that zoo.yaml becomes (xpuperf.zoo.parse
reads and validates the file into them), the values their fields take, and the
combinations and performance cases a Zoo expands into.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from backends.base import PRECISIONS
from xpuperf.zoo.tiers import DEFAULT_PEAK_GEMM, DEFAULT_TIMEOUT_S, ScenarioSpec, pick_batch_sizes
from xpuperf.zoo.validator import ZooError

FRAMEWORKS = ("torch", "tf", "onnx")
DOMAINS = ("nlp", "cv", "rec", "speech", "multimodal", "llm", "substructure", "other")
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool",
          "string")
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    # Batched: the batch axis first, as -1. Not batched (an input fed whole with
    # every batch, e.g. the prompts a batch of images is scored against; an output
    # of one value per batch, e.g. a sum over it): the tensor's whole shape.
    shape: tuple[int, ...]
    dtype: str
    field: str  # the dataset's name for this tensor (defaults to name)
    range: tuple[float, float] | None = None  # [low, high) of generated data (not bool)
    batched: bool = True

    def batch_shape(self, batch: int | None) -> tuple[int | None, ...]:
        """The shape of this tensor in a batch of ``batch`` samples."""
        return (batch, *self.shape[1:]) if self.batched else self.shape


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    id: str  # short word used in item ids: "squad"
    format: str  # loader module under xpuperf/datasets
    path: str | None  # real files, relative to --data-dir
    sample: str | None  # shipped sample, relative to xpuperf/datasets/samples


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    framework: str
    domain: str
    builder: str | None  # None: the model is a file (weights holds its path)
    config: Mapping[str, Any]
    weights: str | None
    seed: int
    dataset: str
    dataset_options: Mapping[str, Any]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch_sizes: tuple[int, ...]
    precisions: tuple[str, ...]
    scenarios: tuple[ScenarioSpec, ...]
    tolerances: Mapping[str, Mapping[str, float]]
    max_drop: Mapping[str, float]
    timeout_s: float | None = None  # of one item; None: the tier's
    fixed_batch: int | None = None  # a model file whose batch axis is fixed at this size


@dataclass(frozen=True)
class ServerSpec:
    """Poisson arrivals at ``rate`` requests/s, else ``load`` x the offline
    requests/s at the largest concurrency; valid within both p99 bounds."""

    rate: float | None
    load: float
    ttft_bound_ms: float
    tpot_bound_ms: float
    search_s: float  # the search for the highest valid rate stops past this
    max_trials: int
    bounds_source: str = "zoo.yaml"  # or the mlperf_bounds row they came from


@dataclass(frozen=True)
class EndpointAccuracySpec:
    """The accuracy gate of a server: greedy answers to the first ``problems``
    shipped arithmetic word problems, at most ``max_tokens`` each, scored by
    ``method`` (exact_match: the answer's first number is the right one;
    reference: the text equals the served model's fp32 greedy text computed
    here); the item fails below ``min_score``."""

    min_score: float
    method: str
    problems: int
    max_tokens: int


@dataclass(frozen=True)
class GenerationSpec:
    name: str
    family: str
    builder: str
    config: Mapping[str, Any]
    seed: int
    precisions: tuple[str, ...]
    prompt_tokens: int
    output_tokens: int
    requests: int  # per run; with turns > 1, the conversations a run holds
    concurrency: tuple[int, ...]  # offline runs at each: tokens/s against concurrency
    scenarios: tuple[str, ...]
    server: ServerSpec
    greedy_tokens: int
    text_tokens: int
    tolerances: Mapping[str, Mapping[str, float]]
    timeout_s: float
    prefill_chunk: int | None = None  # prompt tokens per prefill forward; None: all at once
    shared_prefix_tokens: int = 0  # the first this many prompt tokens are every request's
    endpoint_accuracy: EndpointAccuracySpec | None = None
    tensor_parallel: int = 1  # ranks the model is split over, one worker of that many ranks
    # A conversation's requests, each sent when the one before has its answer: the
    # history (earlier messages and answers) then prompt_tokens of a new message.
    turns: int = 1

    def combo_id(self, precision: str) -> str:
        return f"{self.name}-{precision}"

    def case_id(self, precision: str, scenario: str, concurrency: int | None = None) -> str:
        """test_generate[llama2-7b-fp16-in1024-out128-server]; offline names its concurrency."""
        c = f"-c{concurrency}" if scenario == "offline" else ""
        return f"{self.combo_id(precision)}-in{self.prompt_tokens}-out{self.output_tokens}{c}-{scenario}"


@dataclass(frozen=True)
class Combination:
    model: ModelSpec
    dataset: DatasetSpec
    precision: str

    @property
    def id(self) -> str:
        return f"{self.model.name}-{self.dataset.id}-{self.precision}"

    @property
    def group(self) -> str:
        """Items of one group share a compiled model and run together."""
        return f"{self.model.name}:{self.precision}"


@dataclass(frozen=True)
class PerfCase:
    combo: Combination
    batch_size: int
    spec: ScenarioSpec

    @property
    def scenario(self) -> str:
        return self.spec.name

    @property
    def id(self) -> str:
        return f"{self.combo.id}-bs{self.batch_size}-{self.scenario}"


@dataclass(frozen=True)
class Zoo:
    path: Path
    tier: str
    models: tuple[ModelSpec, ...]
    datasets: Mapping[str, DatasetSpec]
    perf: Mapping[str, float] = field(default_factory=dict)
    # tiers.<tier>.scenarios: {scenario: pick}; None runs every scenario of a model.
    scenarios: Mapping[str, str] | None = None
    # tiers.<tier>.audits; None: the tier runs no integrity audits.
    audits: Mapping[str, int] | None = None
    peak_gemm: int = DEFAULT_PEAK_GEMM
    timeout_s: float = DEFAULT_TIMEOUT_S  # tiers.<tier>.timeout_s: of one model item
    # tiers.<tier>.gate: the speed gate's measurement (xpuperf.gate.judge.GateSettings).
    gate: Mapping[str, float] = field(default_factory=dict)
    # Where each field is: "models.bert-torch.dataset" -> its line in the file.
    lines: Mapping[str, int] = field(default_factory=dict)
    # The LLM serving workloads (xpuperf.zoo.generation), run by suites/llm.
    generation: tuple[GenerationSpec, ...] = ()
    # defaults.tolerances and defaults.max_drop: what --precisions gives a model
    # for a precision its own lists lack.
    default_tolerances: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default_max_drop: Mapping[str, float] = field(default_factory=dict)

    def with_precisions(self, precisions: tuple[str, ...]) -> "Zoo":
        """Every model at ``precisions`` instead of its own list (--precisions): a
        GPU's tf32, bf16 and fp8 without editing the zoo. A precision a model's
        own tolerances (or max_drop) lack takes defaults'; ZooError names a
        precision that has neither."""
        unknown = [p for p in precisions if p not in PRECISIONS]
        if unknown:
            raise ZooError(f"unknown precision(s) {', '.join(map(repr, unknown))} "
                           f"(known: {', '.join(PRECISIONS)})")
        missing = [p for p in precisions if p not in self.default_tolerances]
        if missing:
            raise ZooError(f"{self.path}: defaults.tolerances has no {', '.join(missing)}; add "
                           "one there for every model to run at it")

        def widened(m: ModelSpec) -> ModelSpec:
            return replace(m, precisions=precisions,
                           tolerances={**self.default_tolerances, **m.tolerances},
                           max_drop={**self.default_max_drop, **m.max_drop})
        return replace(self, models=tuple(widened(m) for m in self.models))

    def combinations(self) -> list[Combination]:
        return [Combination(m, self.datasets[m.dataset], p) for m in self.models for p in m.precisions]

    def perf_cases(self, selection: Mapping[str, str] | None = None) -> list[PerfCase]:
        """Every (combination, batch size, scenario) to measure. ``selection``
        ({scenario: pick}, default the tier's) keeps only the scenarios it names,
        at all, the smallest or the largest of each one's batch sizes."""
        selection = self.scenarios if selection is None else selection
        cases = []
        for c in self.combinations():
            for spec in c.model.scenarios:
                if selection is not None and spec.name not in selection:
                    continue
                for bs in pick_batch_sizes(spec.batch_sizes, (selection or {}).get(spec.name, "all")):
                    cases.append(PerfCase(c, bs, spec))
        return cases

