"""`--ray-address ADDRESS`: every group's backend worker runs as a Ray actor on
a node of that cluster offering the hardware's resource
(xpuperf.worker.ray_worker); with `-n N --dist loadgroup`, N groups at once,
their results streaming back to this one pytest controller, which writes one
report. Ray is an optional extra: pip install xpuperf[ray]."""
from __future__ import annotations

import importlib.util

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("xpuperf").addoption(
        "--ray-address", default=None, metavar="ADDRESS",
        help="run each (model, precision) group's backend worker on a node of this Ray "
             "cluster ('auto': the one `ray start` joined here; host:port) that offers the "
             "hardware's resource; with -n N --dist loadgroup, N at once "
             "(docs/scale-out.md; pip install xpuperf[ray])")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("ray_address") is None:
        return
    if importlib.util.find_spec("ray") is None:
        raise pytest.UsageError("--ray-address needs Ray: pip install 'xpuperf[ray]' "
                                "(or pip install 'ray>=2.60')")
    ab = config.getoption("ab_baseline_option") or config.getoption("ab_baseline_python") \
        or config.getoption("ab_baseline_path")
    if ab:
        raise pytest.UsageError("--ray-address with an A/B baseline (--ab-baseline-*): the two "
                                "sides must share one machine; run the A/B without Ray")

