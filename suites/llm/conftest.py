"""The LLM serving suite's parametrization and fixtures, from zoo.yaml's
`generation:` workloads (xpuperf.zoo.generation).

Items of one workload and precision run together, accuracy first, so one model
and one engine serve them; the engine is closed before the next is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest

from xpuperf.generation import settings
from xpuperf.plugin import STATE
from xpuperf.records import ITEM_KEY, RECORD_KEY, jsonable
from xpuperf.zoo.generation import GenerationSpec

SUITE = "generation"
SETTINGS = pytest.StashKey[settings.Settings]()
NO_ACCURACY = "the accuracy gate against a server (GSM8K-style prompts) is not built yet"


@dataclass(frozen=True)
class GenCase:
    spec: GenerationSpec
    precision: str
    scenario: str | None = None  # None: the accuracy item
    concurrency: int | None = None

    @property
    def id(self) -> str:
        if self.scenario is None:
            return self.spec.combo_id(self.precision)
        return self.spec.case_id(self.precision, self.scenario, self.concurrency)

    def identity(self, hardware: str) -> dict[str, Any]:
        """The record keys that say which item this is (xpuperf.records)."""
        extra = {"scenario": self.scenario, "concurrency": self.concurrency} if self.scenario else {}
        served = self.precision == settings.ENDPOINT_PRECISION
        return {"suite": SUITE, "combination": self.spec.combo_id(self.precision),
                "model": self.spec.name, "dataset": "prompts", "precision": self.precision,
                "hardware": hardware, "framework": "server" if served else "torch",
                "domain": "llm", "family": self.spec.family,
                "weights": "the server's" if served else f"seeded (seed {self.spec.seed})", **extra}


def _settings(config: pytest.Config) -> settings.Settings:
    o = config.getoption
    try:
        return settings.parse(o("llm_endpoint"), o("llm_model"), o("llm_api"), o("llm_tokenizer"),
                              o("llm_request_timeout"), o("llm_ignore_eos"), o("llm_slo"), o("llm_arrivals"),
                              o("llm_percentiles"))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def _precisions(config: pytest.Config, spec: GenerationSpec) -> tuple[str, ...]:
    """A server serves the model in its own precision: one item per scenario."""
    return (settings.ENDPOINT_PRECISION,) if config.stash[SETTINGS].endpoint else spec.precisions


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SETTINGS] = _settings(config)
    config.addinivalue_line("markers", "generation: LLM serving and generation accuracy (suites/llm)")
    for family in sorted({w.family for w in config.stash[STATE].zoo.generation}):
        config.addinivalue_line("markers", f"{family}: the {family} model family")


def _cases(config: pytest.Config, accuracy: bool) -> list:
    state = config.stash[STATE]
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
        if c.scenario is None and c.precision == settings.ENDPOINT_PRECISION else [])
    return [pytest.param(c, id=c.id, marks=marks(c)) for c in cases]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "gen_case" in metafunc.fixturenames:
        metafunc.parametrize("gen_case", _cases(metafunc.config, accuracy=False))
    elif "gen_combo" in metafunc.fixturenames:
        metafunc.parametrize("gen_combo", _cases(metafunc.config, accuracy=True))


def _case(item: pytest.Item) -> GenCase | None:
    params = item.callspec.params if hasattr(item, "callspec") else {}
    # A zoo without generation workloads parametrizes with an empty set: pytest
    # then makes one skipped item whose parameter is a NOTSET marker.
    case = params.get("gen_case") or params.get("gen_combo")
    return case if isinstance(case, GenCase) else None


@pytest.hookimpl(tryfirst=True)  # before xpuperf.plugin reads ITEM_KEY (expected failures)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[STATE]
    order = {key: i for i, key in enumerate((w.name, p) for w in state.zoo.generation
                                            for p in _precisions(config, w))}
    llm = [(i, c) for i, c in ((i, _case(i)) for i in items) if c is not None]
    for item, case in llm:
        item.user_properties.append((ITEM_KEY, case.identity(state.hardware)))
    # Group by workload and precision, the accuracy item first, then scenarios in
    # the zoo's order (offline first: the server loads a fraction of its rate).
    ranked = sorted(llm, key=lambda ic: (order[(ic[1].spec.name, ic[1].precision)],
                                         ic[1].scenario is not None))
    slots = iter(ranked)
    items[:] = [next(slots)[0] if _case(i) is not None else i for i in items]


@pytest.fixture(scope="session")
def llm(pytestconfig: pytest.Config):
    """The LLM items' session (xpuperf.generation.remote.RemoteLLM): the engines
    run in worker processes, each item within --item-timeout, else the tier's
    timeout_s."""
    from xpuperf.generation.remote import RemoteLLM

    state = pytestconfig.stash[STATE]
    limit = pytestconfig.getoption("item_timeout") or state.zoo.timeout_s
    session = RemoteLLM(state.entry.name, state.options, state.zoo, limit, state.device,
                        pytestconfig.stash[SETTINGS])
    yield session
    session.close()


@pytest.fixture
def record_llm(request: pytest.FixtureRequest, record_property) -> Callable[..., None]:
    """record_llm(**fields): attach this item's result record (suite "generation")."""
    state = request.config.stash[STATE]
    case = _case(request.node)

    def _record(**fields: Any) -> None:
        record_property(RECORD_KEY, jsonable({**case.identity(state.hardware), **fields}))
    return _record


@pytest.fixture
def engine_ready(llm, request: pytest.FixtureRequest) -> None:
    """The item's engine started (skips when the backend cannot generate it)."""
    case = _case(request.node)
    unsupported = llm.start(case.spec, case.precision)
    if unsupported:
        pytest.skip(unsupported)
