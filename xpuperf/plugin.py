"""The pytest plugin: markers, parametrization from zoo.yaml, item ordering, and
the gate on each item's call. Around it: the options and the run configuration
they make (xpuperf.options), the cases items are made of (xpuperf.cases), the
suites' fixtures and the engine's session (xpuperf.fixtures), result collection
and the reports (xpuperf.results).

Collection reads zoo.yaml and the backend registry only; no framework is
imported until an item runs.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from xpuperf import gate
from xpuperf.cases import OpCaseRef, item_case
from xpuperf.options import RUN, add_options, run_config
from xpuperf.records import ITEM_KEY, RECORD_KEY, SUITES, jsonable
from xpuperf.results import ResultCollector
from xpuperf.zoo import DOMAINS, SCENARIOS, Combination

MARKERS = {
    "accuracy": "task metric and numeric agreement with the reference",
    "performance": "throughput and latency",
    "compiler_coverage": "compile status, time and graph coverage",
    "audit": "LoadGen's integrity audits: accuracy in performance mode, caching, alternate seed",
    "smoke": "collected under --zoo-tier smoke (small shapes)",
    "op_conformance": "onnx's node test cases, one op variant each",
    "micro_perf": "micro-benchmarks: one op, copy or collective each (suites/micro_perf)",
    "compute": "micro-benchmarks of compute-bound ops (GEMM, convolution, activations)",
    "memory": "micro-benchmarks of memory-bound ops and copies",
    "llm_ops": "micro-benchmarks of LLM ops (attention, MoE)",
    "xccl": "micro-benchmarks of collectives on several ranks",
    **{d: f"models of the {d} domain" for d in DOMAINS},
}
# The suites' fixtures and --shard, registered with this plugin.
pytest_plugins = ["xpuperf.fixtures", "xpuperf.shard_plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _sigterm_as_interrupt() -> None:
    """SIGTERM ends the session as Ctrl-C does: pytest stops, the items' workers are
    ended, and the reports are written for what ran (CI systems stop a job so)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")
    signal.signal(signal.SIGTERM, interrupt)


# pyproject.toml's floor: pytest-benchmark before 5.3 takes --benchmark-json as an
# open file (a path given there breaks its save at the session's end, losing the
# reports), and before 5.3.1 its fixture breaks under pytest 9.2.
MIN_PYTEST_BENCHMARK = "5.3.1"


