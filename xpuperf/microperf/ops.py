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


def _copy(src: Any, out: Any) -> Any:
    # Into a buffer made beforehand: an allocation (a pinned one above all) is no
    # part of a copy's time. The runner places each end (Tensors.host).
    return out.copy_(src, non_blocking=True)


# --------------------------------------------------------------------------- the table

def _elementwise(name: str, fn: Callable[..., Any], flops_per: float, arity: int = 1,
                 notes: str = "") -> OpSpec:
    names = ("a", "b")[:arity]
    return OpSpec(
        name, "compute" if name in ("gelu", "silu", "exp") else "memory",
        lambda a, p, g: Tensors({n: _randn((int(a["batch_size"]), int(a["dim_size"])), p, g)
                                 for n in names}),
        fn, lambda a: flops_per * _rows(a),
        lambda a, si, so: _rows(a) * (arity * si + so), notes=notes)


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
        _elementwise("mul", lambda a, b: torch.mul(a, b), 1, 2),
        _elementwise("exp", lambda a: torch.exp(a), 1),
        _elementwise("gelu", lambda a: F.gelu(a), 8, notes="erf form"),
        _elementwise("silu", lambda a: F.silu(a), 4),
        OpSpec("cast", "memory",
               lambda a, p, g: Tensors({"a": _randn((int(a["batch_size"]), int(a["dim_size"])),
                                                    p, g), "to": _cast_target(p)},
                                       frozenset({"to"})),
               lambda a, to: a.to(getattr(torch, STORAGE[to])), lambda a: 0.0,
               lambda a, si, so: _rows(a) * (si + so), out_dtype=_cast_target,
               notes="fp32 to bf16, any other dtype to fp32"),
        OpSpec("reduce_sum", "memory",
               lambda a, p, g: Tensors({"input": _randn((int(a["batch_size"]),
                                                         int(a["dim_size"])), p, g)}),
               lambda input: torch.sum(input, dim=-1), lambda a: float(_rows(a)),
               lambda a, si, so: _rows(a) * si + int(a["batch_size"]) * so),
        OpSpec("reduce_max", "memory",
               lambda a, p, g: Tensors({"input": _randn((int(a["batch_size"]),
                                                         int(a["dim_size"])), p, g)}),
               lambda input: torch.amax(input, dim=-1), lambda a: float(_rows(a)),
               lambda a, si, so: _rows(a) * si + int(a["batch_size"]) * so),
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
        OpSpec("moe_group_gemm", "llm_ops",
               lambda a, p, g: Tensors({
                   "input": _randn((int(a["num_experts"]), int(a["tokens_per_expert"]),
                                    int(a["K"])), p, g),
                   "mat2": _randn((int(a["num_experts"]), int(a["K"]), int(a["N"])), p, g,
                                  1 / math.sqrt(int(a["K"])))}),
               lambda input, mat2: torch.bmm(input, mat2),
               lambda a: 2.0 * int(a["num_experts"]) * int(a["tokens_per_expert"]) * int(a["K"])
               * int(a["N"]),
               lambda a, si, so: int(a["num_experts"]) * (
                   (int(a["tokens_per_expert"]) * int(a["K"]) + int(a["K"]) * int(a["N"])) * si
                   + int(a["tokens_per_expert"]) * int(a["N"]) * so),
               dtypes=("fp32", "fp16", "bf16"),
               notes="grouped GEMM with equal tokens per expert, one weight per expert"),
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
    **{op: _ROWS for op in ("add", "mul", "exp", "gelu", "silu", "cast", "reduce_sum",
                            "reduce_max", "softmax", "layer_norm", "rms_norm", "host2device",
                            "device2host", "device2device")},
    "topk": {**_ROWS, "k": 4},
    **{op: _INDEXED for op in ("embedding", "index_select", "gather", "scatter")},
    "conv2d": {"batch_size": 2, "in_channels": 4, "out_channels": 8, "height": 8, "width": 8,
               "kernel_size": 3},
    "sdpa": {"batch_size": 1, "num_heads": 2, "q_len": 4, "kv_len": 32, "head_dim": 16},
    "moe_gating": {"num_tokens": 16, "hidden_size": 32, "num_experts": 8, "topk": 2},
    "moe_group_gemm": {"num_experts": 2, "tokens_per_expert": 8, "K": 32, "N": 16},
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
