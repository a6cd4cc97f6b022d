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

from xpuperf.cases import micro_case, micro_group, micro_identity
from xpuperf.microperf import workloads, xccl
from xpuperf.options import RUN
from xpuperf.records import ITEM_KEY, RECORD_KEY, jsonable

HERE = Path(__file__).parent
# The gate tier has no micro-benchmarks of its own: it runs smoke's.
TIER_FOLDER = {"smoke": "smoke", "gate": "smoke", "full": "full"}


def _workloads(config: pytest.Config) -> list[workloads.Workload]:
    run = config.stash[RUN]
    folder = run.micro_workloads or HERE / "workloads" / TIER_FOLDER[run.zoo.tier]
    try:
        return workloads.load_dir(Path(folder))
    except workloads.WorkloadError as e:
        raise pytest.UsageError(f"--micro-workloads: {e}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    collective = "xccl_case" in metafunc.fixturenames
    if not collective and "micro_case" not in metafunc.fixturenames:
        return
    tier = metafunc.config.stash[RUN].zoo.tier
    cases = [c for c in _workloads(metafunc.config) if (c.op in xccl.OPS) == collective]
    params = [pytest.param(c, id=c.id, marks=[pytest.mark.micro_perf]
                           + [getattr(pytest.mark, g) for g in [micro_group(c.op)] if g]
                           + ([pytest.mark.smoke] if tier == "smoke" else []))
              for c in cases]
    metafunc.parametrize("xccl_case" if collective else "micro_case", params)


@pytest.hookimpl(tryfirst=True)  # before xpuperf.plugin reads ITEM_KEY (expected failures)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    hardware = config.stash[RUN].hardware
    for item in items:
        case = micro_case(item)
        if case is not None:
            item.user_properties.append((ITEM_KEY, micro_identity(case, hardware)))


@pytest.fixture(scope="session")
def micro_runner(pytestconfig: pytest.Config):
    """The worker that runs op cases on the backend's op provider."""
    from xpuperf.microperf.host import MicroRunner

    run = pytestconfig.stash[RUN]
    runner = MicroRunner(run.entry.name, run.options, run.zoo.tier,
                         run.item_timeout or run.zoo.timeout_s)
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def xccl_results(pytestconfig: pytest.Config, request: pytest.FixtureRequest, micro_runner):
    """results(case) -> its record: the first collective item of a world size
    launches every selected case of that size in one distributed run."""
    from xpuperf.microperf.launch import run_world

    run = pytestconfig.stash[RUN]
    selected = [c for c in (micro_case(i) for i in request.session.items)
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
                tier=run.zoo.tier, launcher=run.micro_launcher,
                timeout_s=run.item_timeout or run.zoo.timeout_s,
                root=pytestconfig.rootpath)
        return done[n].get(case.id) or {"error": f"the world of {n} ranks gave no result for "
                                                 f"{case.id}: {done[n].get('_error', '')}"}
    return results


@pytest.fixture
def micro_gate(request: pytest.FixtureRequest) -> Callable[..., None]:
    """micro_gate(result, again): judge this micro item's window latencies
    against --baseline's (xpuperf.gate, the performance items' verdicts), calling
    ``again()`` for a fresh result while undecided; keeps the comparison in the
    item's record ("baseline") and fails the item when it regressed, or stayed
    inconclusive under --gate-inconclusive=fail. A/B gating needs a second
    backend for each op: micro items are not judged by it."""
    from xpuperf import gate
    from xpuperf.gate.verdict import from_latencies

    run = request.config.stash[RUN]
    case = micro_case(request.node)

    def windows(result: dict[str, Any]) -> dict[str, Any]:
        return {"window_qps": from_latencies(result.get("window_latency_us") or [])}

    def judge(result: dict[str, Any], again: Callable[[], dict[str, Any]]) -> None:
        if run.gate is None or run.baseline is None:
            return
        found = gate.against_baseline(case.id, windows(result), run.baseline, run.gate,
                                      lambda: windows(again()))
        if found is None:
            return
        recorded = dict(request.node.user_properties).get(RECORD_KEY)
        if recorded is not None:
            recorded["baseline"] = jsonable(found.record)
        problem = found.problem(run.gate.inconclusive)
        if problem:
            pytest.fail(problem, pytrace=False)
    return judge


@pytest.fixture
def record_micro(request: pytest.FixtureRequest, record_property) -> Callable[..., None]:
    """record_micro(**fields): attach this item's record (suite "micro")."""
    run = request.config.stash[RUN]
    case = micro_case(request.node)

    def _record(**fields: Any) -> None:
        record_property(RECORD_KEY, jsonable({**micro_identity(case, run.hardware), **fields}))
    return _record