def _check_pytest_benchmark() -> None:
    """A usage error, with the fix, for a pytest-benchmark older than the floor: a
    checkout run on a machine's own python (PYTHONPATH=.) installs nothing."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version
    try:
        found = version("pytest-benchmark")
    except PackageNotFoundError:
        return  # not installed: performance items then ask for a fixture pytest names
    if Version(found) < Version(MIN_PYTEST_BENCHMARK):
        raise pytest.UsageError(f"pytest-benchmark {found} is older than the "
                                f"{MIN_PYTEST_BENCHMARK} xpuperf needs: "
                                f"pip install 'pytest-benchmark>={MIN_PYTEST_BENCHMARK}'")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config: pytest.Config) -> None:
    _check_pytest_benchmark()
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    run = config.stash[RUN] = run_config(config)
    # One marker per model family: -m matches markers exactly, so `-m bert` selects
    # bert-torch and bert-tf where `-k bert` would also take albert and roberta.
    for family in sorted({m.family for m in run.zoo.models}):
        config.addinivalue_line("markers", f"{family}: the {family} model family")
    if run.gate is not None and run.zoo.tier == "smoke":
        config.issue_config_time_warning(pytest.PytestConfigWarning(
            "the smoke tier is not for gating: its items run too briefly to hold the "
            "speed gate's figures; gate with --zoo-tier gate (README, 'The speed gate')"),
            stacklevel=2)
    _sigterm_as_interrupt()
    _share_the_cores(config)
    if run.zoo_run and not hasattr(config, "workerinput"):
        # The collector locks and clears the folder when the first result comes.
        config.pluginmanager.register(ResultCollector(
            run, not getattr(config.option, "benchmark_json", None)), "xpuperf-results")
    if hasattr(config.option, "benchmark_storage"):
        # Saved runs have one place, whatever --report-dir says (a session with
        # another report folder still finds them): .benchmarks/<HARDWARE> in the
        # checkout (pytest's rootdir), per hardware so that --benchmark-compare
        # never compares a CPU run with another backend's.
        if config.option.benchmark_storage == "file://./.benchmarks":
            config.option.benchmark_storage = \
                f"file://{config.rootpath / '.benchmarks' / run.hardware}"
        # writes: a zoo run's controller (the kit makes no report folder).
        writes = run.zoo_run and not (hasattr(config, "workerinput") or config.option.collectonly)
        if writes and not config.option.benchmark_json:
            run.report_dir.mkdir(parents=True, exist_ok=True)
            # A path, as pytest-benchmark (from 5.3) takes the option: opened only
            # when it writes, so a session without benchmarks leaves no file.
            config.option.benchmark_json = run.report_dir / "benchmark.json"


def _share_the_cores(config: pytest.Config) -> None:
    """A pytest-xdist worker's backends take its share of the host's cores
    (OMP_NUM_THREADS, which torch reads, and the CPU backend for onnxruntime;
    set before any backend worker starts, which inherits it), unless the user
    set it."""
    from xpuperf.worker import devices
    workers = devices.xdist_workers()
    if hasattr(config, "workerinput") and workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        os.environ["OMP_NUM_THREADS"] = str(devices.cpu_share(workers, cores or 1))


# --------------------------------------------------------------------------- collection

def _marks(combo: Combination, tier: str) -> list:
    marks = [getattr(pytest.mark, combo.model.domain), getattr(pytest.mark, combo.model.family),
             pytest.mark.xdist_group(combo.group)]
    return marks + [pytest.mark.smoke] if tier == "smoke" else marks


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A user's zoo (--zoo) is about the user's models: onnx's per-op cases are
    collected with it only when test_ops.py is named on the command line."""
    if collection_path.name != "test_ops.py" or collection_path.parent.name != "compiler_coverage":
        return None
    named = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    return True if config.stash[RUN].user_zoo and collection_path not in named else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash[RUN]
    tier = state.zoo.tier
    if "perf_case" in metafunc.fixturenames:
        metafunc.parametrize(("combo", "perf_case"), [
            pytest.param(p.combo, p, id=p.id, marks=_marks(p.combo, tier))
            for p in state.zoo.perf_cases(state.scenarios)])
    elif "combo" in metafunc.fixturenames:
        metafunc.parametrize("combo", [pytest.param(c, id=c.id, marks=_marks(c, tier))
                                       for c in state.zoo.combinations()])
    elif "op_case" in metafunc.fixturenames:
        from xpuperf.conformance.opconformance import case_index

        index = case_index(state.cache_dir)
        # Ids drop onnx's "test_" prefix: test_op[add_bcast], not test_op[test_add_bcast].
        metafunc.parametrize("op_case", [pytest.param(OpCaseRef(case, op), id=case.removeprefix("test_"))
                                         for case, op in sorted(index.items())])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run all items of one (model, precision) together, compile first, so that one
    compiled model serves them and is released before the next is built; within
    them, an offline item before the server items that load a fraction of its
    throughput. A tier without `audits:` runs none."""
    state = config.stash[RUN]
    models = {m.name: i for i, m in enumerate(state.zoo.models)}
    if state.zoo.audits is None:
        dropped = [i for i in items if (c := item_case(i)) is not None and c.suite == "audit"]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if i not in dropped]

    def order(item: pytest.Item) -> tuple:
        case = item_case(item)
        if case is None:
            return (0,)
        item.user_properties.append((ITEM_KEY, case.identity(state.hardware)))
        combo, scenario = case.combo, case.extra.get("scenario")
        return (1, models[combo.model.name], combo.model.precisions.index(combo.precision),
                SUITES.index(case.suite) if case.suite in SUITES else len(SUITES),
                case.extra.get("batch_size", 0),
                SCENARIOS.index(scenario) if scenario in SCENARIOS else 0)

    items.sort(key=order)
    for item in items:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        if "op_case" in params:
            item.user_properties.append((ITEM_KEY, params["op_case"].identity(state.hardware)))
        listed = state.expected.get(item.name)
        if listed and any(k == ITEM_KEY for k, _ in item.user_properties):
            how = ("remove its line once it passes" if listed.strict
                   else "'sometimes': it may pass or fail on this host")
            item.add_marker(pytest.mark.xfail(
                strict=listed.strict,
                reason=f"listed in {state.expected_label} ({how}): {listed.reason}"))


# --------------------------------------------------------------------------- xdist

@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config):
    """-n N --dist loadgroup: each (model, precision) group whole on one worker
    (xpuperf.xdist_groups says why not pytest-xdist's own loadgroup)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xpuperf.xdist_groups import GroupScheduling

    state = config.stash[RUN]
    groups = {c.id: c.group for c in state.zoo.combinations()}
    groups.update((p.id, p.combo.group) for p in state.zoo.perf_cases(state.scenarios))

    def group_of(nodeid: str) -> str | None:
        # The id in brackets, as pytest_generate_tests made it; pytest-xdist before
        # pytest 9.2 may append "@<group>" after the bracket.
        opening, closing = nodeid.rfind("["), nodeid.rfind("]")
        return groups.get(nodeid[opening + 1:closing]) if 0 <= opening < closing else None
    return GroupScheduling(config, group_of)


# --------------------------------------------------------------------------- the gate

@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Fail an item whose backend failed (a crash, a time-out, an exception in its
    worker) with that message alone: the suite's own traceback says nothing of it.
    With --baseline, fail a metric item that passed but dropped against it; the
    comparison is kept in its record either way. (Performance items are judged
    by the speed_gate fixture, which measures again while undecided.)"""
    from xpuperf.session import BackendFailure
    try:
        result = yield
        failure = ""
    except BackendFailure as e:
        failure = str(e)
    if failure:  # raised outside the except block: pytest would print both otherwise
        pytest.fail(failure, pytrace=False)
    state = item.config.stash[RUN]
    record = dict(item.user_properties).get(RECORD_KEY)
    if state.baseline is None or record is None:
        return result
    problems, comparison = gate.check_metric(record, state.baseline)
    if comparison:
        record["baseline"] = jsonable(comparison)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True, optionalhook=True)  # pytest-benchmark's hook
def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession: Any,
                                          machine_info: dict, compared_benchmark: dict):
    """Say plainly when the saved run had other backend options; and keep
    pytest-benchmark's own warning from ending the session in an INTERNALERROR
    (it names the storage relative to the working directory, and raises
    ValueError for a storage outside it: --benchmark-storage elsewhere)."""
    saved = (compared_benchmark.get("machine_info") or {}).get("xpuperf") or {}
    ours = machine_info.get("xpuperf") or {}
    if saved.get("backend_options", {}) != ours.get("backend_options", {}):
        benchmarksession.logger.warning(
            f"--benchmark-compare: the saved run had backend options "
            f"{saved.get('backend_options') or 'none'}, this one "
            f"{ours.get('backend_options') or 'none'}: their timings differ by that too")
    try:
        return (yield)
    except ValueError:
        return None  # only its message failed: the difference is said above or harmless


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    state = config.stash[RUN]
    machine_info["xpuperf"] = {"hardware": state.hardware, "tier": state.zoo.tier,
                               "backend_options": state.options,
                               **({"ab_baseline_options": state.ab_options}
                                  if state.ab_options is not None else {})}
