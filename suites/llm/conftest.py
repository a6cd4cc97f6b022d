"""The LLM serving suite's parametrization and fixtures, from zoo.yaml's
`generation:` workloads (xpuperf.zoo.generation).

Items of one workload and precision run together, accuracy first, so one model
and one engine serve them; the engine is closed before the next is built.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest

from xpuperf.cases import GenCase, gen_case
from xpuperf.generation.settings import ENDPOINT_PRECISION
from xpuperf.options import RUN
from xpuperf.records import ITEM_KEY, RECORD_KEY, jsonable
from xpuperf.zoo.generation import GenerationSpec

NO_ACCURACY = "the accuracy gate against a server (GSM8K-style prompts) is not built yet"


def _precisions(config: pytest.Config, spec: GenerationSpec) -> tuple[str, ...]:
    """A server serves the model in its own precision: one item per scenario."""
    return (ENDPOINT_PRECISION,) if config.stash[RUN].llm.endpoint else spec.precisions


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "generation: LLM serving and generation accuracy (suites/llm)")
    for family in sorted({w.family for w in config.stash[RUN].zoo.generation}):
        config.addinivalue_line("markers", f"{family}: the {family} model family")


def _cases(config: pytest.Config, accuracy: bool) -> list:
    state = config.stash[RUN]
    cases = []
    for spec in state.zoo.generation:
        for p in _precisions(config, spec):
            if accuracy:
                cases.append(GenCase(spec, p))
                continue
            for scenario in spec.scenarios:
                for c in spec.concurrency if scenario == "offline" else (None,):
                    cases.append(GenCase(spec, p, scenario, c))
    marks = lambda c: [pytest.mark.generation, pytest.mark.llm,  # noqa: E731
                       getattr(pytest.mark, c.spec.family)] + (
        [pytest.mark.smoke] if state.zoo.tier == "smoke" else []) + (
        [pytest.mark.skip(reason=NO_ACCURACY)]
        if c.scenario is None and c.precision == ENDPOINT_PRECISION else [])
    return [pytest.param(c, id=c.id, marks=marks(c)) for c in cases]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "gen_case" in metafunc.fixturenames:
        metafunc.parametrize("gen_case", _cases(metafunc.config, accuracy=False))
    elif "gen_combo" in metafunc.fixturenames:
        metafunc.parametrize("gen_combo", _cases(metafunc.config, accuracy=True))


@pytest.hookimpl(tryfirst=True)  # before xpuperf.plugin reads ITEM_KEY (expected failures)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[RUN]
    order = {key: i for i, key in enumerate((w.name, p) for w in state.zoo.generation
                                            for p in _precisions(config, w))}
    llm = [(i, c) for i, c in ((i, gen_case(i)) for i in items) if c is not None]
    for item, case in llm:
        item.user_properties.append((ITEM_KEY, case.identity(state.hardware)))
    # Group by workload and precision, the accuracy item first, then scenarios in
    # the zoo's order (offline first: the server loads a fraction of its rate).
    ranked = sorted(llm, key=lambda ic: (order[ic[1].group],
                                         ic[1].scenario is not None))
    slots = iter(ranked)
    items[:] = [next(slots)[0] if gen_case(i) is not None else i for i in items]


@pytest.fixture(scope="session")
def llm(pytestconfig: pytest.Config):
    """The LLM items' session (xpuperf.generation.remote.RemoteLLM): the engines
    run in worker processes, each item within --item-timeout, else the tier's
    timeout_s."""
    from xpuperf.generation.remote import RemoteLLM

    state = pytestconfig.stash[RUN]
    limit = state.item_timeout or state.zoo.timeout_s
    session = RemoteLLM(state.entry.name, state.options, state.zoo, limit, state.device,
                        state.llm, launcher=state.micro_launcher)
    yield session
    session.close()


@pytest.fixture
def record_llm(request: pytest.FixtureRequest, record_property) -> Callable[..., None]:
    """record_llm(**fields): attach this item's result record (suite "generation")."""
    state = request.config.stash[RUN]
    case = gen_case(request.node)

    def _record(**fields: Any) -> None:
        record_property(RECORD_KEY, jsonable({**case.identity(state.hardware), **fields}))
    return _record


@pytest.fixture
def engine_ready(llm, request: pytest.FixtureRequest) -> None:
    """The item's engine started (skips when the backend cannot generate it)."""
    case = gen_case(request.node)
    unsupported = llm.start(case.spec, case.precision)
    if unsupported:
        pytest.skip(unsupported)
