"""zoo.yaml's `generation:` section: the LLM serving workloads (suites/llm).

    generation:
      defaults: {...}          # any workload field, merged under every workload
      workloads:
        llama2-7b: {model: llama2-7b, prompt_tokens: 1024, output_tokens: 128, ...}
        qwen3-8b: {family: qwen3, builder: qwen3, config: {...}, ...}
      mlperf_bounds:           # MLPerf's TTFT/TPOT bounds per model, by loadgen's name
        llama2-70b: {ttft_ms: 2000, tpot_ms: 200}

A workload's `server: {mlperf: llama2-70b}` takes that row's bounds.

A workload names a `model:` of the zoo (its builder, config and seed, tier
merged) or gives its own family, builder and config. Pure, as xpuperf.zoo: the
validator passed in raises the file:line errors.
"""
from __future__ import annotations

from typing import Any, Mapping

from xpuperf.generation.arithmetic import PROBLEMS  # the shipped set's size
from xpuperf.zoo.specs import EndpointAccuracySpec, GenerationSpec, ModelSpec, ServerSpec
from xpuperf.zoo.tiers import TIERS
from xpuperf.zoo.validator import Validator

GEN_SCENARIOS = ("offline", "single_stream", "server")
GEN_PRECISIONS = ("fp32", "fp16", "bf16")
BUILDERS = ("gpt2", "llama", "chatglm2", "qwen3", "qwen3_moe")
# tensor_parallel: N splits these builders' attention heads, key/value heads and
# MLP columns over N ranks (backends/tensor_parallel.py); each must divide.
TP_BUILDERS = ("llama", "qwen3")
TP_SPLIT = ("num_attention_heads", "num_key_value_heads", "intermediate_size")
TOLERANCE_KEYS = ("min_cosine", "max_abs", "min_greedy_match", "max_perplexity_ratio")

WORKLOAD_FIELDS: dict[str, tuple[bool, str]] = {
    "model": (False, "str"),
    "family": (False, "str"),
    "builder": (False, "str"),
    "config": (False, "map"),
    "seed": (False, "int"),
    "precisions": (False, "list"),
    "prompt_tokens": (False, "int"),
    "output_tokens": (False, "int"),
    "requests": (False, "int"),
    "concurrency": (False, "list"),
    "scenarios": (False, "list"),
    "server": (False, "map"),
    "accuracy": (False, "map"),
    "tolerances": (False, "map"),
    "timeout_s": (False, "num"),
    "prefill_chunk": (False, "int"),
    "shared_prefix_tokens": (False, "int"),
    "endpoint_accuracy": (False, "map"),
    "tensor_parallel": (False, "int"),
    "turns": (False, "int"),
    "tiers": (False, "list"),
    "smoke": (False, "map"),
}
SMOKE_FIELDS = {k: (False, kind) for k, (_, kind) in WORKLOAD_FIELDS.items()
                if k not in ("smoke", "model", "tiers")}
SERVER_FIELDS: dict[str, tuple[bool, str]] = {
    "rate": (False, "num"), "load": (False, "num"), "ttft_bound_ms": (False, "num"),
    "tpot_bound_ms": (False, "num"), "search_s": (False, "num"), "max_trials": (False, "int"),
    "mlperf": (False, "str")}
MLPERF_BOUND_FIELDS: dict[str, tuple[bool, str]] = {"ttft_ms": (True, "num"), "tpot_ms": (True, "num")}
ACCURACY_FIELDS: dict[str, tuple[bool, str]] = {
    "greedy_tokens": (False, "int"), "text_tokens": (False, "int")}
# The gate against a server (xpuperf.generation.arithmetic): its score's method and bound.
ENDPOINT_ACCURACY_METHODS = ("exact_match", "reference")
ENDPOINT_ACCURACY_FIELDS: dict[str, tuple[bool, str]] = {
    "min_score": (True, "num"), "method": (False, "str"), "problems": (False, "int"),
    "max_tokens": (False, "int")}
