"""The LLM serving suite's parametrization and fixtures, from zoo.yaml's
`generation:` workloads (xpuperf.zoo.generation).

Items of one workload and precision run together, accuracy first, so one model
and one engine serve them; the engine is closed before the next is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from xpuperf.cases import SWEEP, GenCase, gen_case
from xpuperf.generation.settings import ENDPOINT_PRECISION
from xpuperf.options import RUN
from xpuperf.records import ITEM_KEY, RECORD_KEY, jsonable
from xpuperf.zoo import GenerationSpec

# The test functions' case fixtures -> which items they make (_cases).
CASE_FIXTURES = {"gen_case": "scenario", "gen_combo": "accuracy", "gen_sweep": "sweep"}
SWEEP_MODULE = "test_sla_sweep.py"

def _no_gate(spec: GenerationSpec) -> str:
    return (f"workload {spec.name} has no endpoint_accuracy in zoo.yaml, the gate against a "
            f"server: add one (docs/zoo.md)")


def _precisions(config: pytest.Config, spec: GenerationSpec) -> tuple[str, ...]:
    """A server serves the model in its own precision: one item per scenario."""
    return (ENDPOINT_PRECISION,) if config.stash[RUN].llm.endpoint else spec.precisions


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "generation: LLM serving and generation accuracy (suites/llm)")
    for family in sorted({w.family for w in config.stash[RUN].zoo.generation}):
        config.addinivalue_line("markers", f"{family}: the {family} model family")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The sweep's module is collected only with --llm-sweep (else its items would
    all be one 'empty parameter set' skip in every run)."""
    if collection_path.name == SWEEP_MODULE and config.getoption("llm_sweep") is None:
        return True
    return None


def _cases(config: pytest.Config, kind: str) -> list:
    """The items of one test function: "accuracy", "scenario" or "sweep"."""
    state = config.stash[RUN]
    cases = []
    for spec in state.zoo.generation:
        for p in _precisions(config, spec):
            if kind != "scenario":
                cases.append(GenCase(spec, p, SWEEP if kind == "sweep" else None))
                continue
            # --scenarios picks the LLM scenarios too (offline, single_stream, server).
            for scenario in (s for s in spec.scenarios
                             if state.scenarios is None or s in state.scenarios):
                for c in spec.concurrency if scenario == "offline" else (None,):
                    cases.append(GenCase(spec, p, scenario, c))
    marks = lambda c: [pytest.mark.generation, pytest.mark.llm,  # noqa: E731
                       getattr(pytest.mark, c.spec.family)] + (
        [pytest.mark.smoke] if state.zoo.tier == "smoke" else []) + (
        [pytest.mark.skip(reason=_no_gate(c.spec))] if c.scenario is None and
        c.precision == ENDPOINT_PRECISION and c.spec.endpoint_accuracy is None else [])
    return [pytest.param(c, id=c.id, marks=marks(c)) for c in cases]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, kind in CASE_FIXTURES.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, _cases(metafunc.config, kind))


@pytest.hookimpl(tryfirst=True)  # before xpuperf.plugin reads ITEM_KEY (expected failures)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[RUN]
    order = {key: i for i, key in enumerate((w.name, p) for w in state.zoo.generation
                                            for p in _precisions(config, w))}
    llm = [(i, c) for i, c in ((i, gen_case(i)) for i in items) if c is not None]
    for item, case in llm:
        item.user_properties.append((ITEM_KEY, case.identity(state.hardware)))
    # Group by workload and precision, the accuracy item first, then scenarios in
    # the zoo's order (offline first: the server loads a fraction of its rate),
    # the sweep last.
    ranked = sorted(llm, key=lambda ic: (order[ic[1].group], (ic[1].scenario is not None)
                                         + (ic[1].scenario == SWEEP)))
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
