"""The micro-benchmark suite's parametrization and fixtures: every case of the
workload files (xpu-perf's format, xpuperf.microperf.workloads) becomes an
item, from suites/micro_perf/workloads/<tier>/ or --micro-workloads DIR.

Ops run one at a time in a worker process that hosts the backend's op provider
(xpuperf.microperf.host); collectives run per world size on a distributed
runtime launched once for all of that size's selected cases
(xpuperf.microperf.launch).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from xpuperf.microperf import ops, workloads, xccl
from xpuperf.plugin import STATE
from xpuperf.records import ITEM_KEY, RECORD_KEY, jsonable

SUITE = "micro"
HERE = Path(__file__).parent
# The gate tier has no micro-benchmarks of its own: it runs smoke's.
TIER_FOLDER = {"smoke": "smoke", "gate": "smoke", "full": "full"}


def _workloads(config: pytest.Config) -> list[workloads.Workload]:
    folder = config.getoption("micro_workloads") or \
        HERE / "workloads" / TIER_FOLDER[config.stash[STATE].zoo.tier]
    try:
        return workloads.load_dir(Path(folder))
    except workloads.WorkloadError as e:
        raise pytest.UsageError(f"--micro-workloads: {e}") from None


def _group(op: str) -> str | None:
    """The op's group (a marker), None for an op the table lacks (its items skip)."""
    if op in xccl.OPS:
        return "xccl"
    spec = ops.table().get(op)
    return spec.group if spec else None


def identity(case: workloads.Workload, hardware: str) -> dict[str, Any]:
    args = case.args
    return {"suite": SUITE, "case": case.id, "op": case.op, "group": _group(case.op),
            "precision": workloads.DTYPE_ALIASES.get(str(args.get("dtype", "")), args.get("dtype")),
            "hardware": hardware, "workload": case.source}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    collective = "xccl_case" in metafunc.fixturenames
    if not collective and "micro_case" not in metafunc.fixturenames:
        return
    tier = metafunc.config.stash[STATE].zoo.tier
    cases = [c for c in _workloads(metafunc.config) if (c.op in xccl.OPS) == collective]
    params = [pytest.param(c, id=c.id, marks=[pytest.mark.micro_perf]
                           + [getattr(pytest.mark, g) for g in [_group(c.op)] if g]
                           + ([pytest.mark.smoke] if tier == "smoke" else []))
              for c in cases]
    metafunc.parametrize("xccl_case" if collective else "micro_case", params)


def _case(item: pytest.Item) -> workloads.Workload | None:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    case = params.get("micro_case") or params.get("xccl_case")
    return case if isinstance(case, workloads.Workload) else None


@pytest.hookimpl(tryfirst=True)  # before xpuperf.plugin reads ITEM_KEY (expected failures)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    hardware = config.stash[STATE].hardware
    for item in items:
        case = _case(item)
        if case is not None:
            item.user_properties.append((ITEM_KEY, identity(case, hardware)))


@pytest.fixture(scope="session")
def micro_runner(pytestconfig: pytest.Config):
    """The worker that runs op cases on the backend's op provider."""
    from xpuperf.microperf.host import MicroRunner

    state = pytestconfig.stash[STATE]
    runner = MicroRunner(state.entry.name, state.options, state.zoo.tier,
                         pytestconfig.getoption("item_timeout") or state.zoo.timeout_s)
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def xccl_results(pytestconfig: pytest.Config, request: pytest.FixtureRequest, micro_runner):
    """results(case) -> its record: the first collective item of a world size
    launches every selected case of that size in one distributed run."""
    from xpuperf.microperf.launch import run_world

    state = pytestconfig.stash[STATE]
    selected = [c for c in (_case(i) for i in request.session.items)
                if c is not None and c.op in xccl.OPS]
    done: dict[int, dict[str, Any]] = {}

    def results(case: workloads.Workload) -> dict[str, Any]:
        n = int(case.args.get("world_size", 2))
        if n not in done:
            provider = micro_runner.describe()
            if provider["why_not"]:
                pytest.skip(provider["why_not"])
            done[n] = run_world(
                [c for c in selected if int(c.args.get("world_size", 2)) == n], n,
                device=provider["device"], dist_backend=provider["collectives"],
                tier=state.zoo.tier, launcher=pytestconfig.getoption("micro_launcher"),
                timeout_s=pytestconfig.getoption("item_timeout") or state.zoo.timeout_s,
                root=pytestconfig.rootpath)
        return done[n].get(case.id) or {"error": f"the world of {n} ranks gave no result for "
                                                 f"{case.id}: {done[n].get('_error', '')}"}
    return results


@pytest.fixture
def record_micro(request: pytest.FixtureRequest, record_property) -> Callable[..., None]:
    """record_micro(**fields): attach this item's record (suite "micro")."""
    state = request.config.stash[STATE]
    case = _case(request.node)

    def _record(**fields: Any) -> None:
        record_property(RECORD_KEY, jsonable({**identity(case, state.hardware), **fields}))
    return _record