# Without a value anywhere: MLPerf's LLM bounds, and a search of a minute at most.
SERVER_DEFAULTS = {"load": 0.5, "ttft_bound_ms": 2000.0, "tpot_bound_ms": 200.0,
                   "search_s": 60.0, "max_trials": 8}
DEFAULT_TIMEOUT_S = 600.0
REQUIRED = ("precisions", "prompt_tokens", "output_tokens", "requests", "concurrency", "scenarios")


def generation_workloads(v: Validator, raw: Any, tier: str,
                         models: Mapping[str, ModelSpec]) -> tuple[GenerationSpec, ...]:
    if raw is None:
        return ()
    v.fields("generation", raw, {"defaults": (False, "map"), "workloads": (True, "map"),
                                 "mlperf_bounds": (False, "map")})
    mlperf = raw.get("mlperf_bounds") or {}
    for model, bounds in mlperf.items():
        v.fields(f"generation.mlperf_bounds.{model}", bounds, MLPERF_BOUND_FIELDS)
        for key, value in bounds.items():
            if not value > 0:
                v.fail(f"generation.mlperf_bounds.{model}.{key}", f"must be > 0 ms, got {value!r}")
    defaults = raw.get("defaults") or {}
    v.fields("generation.defaults", defaults,
             {k: (False, kind) for k, (_, kind) in WORKLOAD_FIELDS.items()
              if k not in ("model", "tiers")})
    v.fields("generation.defaults.smoke", defaults.get("smoke") or {}, SMOKE_FIELDS)
    # Every workload is checked whichever tier runs; those of other tiers are then left out.
    parsed = [(_tiers(v, name, w), _workload(v, name, w, defaults, tier, models, mlperf))
              for name, w in raw["workloads"].items()]
    return tuple(spec for tiers, spec in parsed if tier in tiers)


def _tiers(v: Validator, name: str, raw: Any) -> tuple[str, ...]:
    """The tiers that run workload ``name`` (its `tiers:`, else every one)."""
    v.fields(f"generation.workloads.{name}", raw, WORKLOAD_FIELDS)
    tiers = raw.get("tiers", TIERS)
    for i, t in enumerate(tiers):
        v.one_of(f"generation.workloads.{name}.tiers[{i}]", t, TIERS, "tier")
    return tuple(tiers)


