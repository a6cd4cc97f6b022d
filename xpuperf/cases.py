"""The cases pytest items are made of, and what each says of itself: its id (the
words a user types after -k), its group (the items that share one worker and
run together) and its identity (the keys of its record, xpuperf.records).

A model item runs one ``Combination`` (model, dataset, precision) of the zoo,
a performance item one ``PerfCase`` (a combination at a scenario and batch
size): both are the zoo's own specs (xpuperf.zoo). An op item runs one of
onnx's node cases (``OpCaseRef``), an LLM item one ``GenCase`` (a generation
workload at a precision, an accuracy item or one scenario), a micro-benchmark
item one ``Workload`` (a case of a workload file: an op, a copy or a
collective). ``ItemCase`` is any model or performance item's case, as the
plugin and the fixtures find it on an item.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from xpuperf.generation.settings import ENDPOINT_PRECISION
from xpuperf.microperf import ops, xccl
from xpuperf.microperf.workloads import DTYPE_ALIASES, Workload
from xpuperf.records import identity
from xpuperf.zoo import Combination, GenerationSpec, PerfCase

AUDITS = ("accuracy", "caching", "seed")
# The suite each model test function belongs to (the records' "suite" key).
SUITE_OF_TEST = {"test_compile": "compile", "test_metric": "metric",
                 "test_numerics": "numerics", "test_throughput": "performance",
                 **{f"test_audit_{a}": "audit" for a in AUDITS}}
GENERATION_SUITE = "generation"


@dataclass(frozen=True)
class ItemCase:
    """A model or performance item's case: its combination, its suite, and what
    else names it (batch size and scenario, or the audit)."""

    combo: Combination
    suite: str
    extra: dict[str, Any]

    @property
    def group(self) -> str:
        return self.combo.group

    def identity(self, hardware: str) -> dict[str, Any]:
        return identity(self.suite, self.combo, hardware, **self.extra)


def item_case(item: pytest.Item | None) -> ItemCase | None:
    """The case of a model or performance item; None for any other item."""
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    suite = SUITE_OF_TEST.get(getattr(item, "originalname", ""), "")
    if "perf_case" in params:
        p: PerfCase = params["perf_case"]
        return ItemCase(p.combo, suite, {"batch_size": p.batch_size, "scenario": p.scenario})
    if "combo" in params:
        audit = suite == "audit" and item.originalname.removeprefix("test_audit_")
        return ItemCase(params["combo"], suite, {"audit": audit} if audit else {})
    return None


@dataclass(frozen=True)
class OpCaseRef:
    """An onnx node test case by id; the case itself is built in the worker that runs it."""

    id: str
    op_type: str

    def identity(self, hardware: str) -> dict[str, Any]:
        return {"suite": "op", "case": self.id, "op_type": self.op_type, "hardware": hardware}


SWEEP = "sweep"  # the scenario word of an LLM workload's sweep item (--llm-sweep)


@dataclass(frozen=True)
class GenCase:
    """An LLM item: a generation workload at a precision, its accuracy item
    (``scenario`` None) or one serving scenario at one concurrency."""

    spec: GenerationSpec
    precision: str
    scenario: str | None = None  # None: the accuracy item; SWEEP: the sweep item
    concurrency: int | None = None

    @property
    def id(self) -> str:
        if self.scenario is None:
            return self.spec.combo_id(self.precision)
        return self.spec.case_id(self.precision, self.scenario, self.concurrency)

    @property
    def group(self) -> tuple[str, str]:
        """The items one engine serves: a workload at a precision."""
        return self.spec.name, self.precision

    def identity(self, hardware: str) -> dict[str, Any]:
        """The record keys that say which item this is (xpuperf.records)."""
        extra = {"scenario": self.scenario, "concurrency": self.concurrency} if self.scenario else {}
        served = self.precision == ENDPOINT_PRECISION
        return {"suite": GENERATION_SUITE, "combination": self.spec.combo_id(self.precision),
                "model": self.spec.name, "dataset": "prompts", "precision": self.precision,
                "hardware": hardware, "framework": "server" if served else "torch",
                "domain": "llm", "family": self.spec.family,
                "weights": "the server's" if served else f"seeded (seed {self.spec.seed})", **extra}


def gen_case(item: pytest.Item | None) -> GenCase | None:
    """The case of an LLM item; None for any other item."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    # A zoo without generation workloads parametrizes with an empty set: pytest
    # then makes one skipped item whose parameter is a NOTSET marker.
    case = params.get("gen_case") or params.get("gen_combo") or params.get("gen_sweep")
    return case if isinstance(case, GenCase) else None


# A micro-benchmark item runs one case of a workload file (xpuperf.microperf.
# workloads.Workload, whose id is the item's); every op case shares the one
# worker of the session, and a collective the launch of its world size.
MICRO_SUITE = "micro"


def micro_group(op: str) -> str | None:
    """xpu-perf's group of the op (compute, memory, llm_ops, xccl: a marker), None
    for an op the op table lacks (its items skip, saying so)."""
    if op in xccl.OPS:
        return "xccl"
    spec = ops.table().get(op)
    return spec.group if spec else None


def micro_identity(case: Workload, hardware: str) -> dict[str, Any]:
    """The record keys that say which micro-benchmark this is (xpuperf.records)."""
    dtype = case.args.get("dtype")
    return {"suite": MICRO_SUITE, "case": case.id, "op": case.op, "group": micro_group(case.op),
            "precision": DTYPE_ALIASES.get(str(case.args.get("dtype", "")), dtype),
            "hardware": hardware, "workload": case.source}


def micro_case(item: pytest.Item | None) -> Workload | None:
    """The case of a micro-benchmark item (an op or a collective); None for any other."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    case = params.get("micro_case") or params.get("xccl_case")
    return case if isinstance(case, Workload) else None
