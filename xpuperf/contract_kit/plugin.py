"""The contract kit's pytest plugin: the backend under test, its precisions as
parameters, the tiny models and the fixtures test_contract.py uses."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from backends.base import Backend, Compiled
from xpuperf.contract_kit.models import MODELS, ContractArtifact, write_onnx
from xpuperf.options import RUN

# Loaded with -p, before pytest reads the command line: --hardware is the plugin's.
# A checkout's conftest.py loads it too, once: pytest registers a module by name.
# (Imported by pytest, not here, so that its asserts are rewritten.)
pytest_plugins = ["xpuperf.plugin"]
_BACKEND = pytest.StashKey[Backend]()
# Not a zoo run: xpuperf.plugin reads no zoo and leaves the report folder
# (reports/NAME) alone.
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