def _workload(v: Validator, name: str, raw: Any, defaults: Mapping[str, Any], tier: str,
              models: Mapping[str, ModelSpec],
              mlperf: Mapping[str, Mapping[str, float]]) -> GenerationSpec:
    where = f"generation.workloads.{name}"
    v.entry_name(where, name, "workloads")  # a workload shares its model's name at will
    v.fields(where, raw, WORKLOAD_FIELDS)
    smoke = raw.get("smoke") or {}
    v.fields(f"{where}.smoke", smoke, SMOKE_FIELDS)
    merged = _merge({k: x for k, x in defaults.items() if k != "smoke"},
                    {k: x for k, x in raw.items() if k != "smoke"})
    if tier == "smoke":  # the defaults' smoke override, then the workload's
        merged = _merge(_merge(merged, defaults.get("smoke") or {}), smoke)
    src = lambda key: f"{where}.smoke" if tier == "smoke" and key in smoke else where  # noqa: E731

    if "model" in merged:
        for key in ("family", "builder"):
            if key in merged:
                v.fail(f"{src(key)}.{key}", f"comes from model {merged['model']!r}; drop it here")
        v.one_of(f"{where}.model", merged["model"], tuple(models), "model")
        model = models[merged["model"]]
        family, builder, seed = model.family, model.builder, model.seed
        config = {**model.config, **(merged.get("config") or {})}
    else:
        for key in ("family", "builder", "config"):
            if key not in merged:
                v.fail(where, f"missing {key!r}: give `model:` (a zoo model) or family, builder "
                       "and config")
        family, builder, config = merged["family"], merged["builder"], merged["config"]
        seed = merged.get("seed", 0)
    v.one_of(f"{src('builder')}.builder", builder, BUILDERS, "generation builder")
    for key in REQUIRED:
        if key not in merged:
            v.fail(where, f"missing {key!r} (here or under generation.defaults)")
    for key in ("prompt_tokens", "output_tokens", "requests"):
        if merged[key] < 1:
            v.fail(f"{src(key)}.{key}", f"must be >= 1, got {merged[key]}")
    precisions = merged["precisions"]
    for i, p in enumerate(precisions):
        v.one_of(f"{src('precisions')}.precisions[{i}]", p, GEN_PRECISIONS, "precision")
    for i, c in enumerate(merged["concurrency"]):
        if not (isinstance(c, int) and not isinstance(c, bool) and c >= 1):
            v.fail(f"{src('concurrency')}.concurrency[{i}]", f"must be an integer >= 1, got {c!r}")
    for i, s in enumerate(merged["scenarios"]):
        v.one_of(f"{src('scenarios')}.scenarios[{i}]", s, GEN_SCENARIOS, "scenario")
    server = {**SERVER_DEFAULTS, **(merged.get("server") or {})}
    v.fields(f"{src('server')}.server", server, SERVER_FIELDS)
    for key in ("rate", "load", "ttft_bound_ms", "tpot_bound_ms", "search_s", "max_trials"):
        if server.get(key) is not None and not server[key] > 0:
            v.fail(f"{src('server')}.server.{key}", f"must be > 0, got {server[key]!r}")
    if server["load"] > 1:
        v.fail(f"{src('server')}.server.load", f"is a fraction of the offline rate in (0, 1], "
               f"got {server['load']}")
    bounds_source = "zoo.yaml"
    if "mlperf" in server:  # its row's bounds replace those of generation.defaults
        row = server["mlperf"]
        v.one_of(f"{src('server')}.server.mlperf", row, tuple(mlperf),
                 "model of generation.mlperf_bounds")
        own = {**(raw.get("server") or {}),
               **((smoke.get("server") or {}) if tier == "smoke" else {})}
        for key in ("ttft_bound_ms", "tpot_bound_ms"):
            if key in own:
                v.fail(f"{src('server')}.server.{key}", f"comes from mlperf {row!r}; give one "
                       f"of the two")
        server.update(ttft_bound_ms=mlperf[row]["ttft_ms"], tpot_bound_ms=mlperf[row]["tpot_ms"])
        bounds_source = f"MLPerf's {row} (zoo.yaml generation.mlperf_bounds)"
    accuracy = {"greedy_tokens": merged["output_tokens"], "text_tokens": 256,
                **(merged.get("accuracy") or {})}
    v.fields(f"{src('accuracy')}.accuracy", accuracy, ACCURACY_FIELDS)
    if accuracy["text_tokens"] < 2 or accuracy["greedy_tokens"] < 1:
        v.fail(f"{src('accuracy')}.accuracy", "needs greedy_tokens >= 1 and text_tokens >= 2")
    tolerances = merged.get("tolerances") or {}
    for p in precisions:
        if p not in tolerances:
            v.fail(f"{src('tolerances')}.tolerances", f"no tolerance for precision {p!r}; add one "
                   "here or under generation.defaults.tolerances")
    for p, tol in tolerances.items():
        v.fields(f"{src('tolerances')}.tolerances.{p}", tol, {k: (False, "num") for k in TOLERANCE_KEYS})
    timeout = merged.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not timeout > 0:
        v.fail(f"{src('timeout_s')}.timeout_s", f"must be > 0 seconds, got {timeout!r}")
    for key in ("prefill_chunk", "shared_prefix_tokens"):
        if key in merged and not 1 <= merged[key] < merged["prompt_tokens"]:
            v.fail(f"{src(key)}.{key}", f"must be >= 1 and below prompt_tokens "
                   f"({merged['prompt_tokens']}), got {merged[key]}: drop it for whole prompts")
    turns = merged.get("turns", 1)
    if turns < 1:
        v.fail(f"{src('turns')}.turns", f"must be >= 1 (1: one request a conversation), got {turns}")
    ranks = merged.get("tensor_parallel", 1)
    if ranks < 1:
        v.fail(f"{src('tensor_parallel')}.tensor_parallel", f"must be >= 1 ranks, got {ranks}")
    why = tensor_parallel_unsupported(builder, config, ranks) if ranks > 1 else ""
    if why:
        v.fail(f"{src('tensor_parallel')}.tensor_parallel", f"{why}: pick a tensor_parallel "
               "that divides them, or 1")
    return GenerationSpec(
        name=name, family=family, builder=builder, config=config, seed=int(seed),
        precisions=tuple(precisions), prompt_tokens=merged["prompt_tokens"],
        output_tokens=merged["output_tokens"], requests=merged["requests"],
        concurrency=tuple(merged["concurrency"]), scenarios=tuple(merged["scenarios"]),
        server=ServerSpec(rate=server.get("rate"), load=float(server["load"]),
                          ttft_bound_ms=float(server["ttft_bound_ms"]),
                          tpot_bound_ms=float(server["tpot_bound_ms"]),
                          search_s=float(server["search_s"]), max_trials=int(server["max_trials"]),
                          bounds_source=bounds_source),
        greedy_tokens=accuracy["greedy_tokens"], text_tokens=accuracy["text_tokens"],
        tolerances={p: dict(t) for p, t in tolerances.items()}, timeout_s=float(timeout),
        prefill_chunk=merged.get("prefill_chunk"),
        shared_prefix_tokens=merged.get("shared_prefix_tokens", 0),
        endpoint_accuracy=_endpoint_accuracy(v, f"{src('endpoint_accuracy')}.endpoint_accuracy",
                                             merged.get("endpoint_accuracy")),
        tensor_parallel=ranks, turns=turns)


