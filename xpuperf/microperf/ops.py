"""The micro-benchmark ops: for each, its group, how its inputs are made from a
workload's arguments, the framework's implementation (torch), and its FLOP and
byte formulas, in one table, so that TFLOP/s, GB/s and arithmetic intensity of
every op come out of the same place.

Conventions: a multiply-add is 2 FLOPs; an elementwise op counts the FLOPs per
element its table row says (exp 1, gelu 8, silu 4: the arithmetic of their usual
formula); bytes are the op's unfused traffic, each input read once and each
output written once, at its storage size. Arguments follow xpu-perf's
workloads (batch_size/dim_size, M/K/N, src_batch_size/dst_batch_size);
dtypes take xpuperf's precision names or xpu-perf's (float32, tfloat32, ...).

A backend may replace any op's implementation with its own (backends.base
.OpProvider); the inputs, the formulas and the correctness check stay these.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from xpuperf.ceilings import element_bytes
from xpuperf.microperf.workloads import DTYPE_ALIASES


class _Lazy:
    """A module imported at its first use: the table is read at collection,
    which imports no framework (xpuperf.plugin); its entries call torch."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


torch = _Lazy("torch")
F = _Lazy("torch.nn.functional")

GROUPS = ("compute", "memory", "llm_ops", "xccl")
# Storage dtype of each precision (tf32 stores fp32; its matmuls round to TF32).
STORAGE = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16",
           "fp8": "float8_e4m3fn", "int8": "int8", "int32": "int32", "int64": "int64",
           "fp64": "float64"}


def precision(dtype: str) -> str:
    """xpuperf's name of a workload's dtype; an unknown one is an error naming both lists."""
    name = DTYPE_ALIASES.get(dtype, dtype)
    if name not in STORAGE:
        raise ValueError(f"dtype {dtype!r} is not known (known: {', '.join(sorted(STORAGE))}, "
                         f"or xpu-perf's {', '.join(DTYPE_ALIASES)})")
    return name


@dataclass(frozen=True)
class Tensors:
    """An op's inputs (name -> tensor, on one device) and the names of those its
    first axis does not run along (a table, a weight): the correctness check
    cuts the others to the first rows."""

    values: dict[str, Any]
    shared: frozenset[str] = frozenset()
    # Kept in host memory (pinned where the case says "pinned": true): a copy's
    # host end; everything else goes to the provider's device.
    host: frozenset[str] = frozenset()


@dataclass(frozen=True)
class OpSpec:
    name: str
    group: str
    inputs: Callable[[Mapping[str, Any], str, Any], Tensors]  # (args, precision, generator)
    run: Callable[..., Any]  # the framework's implementation: run(**inputs) -> tensor
    flops: Callable[[Mapping[str, Any]], float]
    bytes: Callable[[Mapping[str, Any], int, int], float]  # (args, input size, output size)
    dtypes: tuple[str, ...] = ("fp32", "fp16", "bf16")
    out_dtype: Callable[[str], str] = lambda p: p
    # False: each output row depends on every input row (scatter): checked whole.
    row_separable: bool = True
    # The axis the correctness check cuts inputs and output along (heads for
    # attention, whose batch may be 1).
    cut_axis: int = 0
    # A small case's arguments (EXAMPLES): what the contract kit checks a
    # backend's own kernel on.
    example: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""


def _randn(shape: tuple[int, ...], precision: str, gen: Any, scale: float = 1.0) -> Any:
    if precision == "int8":
        return torch.randint(-64, 64, shape, generator=gen, dtype=torch.int8)
    x = torch.randn(shape, generator=gen) * scale
    return x.to(getattr(torch, STORAGE[precision]))


def _index(high: int, shape: tuple[int, ...], gen: Any) -> Any:
    return torch.randint(0, high, shape, generator=gen, dtype=torch.int64)


def _rows(a: Mapping[str, Any]) -> int:
    return int(a["batch_size"]) * int(a["dim_size"])


# --------------------------------------------------------------------------- implementations

def _gemm(a: Any, b: Any, precision: str = "fp32") -> Any:
    if precision == "int8":
        return torch._int_mm(a, b)
    if precision == "fp8":
        one = torch.ones((), device=a.device)
        # _scaled_mm takes its second operand column-major.
        return torch._scaled_mm(a, b.t().contiguous().t(), scale_a=one, scale_b=one,
                                out_dtype=torch.bfloat16)
    return torch.matmul(a, b)


