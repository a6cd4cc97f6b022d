"""Workload files in bytedance/xpu-perf's micro_perf format, read as they are.

A file ``<anything>/<op>.json`` holds ``{"cases": [case, ...]}`` (the op is the
file's stem), or ``{"<op>": [case, ...], ...}`` for several ops in one file. A
case maps argument names to a value or a list of values; the lists expand as a
Cartesian product, and a dotted key zips its names: ``"K.N": [[4096, 4096],
[8192, 1024]]`` gives (K=4096, N=4096) and (K=8192, N=1024), never K=4096 with
N=1024. ``arg_type`` is a string or a list like any other key; a case whose
arg_type names "batch" is one case as written (xpu-perf's own rule).

Pure: text in, cases out (xpuperf.microperf.host runs them).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

# xpu-perf's dtype names -> xpuperf's precisions (backends.base.PRECISIONS), as
# item ids and records name them (-k "gemm and bf16").
DTYPE_ALIASES = {"float32": "fp32", "tfloat32": "tf32", "float16": "fp16", "bfloat16": "bf16",
                 "float8": "fp8", "float8_e4m3": "fp8", "int8": "int8"}
# xpu-perf's arg_type "llm": an op's arguments named as an LLM layer's, which
# its op classes read as their default arguments (bytedance/xpu-perf at
# 71a12101509635421d02c3d28c9202951ded7745, projects/micro_perf/op_defs/
# basic_ops: tensor_gemm_ops.py, vector_norm_ops.py, xccl_ops.py). Ops the table
# names with LLM words already (swiglu, add_rms_norm, moe_*) have no row.
_TOKEN_ROWS = {"num_tokens": "batch_size", "hidden_size": "dim_size"}
LLM_ARGS: dict[str, dict[str, str]] = {
    "gemm": {"num_tokens": "M", "hidden_size": "K", "new_hidden_size": "N"},
    **{op: _TOKEN_ROWS for op in ("layer_norm", "rms_norm", "all_reduce", "reduce_scatter",
                                  "all_gather", "all_to_all", "broadcast", "p2p")},
}
# A vendor's full sweep of one op stays in the thousands; a typo in a list
# (a stray nesting) must not make millions of items at collection.
MAX_CASES_PER_FILE = 20_000


class WorkloadError(ValueError):
    """A workload file cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class Workload:
    op: str
    source: str  # the file it came from, as given
    args: dict[str, Any] = field(hash=False)

    @property
    def id(self) -> str:
        """The words -k matches: op, dtype and the other arguments in file order."""
        dtype = str(self.args.get("dtype", ""))
        parts = [self.op, DTYPE_ALIASES.get(dtype, dtype)]
        parts += [f"{k}{_word(v)}" for k, v in self.args.items() if k not in ("dtype", "arg_type")]
        if self.args.get("arg_type", "default") != "default":
            parts.append(str(self.args["arg_type"]))
        return "-".join(p for p in parts if p)

    @property
    def op_args(self) -> dict[str, Any]:
        """The arguments the op reads: an "llm" case's names as LLM_ARGS maps
        them, its num_tokens divided by sp_size (sequence parallelism: each rank
        holds its share of the tokens, as xpu-perf's ops take it)."""
        if self.args.get("arg_type") != "llm":
            return dict(self.args)
        args = dict(self.args)
        if "num_tokens" in args:
            sp = int(args.pop("sp_size", 1))
            if sp < 1 or int(args["num_tokens"]) % sp:
                raise WorkloadError(f"{self.source}: {self.op}: num_tokens {args['num_tokens']} "
                                    f"must be a multiple of sp_size {sp} (>= 1)")
            args["num_tokens"] = int(args["num_tokens"]) // sp
        names = LLM_ARGS.get(self.op, {})
        return {names.get(k, k): v for k, v in args.items()}


def _word(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def expand(cases: Iterable[dict[str, Any]], where: str = "cases") -> list[dict[str, Any]]:
    """xpu-perf's get_cartesian_product: each case's lists multiplied out, dotted
    keys zipped into their names."""
    out: list[dict[str, Any]] = []
    for n, case in enumerate(cases):
        if not isinstance(case, dict):
            raise WorkloadError(f"{where}[{n}]: a case must be an object of argument names to "
                                f"values or lists of values, got {type(case).__name__}")
        if "batch" in str(case.get("arg_type", "")):
            out.append(dict(case))
            continue
        keys = list(case)
        values = [v if isinstance(v, list) else [v] for v in case.values()]
        for combo in itertools.product(*values):
            args: dict[str, Any] = {}
            for key, value in zip(keys, combo):
                if "." not in key:
                    args[key] = value
                    continue
                names = key.split(".")
                if not isinstance(value, list) or len(value) != len(names):
                    raise WorkloadError(f"{where}[{n}].{key}: each entry must be a list of "
                                        f"{len(names)} values ({', '.join(names)}), got {value!r}")
                args.update(zip(names, value))
            out.append(args)
            if len(out) > MAX_CASES_PER_FILE:
                raise WorkloadError(f"{where}: more than {MAX_CASES_PER_FILE} cases; split "
                                    "the file or shorten its lists")
    return out


def parse(text: str, source: str) -> list[Workload]:
    """The workloads of one file's text; ``source`` is its path (the op name is
    its stem when the file has "cases")."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkloadError(f"{source}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise WorkloadError(f"{source}: expected an object with \"cases\" (or op names), "
                            f"got {type(data).__name__}")
    tasks = {Path(source).stem: data["cases"]} if "cases" in data else data
    found = []
    for op, cases in tasks.items():
        if not isinstance(cases, list):
            raise WorkloadError(f"{source}: {op!r} must be a list of cases, got "
                                f"{type(cases).__name__}")
        found += [Workload(op, source, args) for args in expand(cases, f"{source}: {op}")]
    return found


def load_dir(folder: Path) -> list[Workload]:
    """Every ``*.json`` under ``folder`` (its subfolders too), in path order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WorkloadError(f"{folder}: no such folder of workload files (give a folder of "
                            "<group>/<op>.json files, as xpu-perf's workloads/)")
    workloads = []
    for path in sorted(folder.rglob("*.json")):
        workloads += parse(path.read_text(encoding="utf-8"), str(path))
    return workloads
