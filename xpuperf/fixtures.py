"""The suites' fixtures: the engine's session (``xpu``, held by ``EngineSession``)
and, per item, what it needs of it (the compilation, the dataset, the
reference) and ``record``, which attaches the item's result record. The module
is registered by xpuperf.plugin; it registers ``EngineSession``, which holds
the session and ends what it no longer needs, as a plugin of its own."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import pytest

from xpuperf.cases import item_case
from xpuperf.options import RUN, RunConfig
from xpuperf.records import RECORD_KEY, jsonable
from xpuperf.zoo import Combination, PerfCase

if TYPE_CHECKING:  # imported by the fixture: it brings numpy and the worker's modules
    from xpuperf.session import BenchSession


PLUGIN_NAME = "xpuperf-session"


class EngineSession:
    """The engine's session (xpuperf.session.BenchSession) as a plugin: the
    ``xpu`` fixture opens it at the first item that asks and closes it at the
    end; after a group's last item it ends the group's worker, after a model's
    last group it drops the model's dataset, artifact and reference."""

    def __init__(self, run: RunConfig):
        self.run = run
        self.session: BenchSession | None = None  # while the xpu fixture holds it

    @contextmanager
    def opened(self) -> Iterator[BenchSession]:
        from xpuperf.session import BenchSession

        run = self.run
        self.session = BenchSession(
            run.zoo, run.entry.name, run.entry.load()(), run.options, cache_dir=run.cache_dir,
            data_dir=run.data_dir, item_timeout_s=run.item_timeout, device=run.device,
            ab_options=run.ab_options, ab_python=run.ab_python, ab_path=run.ab_path,
            ray_address=run.ray_address)
        try:
            yield self.session
        finally:
            self.session.close()
            self.session = None

    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        case = item_case(item)
        if self.session is None or case is None:
            return
        following = item_case(nextitem)
        if following is None or following.group != case.group:
            self.session.release_group(case.group)
        if following is None or following.combo.model.name != case.combo.model.name:
            self.session.release_model(case.combo.model.name)


@pytest.hookimpl(trylast=True)  # after xpuperf.plugin has made the run's configuration
def pytest_configure(config: pytest.Config) -> None:
    from xpuperf.worker import process

    run = config.stash[RUN]
    config.pluginmanager.register(EngineSession(run), PLUGIN_NAME)
    process.preload(run.entry.load().preload)  # before any worker of the session starts


@pytest.fixture(scope="session")
def xpu(pytestconfig: pytest.Config) -> Iterator[BenchSession]:
    """The engine's session: datasets, artifacts, references, and the workers that
    host the backend."""
    with pytestconfig.pluginmanager.get_plugin(PLUGIN_NAME).opened() as session:
        yield session


@pytest.fixture(scope="session")
def backend(xpu):
    return xpu.backend


def _needed(make: Callable[[], Any]) -> Any:
    """``make()``; a dataset, weights or zoo problem errors the item in setup with
    its message (file and line), not as a failure of the backend."""
    from xpuperf.models.entry import SetupError
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

    run = pytestconfig.stash[RUN]
    with IsolatedRunner(run.entry.name, "fp32", run.options, cache_root=run.cache_dir) as runner:
        yield runner


@pytest.fixture(scope="session")
def expected_failures_file(pytestconfig: pytest.Config) -> str:
    """The backend's expected-failures file, as messages name it."""
    return pytestconfig.stash[RUN].expected_label


@pytest.fixture(scope="session")
def driver(pytestconfig: pytest.Config) -> str:
    """--driver: "xpuperf", or "mlperf" to run mlcommons-loadgen beside the engine."""
    return pytestconfig.stash[RUN].driver


@pytest.fixture
def record(request: pytest.FixtureRequest, record_property, combo: Combination,
           xpu) -> Callable[..., None]:
    """record(**fields): attach this item's result record (see xpuperf.records)."""
    run = request.config.stash[RUN]
    case = item_case(request.node)

    def _record(**fields: Any) -> None:
        weights = xpu.artifact(combo.model).weights
        # Where it ran: this process's host (a pytest-xdist worker's), or the Ray
        # node's that hosts the group's worker (host, ray_node).
        bound = {"host": socket.gethostname(), **xpu.placement(combo),
                 **({} if run.device is None else {"device_index": run.device})}
        record_property(RECORD_KEY, jsonable({**case.identity(run.hardware),
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

    run = request.config.stash[RUN]

    def judge(result: Mapping[str, Any]) -> dict[str, Any] | None:
        settings = run.gate
        if settings is None:
            return None
        if run.ab_options is not None:
            found = gate.ab(lambda rounds: xpu.ab_blocks(perf_case, rounds, settings.ab_block_s),
                            settings)
        else:
            assert run.baseline is not None  # a gate has one or the other (plugin)
            found = gate.against_baseline(
                perf_case.id, result, run.baseline, settings,
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