def _sdpa(q: Any, k: Any, v: Any) -> Any:
    q_len, kv_len = q.shape[-2], k.shape[-2]
    if q_len == 1:
        return F.scaled_dot_product_attention(q, k, v)
    # Causal, aligned at the end: query i sees the cache and queries <= i (is_causal
    # aligns at the start, which is wrong for decode with q_len > 1).
    visible = torch.ones(q_len, kv_len, dtype=torch.bool, device=q.device).tril(kv_len - q_len)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=visible)


def _causal_pairs(q_len: int, kv_len: int) -> int:
    return sum(kv_len - q_len + 1 + i for i in range(q_len)) if q_len > 1 else kv_len


def _moe_gating(x: Any, w: Any, topk: int = 2) -> Any:
    probs = torch.softmax((x @ w).float(), dim=-1)
    return torch.topk(probs, topk, dim=-1).values


SOFTMAX_MODES = ("pre-softmax", "post-softmax")


def _softmax_mode(a: Mapping[str, Any]) -> str:
    mode = str(a.get("compute_mode", "pre-softmax"))
    if mode not in SOFTMAX_MODES:
        raise ValueError(f"moe_softmax_topk: compute_mode {mode!r} is not one of "
                         f"{', '.join(SOFTMAX_MODES)}")
    return mode


def _moe_softmax_topk(gating_output: Any, topk: int, mode: str) -> Any:
    """xpu-perf's two orders: softmax over the experts, top-k, the k weights
    renormalised (pre-softmax); or top-k of the logits, softmax over those k."""
    if mode == "pre-softmax":
        weights = torch.topk(torch.softmax(gating_output, dim=-1), topk, dim=-1).values
        return weights / weights.sum(dim=-1, keepdim=True)
    return torch.softmax(torch.topk(gating_output, topk, dim=-1).values, dim=-1)


def _swiglu(hidden_states: Any) -> Any:
    gate, up = torch.chunk(hidden_states, 2, dim=-1)
    return F.silu(gate) * up


def _tokens_per_expert(a: Mapping[str, Any]) -> list[int]:
    """Each expert's token count: tokens_per_expert is one count for all
    num_experts, or a list with one per expert (ragged; num_experts, where
    given, must be its length)."""
    given = a["tokens_per_expert"]
    if not isinstance(given, (list, tuple)):
        return [int(given)] * int(a["num_experts"])
    if "num_experts" in a and int(a["num_experts"]) != len(given):
        raise ValueError(f"moe_group_gemm: tokens_per_expert lists {len(given)} experts, "
                         f"num_experts says {a['num_experts']}: give one count per expert")
    return [int(t) for t in given]


def _group_gemm_inputs(a: Mapping[str, Any], p: str, g: Any) -> Tensors:
    tokens = _tokens_per_expert(a)
    K, N = int(a["K"]), int(a["N"])
    return Tensors({"input": _randn((sum(tokens), K), p, g),
                    "mat2": _randn((len(tokens), K, N), p, g, 1 / math.sqrt(K)),
                    "tokens": tuple(tokens)}, frozenset({"input", "tokens"}))


def _group_gemm(input: Any, mat2: Any, tokens: tuple[int, ...]) -> Any:
    """The tokens, grouped by expert in order, each group times its expert's weight."""
    return torch.cat([x @ w for x, w in zip(torch.split(input, tokens), mat2)])


def _copy(src: Any, out: Any) -> Any:
    # Into a buffer made beforehand: an allocation (a pinned one above all) is no
    # part of a copy's time. The runner places each end (Tensors.host).
    return out.copy_(src, non_blocking=True)


# --------------------------------------------------------------------------- the table

def _positive(shape: tuple[int, ...], precision: str, gen: Any) -> Any:
    """Values in [0.5, 1.5): the domain of log, sqrt and a divisor, away from 0."""
    return (torch.rand(shape, generator=gen) + 0.5).to(getattr(torch, STORAGE[precision]))


