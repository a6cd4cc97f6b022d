"""The backend contract kit: what any backend must do, checked on tiny ONNX models
the kit writes itself.

    pytest tests_selftest/contract --hardware NAME [--backend-option KEY=VALUE ...]

NAME is whatever --hardware takes: a package under backends/, an entry point in
group ``xpuperf.backends``, or ``package.module:Class``. The kit drives the
backend's two classes directly, in this process (not through the suite's worker):
it tests the backend, not the harness. Every declared precision is a parameter.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from backends.base import Backend, Compiled
from xpuperf.options import RUN

from contract_models import MODELS, ContractArtifact, write_onnx

_BACKEND = pytest.StashKey[Backend]()
# Not a zoo run: xpuperf.plugin leaves the report folder (reports/NAME) alone.
XPUPERF_ZOO_RUN = False


def _backend(config: pytest.Config) -> Backend:
    if _BACKEND not in config.stash:
        config.stash[_BACKEND] = config.stash[RUN].entry.load()()
    return config.stash[_BACKEND]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "precision" in metafunc.fixturenames:
        metafunc.parametrize("precision", sorted(_backend(metafunc.config).precisions()))


@pytest.fixture(scope="session")
def backend(pytestconfig: pytest.Config) -> Backend:
    return _backend(pytestconfig)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ContractArtifact]:
    folder = tmp_path_factory.mktemp("contract_models")
    return {name: ContractArtifact(m, write_onnx(m, folder / f"{name}.onnx"))
            for name, m in MODELS.items()}


@pytest.fixture(scope="session")
def backend_options(pytestconfig: pytest.Config) -> dict[str, str]:
    """--backend-option and --backend-config, as the suites pass them."""
    return dict(pytestconfig.stash[RUN].options)


Compile = Callable[..., Compiled]


@pytest.fixture
def compile_model(backend: Backend, artifacts, backend_options) -> Iterator[Compile]:
    """compile_model(name, precision, cache_dir=None): the tiny model compiled for
    batch sizes 1 and 3 with the session's backend options; closed after the test."""
    made: list[Compiled] = []

    def make(name: str, precision: str, cache_dir: Path | None = None) -> Compiled:
        compiled = backend.compile(artifacts[name], precision, (1, 3), dict(backend_options),
                                   cache_dir)
        made.append(compiled)
        return compiled

    yield make
    for compiled in made:
        compiled.close()