def _endpoint_accuracy(v: Validator, where: str, raw: Any) -> EndpointAccuracySpec | None:
    if raw is None:
        return None
    v.fields(where, raw, ENDPOINT_ACCURACY_FIELDS)
    gate = {"method": "exact_match", "problems": PROBLEMS, "max_tokens": 16, **raw}
    v.one_of(f"{where}.method", gate["method"], ENDPOINT_ACCURACY_METHODS, "method")
    if not 0 < gate["min_score"] <= 1:
        v.fail(f"{where}.min_score", f"is a share of the problems in (0, 1], got "
               f"{gate['min_score']}")
    if not 1 <= gate["problems"] <= PROBLEMS:
        v.fail(f"{where}.problems", f"must be 1 to {PROBLEMS} (the shipped set), got "
               f"{gate['problems']}")
    if gate["max_tokens"] < 1:
        v.fail(f"{where}.max_tokens", f"must be >= 1, got {gate['max_tokens']}")
    return EndpointAccuracySpec(float(gate["min_score"]), gate["method"], gate["problems"],
                                gate["max_tokens"])


def tensor_parallel_unsupported(builder: str, config: Mapping[str, Any], ranks: int) -> str:
    """Why a model of ``builder`` and ``config`` cannot be split over ``ranks``, or ""."""
    if builder not in TP_BUILDERS:
        return f"tensor parallelism splits the builders {', '.join(TP_BUILDERS)}, not {builder!r}"
    # Without num_key_value_heads, transformers' configs take num_attention_heads.
    sizes = {k: config.get(k, config.get("num_attention_heads")) for k in TP_SPLIT}
    uneven = [f"{k}={v}" for k, v in sizes.items() if not isinstance(v, int) or v % ranks]
    return f"{', '.join(uneven)} not divisible by {ranks} ranks" if uneven else ""


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: mappings merge one level deep (tolerances per precision
    too), other values replace."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **{k: ({**out[key][k], **x} if isinstance(x, dict) and
                                           isinstance(out[key].get(k), dict) else x)
                                       for k, x in value.items()}}
        else:
            out[key] = value
    return out
