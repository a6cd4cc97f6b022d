"""The suites' fixtures: the engine's session (``xpu``) and, per item, what it
needs of it (the compilation, the dataset, the reference) and ``record``, which
attaches the item's result record. Registered by xpuperf.plugin."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest

from xpuperf.plugin import _SESSION, STATE, SUITE_OF_TEST, _case
from xpuperf.records import RECORD_KEY, identity, jsonable
from xpuperf.zoo import Combination, PerfCase


@pytest.fixture(scope="session")
def xpu(pytestconfig: pytest.Config):
    """The engine's session: datasets, artifacts, references, and the workers that
    host the backend."""
    from xpuperf.session import BenchSession

    state = pytestconfig.stash[STATE]
    session = BenchSession(
        state.zoo, state.entry.name, state.entry.load()(), state.options,
        cache_dir=Path(pytestconfig.getoption("cache_dir")),
        data_dir=Path(pytestconfig.getoption("data_dir")),
        item_timeout_s=pytestconfig.getoption("item_timeout"), device=state.device,
        ab_options=state.ab_options, ab_python=state.ab_python, ab_path=state.ab_path,
        ray_address=pytestconfig.getoption("ray_address"))  # xpuperf.ray_plugin's
    pytestconfig.stash[_SESSION] = session
    yield session
    session.close()


@pytest.fixture(scope="session")
def backend(xpu):
    return xpu.backend


def _needed(make: Callable[[], Any]) -> Any:
    """``make()``; a dataset, weights or zoo problem errors the item in setup with
    its message (file and line), not as a failure of the backend."""
    from xpuperf.session import SetupError
    try:
        return make()
    except SetupError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def compilation(xpu, combo: Combination):
    """The group's compile in its worker (xpuperf.session.Compilation); the item
    errors in setup with the reason when the worker could not start."""
    from xpuperf.session import Unsupported, WorkerStartFailed
    _needed(lambda: xpu.prepare(combo.model))
    try:
        return xpu.compilation(combo)
    except Unsupported as e:
        pytest.skip(str(e))
    except WorkerStartFailed as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def compiled(compilation):
    """The compile report of a model that compiled (the compiled model itself
    lives in the worker); the item fails in setup when it did not compile."""
    if compilation.report.status != "ok":
        pytest.fail(f"compilation failed: {compilation.report.error}", pytrace=False)
    return compilation.report


@pytest.fixture
def dataset(xpu, combo: Combination):
    return _needed(lambda: xpu.dataset(combo.model))


@pytest.fixture
def reference(xpu, combo: Combination):
    """The framework's fp32 outputs for the whole dataset (cached on disk)."""
    return _needed(lambda: xpu.reference(combo.model))


@pytest.fixture(scope="session")
def op_runner(pytestconfig: pytest.Config):
    """Runs onnx node test cases on the backend in a worker process (fp32)."""
    from xpuperf.conformance.opconformance import IsolatedRunner

    state = pytestconfig.stash[STATE]
    with IsolatedRunner(state.entry.name, "fp32", state.options) as runner:
        yield runner


@pytest.fixture(scope="session")
def expected_failures_file(pytestconfig: pytest.Config) -> str:
    """The backend's expected-failures file, as messages name it."""
    return pytestconfig.stash[STATE].expected_label


@pytest.fixture(scope="session")
def driver(pytestconfig: pytest.Config) -> str:
    """--driver: "xpuperf", or "mlperf" to run mlcommons-loadgen beside the engine."""
    return pytestconfig.stash[STATE].driver


@pytest.fixture
def record(request: pytest.FixtureRequest, record_property, combo: Combination,
           xpu) -> Callable[..., None]:
    """record(**fields): attach this item's result record (see xpuperf.records)."""
    state = request.config.stash[STATE]
    case = _case(request.node)
    extra = case[1] if case else {}

    def _record(**fields: Any) -> None:
        suite = SUITE_OF_TEST[request.node.originalname]
        weights = xpu.artifact(combo.model).weights
        if suite == "compile" and fields.get("status") == "ok":
            # Other suites and reports need the model's size in FLOPs, from the graph.
            fields = {**xpu.graph_figures(combo), **fields}
        # Where it ran: this process's host (a pytest-xdist worker's), or the Ray
        # node's that hosts the group's worker (host, ray_node).
        bound = {"host": socket.gethostname(), **xpu.placement(combo),
                 **({} if state.device is None else {"device_index": state.device})}
        record_property(RECORD_KEY, jsonable({**identity(suite, combo, state.hardware, **extra),
                                              "weights": weights, **bound, **fields}))
    return _record


@pytest.fixture
def speed_gate(request: pytest.FixtureRequest, xpu, perf_case: PerfCase,
               driver: str) -> Callable[[Mapping[str, Any]], dict[str, Any] | None]:
    """speed_gate(record): judge this performance item's speed (xpuperf.gate):
    against --baseline, measuring it again while undecided, or against the A/B
    baseline in interleaved blocks. Keeps the comparison in the item's record
    ("baseline") and returns it (None without a gate, or when the stored
    baseline lacks the item); fails the item when it regressed, or when it is
    still inconclusive and --gate-inconclusive is fail."""
    from xpuperf import gate

    state = request.config.stash[STATE]

    def judge(result: Mapping[str, Any]) -> dict[str, Any] | None:
        settings = state.gate
        if settings is None:
            return None
        if state.ab_options is not None:
            found = gate.ab(lambda rounds: xpu.ab_blocks(perf_case, rounds, settings.ab_block_s),
                            settings)
        else:
            assert state.baseline is not None  # a gate has one or the other (plugin)
            found = gate.against_baseline(
                perf_case.id, result, state.baseline, settings,
                lambda: xpu.throughput(perf_case, driver)["record"])
            if found is None:
                return None
        comparison = jsonable(found.record)
        recorded = dict(request.node.user_properties).get(RECORD_KEY)
        if recorded is not None:
            recorded["baseline"] = comparison
        problem = found.problem(settings.inconclusive)
        if problem:
            pytest.fail(problem, pytrace=False)
        return comparison
    return judge