def _elementwise(name: str, fn: Callable[..., Any], flops_per: float, arity: int = 1,
                 group: str = "memory", positive: bool = False, notes: str = "") -> OpSpec:
    """An op on batch_size x dim_size elements; ``positive``: its last input is
    drawn from (0.5, 1.5) (log's and sqrt's argument, div's divisor)."""
    names = ("a", "b")[:arity]

    def inputs(a, p, g):
        shape = (int(a["batch_size"]), int(a["dim_size"]))
        return Tensors({n: _positive(shape, p, g) if positive and n == names[-1]
                        else _randn(shape, p, g) for n in names})
    return OpSpec(name, group, inputs, fn, lambda a: flops_per * _rows(a),
                  lambda a, si, so: _rows(a) * (arity * si + so), notes=notes)


def _reduction(name: str, fn: Callable[..., Any]) -> OpSpec:
    """batch_size rows of dim_size reduced to one value each (one FLOP an element)."""
    return OpSpec(name, "memory",
                  lambda a, p, g: Tensors({"input": _randn((int(a["batch_size"]),
                                                            int(a["dim_size"])), p, g)}),
                  fn, lambda a: float(_rows(a)),
                  lambda a, si, so: _rows(a) * si + int(a["batch_size"]) * so)


def _build() -> dict[str, OpSpec]:
    def gemm_inputs(a, p, g):
        M, K, N = int(a["M"]), int(a["K"]), int(a["N"])
        # Scaled so that an fp8 product stays within e4m3's range.
        return Tensors({"a": _randn((M, K), p, g), "b": _randn((K, N), p, g, 1 / math.sqrt(K)),
                        "precision": p}, frozenset({"b", "precision"}))

    gemm_out = {"int8": "int32", "fp8": "bf16"}
    specs = [
        OpSpec("gemm", "compute", gemm_inputs, _gemm,
               lambda a: 2.0 * int(a["M"]) * int(a["K"]) * int(a["N"]),
               lambda a, si, so: (int(a["M"]) * int(a["K"]) + int(a["K"]) * int(a["N"])) * si
               + int(a["M"]) * int(a["N"]) * so,
               dtypes=("fp32", "tf32", "fp16", "bf16", "fp8", "int8"),
               out_dtype=lambda p: gemm_out.get(p, p),
               notes="int8: torch._int_mm to int32; fp8: e4m3 through torch._scaled_mm to bf16"),
        OpSpec("batch_gemm", "compute",
               lambda a, p, g: Tensors({
                   "input": _randn((int(a["batch_size"]), int(a["M"]), int(a["K"])), p, g),
                   "mat2": _randn((int(a["batch_size"]), int(a["K"]), int(a["N"])), p, g,
                                  1 / math.sqrt(int(a["K"])))}),
               lambda input, mat2: torch.bmm(input, mat2),
               lambda a: 2.0 * int(a["batch_size"]) * int(a["M"]) * int(a["K"]) * int(a["N"]),
               lambda a, si, so: int(a["batch_size"]) * ((int(a["M"]) * int(a["K"]) + int(a["K"])
                                                           * int(a["N"])) * si
                                                          + int(a["M"]) * int(a["N"]) * so),
               dtypes=("fp32", "tf32", "fp16", "bf16")),
        _elementwise("add", lambda a, b: torch.add(a, b), 1, 2),
        _elementwise("sub", lambda a, b: torch.sub(a, b), 1, 2),
        _elementwise("mul", lambda a, b: torch.mul(a, b), 1, 2),
        # xpu-perf's special-function ops: one FLOP an element, as its formulas count them.
        _elementwise("div", lambda a, b: torch.div(a, b), 1, 2, "compute", positive=True),
        _elementwise("exp", lambda a: torch.exp(a), 1, group="compute"),
        _elementwise("log", lambda a: torch.log(a), 1, group="compute", positive=True),
        _elementwise("sqrt", lambda a: torch.sqrt(a), 1, group="compute", positive=True),
        _elementwise("sin", lambda a: torch.sin(a), 1, group="compute"),
        _elementwise("cos", lambda a: torch.cos(a), 1, group="compute"),
        _elementwise("gelu", lambda a: F.gelu(a), 8, group="compute", notes="erf form"),
        _elementwise("silu", lambda a: F.silu(a), 4, group="compute"),
        OpSpec("cast", "memory",
               lambda a, p, g: Tensors({"a": _randn((int(a["batch_size"]), int(a["dim_size"])),
                                                    p, g), "to": _cast_target(p)},
                                       frozenset({"to"})),
               lambda a, to: a.to(getattr(torch, STORAGE[to])), lambda a: 0.0,
               lambda a, si, so: _rows(a) * (si + so), out_dtype=_cast_target,
               notes="fp32 to bf16, any other dtype to fp32"),
        _reduction("reduce_sum", lambda input: torch.sum(input, dim=-1)),
        _reduction("reduce_max", lambda input: torch.amax(input, dim=-1)),
        _reduction("reduce_min", lambda input: torch.amin(input, dim=-1)),
        OpSpec("topk", "memory",
               lambda a, p, g: Tensors({"input": _randn((int(a["batch_size"]),
                                                         int(a["dim_size"])), p, g),
                                        "k": int(a["k"])}, frozenset({"k"})),
               lambda input, k: torch.topk(input, k, dim=-1).values, lambda a: float(_rows(a)),
               # values and int64 indices out
               lambda a, si, so: _rows(a) * si + int(a["batch_size"]) * int(a["k"]) * (so + 8),
               notes="values checked (indices of ties may differ)"),
        OpSpec("softmax", "memory",
               lambda a, p, g: Tensors({"input": _randn((int(a["batch_size"]),
                                                         int(a["dim_size"])), p, g)}),
               lambda input: torch.softmax(input, dim=-1), lambda a: 5.0 * _rows(a),
               lambda a, si, so: _rows(a) * (si + so)),
        OpSpec("layer_norm", "memory",
               lambda a, p, g: Tensors({"input": _randn((int(a["batch_size"]),
                                                         int(a["dim_size"])), p, g),
                                        "weight": _randn((int(a["dim_size"]),), p, g),
                                        "bias": _randn((int(a["dim_size"]),), p, g)},
                                       frozenset({"weight", "bias"})),
               lambda input, weight, bias: F.layer_norm(input, weight.shape, weight, bias),
               lambda a: 8.0 * _rows(a),
               lambda a, si, so: _rows(a) * (si + so) + 2 * int(a["dim_size"]) * si),
        OpSpec("rms_norm", "memory",
               lambda a, p, g: Tensors({"input": _randn((int(a["batch_size"]),
                                                         int(a["dim_size"])), p, g),
                                        "weight": _randn((int(a["dim_size"]),), p, g)},
                                       frozenset({"weight"})),
               lambda input, weight: F.rms_norm(input, weight.shape, weight, 1e-6),
               lambda a: 4.0 * _rows(a),
               lambda a, si, so: _rows(a) * (si + so) + int(a["dim_size"]) * si),
        OpSpec("embedding", "memory",
               lambda a, p, g: Tensors({"input": _index(int(a["src_batch_size"]),
                                                        (int(a["dst_batch_size"]),), g),
                                        "weight": _randn((int(a["src_batch_size"]),
                                                          int(a["dim_size"])), p, g)},
                                       frozenset({"weight"})),
               lambda input, weight: F.embedding(input, weight), lambda a: 0.0,
               lambda a, si, so: int(a["dst_batch_size"]) * (int(a["dim_size"]) * (si + so) + 8)),
        OpSpec("index_select", "memory",
               lambda a, p, g: Tensors({"index": _index(int(a["src_batch_size"]),
                                                        (int(a["dst_batch_size"]),), g),
                                        "input": _randn((int(a["src_batch_size"]),
                                                         int(a["dim_size"])), p, g)},
                                       frozenset({"input"})),
               lambda index, input: torch.index_select(input, 0, index), lambda a: 0.0,
               lambda a, si, so: int(a["dst_batch_size"]) * (int(a["dim_size"]) * (si + so) + 8)),
        OpSpec("gather", "memory",
               lambda a, p, g: Tensors({"index": _index(int(a["src_batch_size"]),
                                                        (int(a["dst_batch_size"]),
                                                         int(a["dim_size"])), g),
                                        "input": _randn((int(a["src_batch_size"]),
                                                         int(a["dim_size"])), p, g)},
                                       frozenset({"input"})),
               lambda index, input: torch.gather(input, 0, index), lambda a: 0.0,
               lambda a, si, so: int(a["dst_batch_size"]) * int(a["dim_size"]) * (si + so + 8)),
        OpSpec("scatter", "memory",
               lambda a, p, g: Tensors({"dest": _randn((int(a["src_batch_size"]),
                                                        int(a["dim_size"])), p, g),
                                        "index": _unique_rows(int(a["src_batch_size"]),
                                                              int(a["dst_batch_size"]),
                                                              int(a["dim_size"]), g),
                                        "src": _randn((int(a["dst_batch_size"]),
                                                       int(a["dim_size"])), p, g)}),
               lambda dest, index, src: dest.scatter(0, index, src), lambda a: 0.0,
               # out of place: the destination is read and written whole
               lambda a, si, so: int(a["src_batch_size"]) * int(a["dim_size"]) * (si + so)
               + int(a["dst_batch_size"]) * int(a["dim_size"]) * (si + 8),
               row_separable=False, notes="distinct target rows: the result is defined"),
        OpSpec("index_add", "memory",
               lambda a, p, g: Tensors({
                   "dest": _randn((int(a["dst_batch_size"]), int(a["dim_size"])), p, g),
                   "index": _index(int(a["dst_batch_size"]), (int(a["src_batch_size"]),), g),
                   "src": _randn((int(a["src_batch_size"]), int(a["dim_size"])), p, g)},
                   frozenset({"index"})),
               # out of place: an in-place add would grow the destination call after call
               lambda dest, index, src: dest.index_add(0, index, src),
               lambda a: float(int(a["src_batch_size"]) * int(a["dim_size"])),
               lambda a, si, so: int(a["dst_batch_size"]) * int(a["dim_size"]) * (si + so)
               + int(a["src_batch_size"]) * (int(a["dim_size"]) * si + 8),
               # A destination row sums source rows from anywhere: checked on its
               # first columns, every row.
               cut_axis=1, notes="src rows added into dest rows by index (repeats sum)"),
        OpSpec("conv2d", "compute",
               lambda a, p, g: Tensors({
                   "input": _randn((int(a["batch_size"]), int(a["in_channels"]), int(a["height"]),
                                    int(a["width"])), p, g),
                   "weight": _randn((int(a["out_channels"]), int(a["in_channels"]),
                                     int(a["kernel_size"]), int(a["kernel_size"])), p, g,
                                    1 / math.sqrt(int(a["in_channels"])
                                                  * int(a["kernel_size"]) ** 2)),
                   "padding": int(a["kernel_size"]) // 2}, frozenset({"weight", "padding"})),
               lambda input, weight, padding: F.conv2d(input, weight, padding=padding),
               lambda a: 2.0 * int(a["batch_size"]) * int(a["out_channels"]) * int(a["height"])
               * int(a["width"]) * int(a["in_channels"]) * int(a["kernel_size"]) ** 2,
               lambda a, si, so: (int(a["batch_size"]) * int(a["in_channels"]) * int(a["height"])
                                  * int(a["width"]) + int(a["out_channels"]) * int(a["in_channels"])
                                  * int(a["kernel_size"]) ** 2) * si
               + int(a["batch_size"]) * int(a["out_channels"]) * int(a["height"])
               * int(a["width"]) * so,
               dtypes=("fp32", "tf32", "fp16", "bf16"), notes="stride 1, same padding"),
        OpSpec("sdpa", "llm_ops",
               lambda a, p, g: Tensors({
                   n: _randn((int(a["batch_size"]), int(a["num_heads"]),
                              int(a["q_len"] if n == "q" else a["kv_len"]), int(a["head_dim"])),
                             p, g) for n in ("q", "k", "v")}),
               _sdpa,
               lambda a: 4.0 * int(a["batch_size"]) * int(a["num_heads"]) * int(a["head_dim"])
               * _causal_pairs(int(a["q_len"]), int(a["kv_len"])),
               lambda a, si, so: int(a["batch_size"]) * int(a["num_heads"]) * int(a["head_dim"])
               * (int(a["q_len"]) * (si + so) + 2 * int(a["kv_len"]) * si),
               cut_axis=1,
               notes="causal, aligned at the end: prefill q_len = kv_len, decode q_len 1 or 4 "
                     "against a KV cache of kv_len; FLOPs count the visible pairs"),
        OpSpec("moe_gating", "llm_ops",
               lambda a, p, g: Tensors({
                   "x": _randn((int(a["num_tokens"]), int(a["hidden_size"])), p, g),
                   "w": _randn((int(a["hidden_size"]), int(a["num_experts"])), p, g,
                               1 / math.sqrt(int(a["hidden_size"]))),
                   "topk": int(a["topk"])}, frozenset({"w", "topk"})),
               _moe_gating,
               lambda a: int(a["num_tokens"]) * int(a["num_experts"])
               * (2.0 * int(a["hidden_size"]) + 5),
               lambda a, si, so: (int(a["num_tokens"]) + int(a["num_experts"]))
               * int(a["hidden_size"]) * si + int(a["num_tokens"]) * int(a["topk"]) * 4,
               out_dtype=lambda p: "fp32",
               notes="router GEMM, softmax in fp32, top-k weights"),
        OpSpec("moe_gating_gemm", "llm_ops",
               lambda a, p, g: Tensors({
                   "hidden_states": _randn((int(a["num_tokens"]), int(a["hidden_size"])), p, g),
                   "gating_weight": _randn((int(a["num_experts"]), int(a["hidden_size"])), p, g,
                                           1 / math.sqrt(int(a["hidden_size"])))},
                   frozenset({"gating_weight"})),
               lambda hidden_states, gating_weight: hidden_states @ gating_weight.t(),
               lambda a: 2.0 * int(a["num_tokens"]) * int(a["hidden_size"]) * int(a["num_experts"]),
               lambda a, si, so: (int(a["num_tokens"]) + int(a["num_experts"]))
               * int(a["hidden_size"]) * si + int(a["num_tokens"]) * int(a["num_experts"]) * so,
               notes="the router's logits: tokens x gating weight^T"),
        OpSpec("moe_softmax_topk", "llm_ops",
               lambda a, p, g: Tensors({
                   "gating_output": _randn((int(a["num_tokens"]), int(a["num_experts"])), p, g),
                   "topk": int(a["topk"]), "mode": _softmax_mode(a)},
                   frozenset({"topk", "mode"})),
               _moe_softmax_topk,
               # top-k compares every logit; softmax (5 an element) runs over all
               # experts before it or over the k chosen after; pre-softmax
               # renormalises the k weights (2 an element)
               lambda a: int(a["num_tokens"]) * (
                   int(a["num_experts"]) + (5 * int(a["num_experts"]) + 2 * int(a["topk"])
                                            if _softmax_mode(a) == "pre-softmax"
                                            else 5 * int(a["topk"]))),
               # weights and int64 expert indices out
               lambda a, si, so: int(a["num_tokens"]) * (int(a["num_experts"]) * si
                                                         + int(a["topk"]) * (so + 8)),
               notes="weights checked (the experts of ties may differ)"),
        OpSpec("swiglu", "llm_ops",
               lambda a, p, g: Tensors({"hidden_states": _randn(
                   (int(a["num_tokens"]), 2 * int(a["hidden_size"])), p, g)}),
               _swiglu, lambda a: 5.0 * int(a["num_tokens"]) * int(a["hidden_size"]),
               lambda a, si, so: int(a["num_tokens"]) * int(a["hidden_size"]) * (2 * si + so),
               notes="silu(first half) x second half; silu 4 FLOPs, the product 1"),
        OpSpec("add_rms_norm", "llm_ops",
               lambda a, p, g: Tensors({
                   n: _randn((int(a["num_tokens"]), int(a["hidden_size"])), p, g)
                   for n in ("hidden_states", "residual")} | {
                   "norm_weight": _randn((int(a["hidden_size"]),), p, g)},
                   frozenset({"norm_weight"})),
               lambda hidden_states, residual, norm_weight: F.rms_norm(
                   hidden_states + residual, norm_weight.shape, norm_weight, 1e-5),
               lambda a: 5.0 * int(a["num_tokens"]) * int(a["hidden_size"]),
               # xpu-perf's traffic: both inputs and the weight read, the residual
               # sum (the next layer's residual) and the normalised output written
               lambda a, si, so: int(a["num_tokens"]) * int(a["hidden_size"]) * 2 * (si + so)
               + int(a["hidden_size"]) * si,
               notes="rms_norm(hidden_states + residual), eps 1e-5"),
        OpSpec("moe_group_gemm", "llm_ops", _group_gemm_inputs, _group_gemm,
               lambda a: 2.0 * sum(_tokens_per_expert(a)) * int(a["K"]) * int(a["N"]),
               lambda a, si, so: (sum(_tokens_per_expert(a)) * int(a["K"])
                                  + len(_tokens_per_expert(a)) * int(a["K"]) * int(a["N"])) * si
               + sum(_tokens_per_expert(a)) * int(a["N"]) * so,
               dtypes=("fp32", "fp16", "bf16"),
               # An output column needs every token but one weight column: the
               # check cuts the weights' and the output's last axis.
               cut_axis=-1,
               notes="grouped GEMM: each expert's tokens (tokens_per_expert: a count for "
                     "all, or one per expert, ragged) times its own weight"),
    ]
    def copy_inputs(host: frozenset[str]) -> Callable[[Mapping[str, Any], str, Any], Tensors]:
        def make(a, p, g):
            src = _randn((int(a["batch_size"]), int(a["dim_size"])), p, g)
            return Tensors({"src": src, "out": torch.empty_like(src)}, host=host)
        return make

    ends = {"host2device": frozenset({"src"}), "device2host": frozenset({"out"}),
            "device2device": frozenset()}
    copies = [OpSpec(name, "memory", copy_inputs(host), _copy, lambda a: 0.0,
                     lambda a, si, so: _rows(a) * si, dtypes=("fp32", "fp16", "bf16", "int8"),
                     notes="bytes: one direction; host memory pinned where the case says "
                           "pinned: true")
              for name, host in ends.items()]
    return {s.name: replace(s, example=EXAMPLES[s.name]) for s in specs + copies}


_ROWS = {"batch_size": 16, "dim_size": 256}
_INDEXED = {"src_batch_size": 64, "dst_batch_size": 32, "dim_size": 64}
EXAMPLES: dict[str, dict[str, Any]] = {
    "gemm": {"M": 32, "K": 64, "N": 48},
    "batch_gemm": {"batch_size": 2, "M": 16, "K": 32, "N": 24},
    **{op: _ROWS for op in ("add", "sub", "mul", "div", "exp", "log", "sqrt", "sin", "cos",
                            "gelu", "silu", "cast", "reduce_sum", "reduce_max", "reduce_min",
                            "softmax", "layer_norm", "rms_norm", "host2device", "device2host",
                            "device2device")},
    "topk": {**_ROWS, "k": 4},
    **{op: _INDEXED for op in ("embedding", "index_select", "gather", "scatter", "index_add")},
    "conv2d": {"batch_size": 2, "in_channels": 4, "out_channels": 8, "height": 8, "width": 8,
               "kernel_size": 3},
    "sdpa": {"batch_size": 1, "num_heads": 2, "q_len": 4, "kv_len": 32, "head_dim": 16},
    "moe_gating": {"num_tokens": 16, "hidden_size": 32, "num_experts": 8, "topk": 2},
    "moe_group_gemm": {"tokens_per_expert": [8, 3, 0, 13], "K": 32, "N": 16},
    "moe_gating_gemm": {"num_tokens": 16, "hidden_size": 32, "num_experts": 8},
    "moe_softmax_topk": {"num_tokens": 16, "num_experts": 8, "topk": 2,
                         "compute_mode": "pre-softmax"},
    "swiglu": {"num_tokens": 16, "hidden_size": 32},
    "add_rms_norm": {"num_tokens": 16, "hidden_size": 64},
}


def _cast_target(p: str) -> str:
    return "bf16" if p == "fp32" else "fp32"


def _unique_rows(rows: int, count: int, dim: int, gen: Any) -> Any:
    if count > rows:
        raise ValueError(f"scatter: dst_batch_size {count} > src_batch_size {rows}: the rows "
                         "written must be distinct for a defined result")
    return torch.randperm(rows, generator=gen)[:count].unsqueeze(1).expand(count, dim).contiguous()


_TABLE: dict[str, OpSpec] = {}


def table() -> dict[str, OpSpec]:
    """The op table, built once (torch is imported when an op runs)."""
    if not _TABLE:
        _TABLE.update(_build())
    return _TABLE


@dataclass(frozen=True)
class Figures:
    """What one measured latency makes of an op's formulas (xpu-perf's summary
    fields, and the arithmetic intensity the roofline plots)."""

    flops: float
    bytes: float
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        s = self.seconds
        return {"latency(us)": s * 1e6, "mem_bw(GB/s)": self.bytes / s / 1e9 if s else None,
                "calc_flops_power(tflops)": self.flops / s / 1e12 if s and self.flops else None,
                "flops": self.flops, "bytes": self.bytes,
                "arithmetic_intensity": self.flops / self.bytes if self.bytes else None,
                **self.extra}


def figures(spec: OpSpec, args: Mapping[str, Any], p: str, seconds: float) -> Figures:
    return Figures(spec.flops(args),
                   spec.bytes(args, element_bytes(p), element_bytes(spec.out_dtype(p))), seconds)
