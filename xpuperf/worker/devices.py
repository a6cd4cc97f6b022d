"""Which device a session's backend workers are bound to (--devices), and the
share of the host's cores they take beside other pytest-xdist workers.

With several accelerators, ``pytest -n N --devices 0,1,...`` runs N pytest-xdist
workers, and worker gwK binds every backend worker it starts to the K-th listed
device, round robin: one pytest worker per device, each group (model,
precision) whole on one of them (xpuperf.xdist_groups). A backend worker is
handed its device as $XPUPERF_DEVICE (xpuperf.worker.server), which a backend
reads for its device index (the GPU backend's ``cuda`` without an index).
"""
from __future__ import annotations

import os
from typing import Mapping


class DeviceListError(ValueError):
    """--devices is not a list of device indices; the message says how to fix it."""


def parse(listed: str) -> tuple[str, ...]:
    devices = tuple(d.strip() for d in listed.split(","))
    if not all(d.isdigit() for d in devices):
        raise DeviceListError(f"{listed!r}: give device indices separated by commas, "
                              "e.g. --devices 0,1,2,3")
    return devices


def bound(devices: tuple[str, ...], xdist_worker: str | None) -> str:
    """The device of this pytest process: pytest-xdist worker gwK (``xdist_worker``,
    from $PYTEST_XDIST_WORKER) takes the K-th of ``devices``, round robin; a
    session without workers takes the first."""
    k = xdist_worker[2:] if xdist_worker and xdist_worker.startswith("gw") else ""
    return devices[int(k) % len(devices) if k.isdigit() else 0]


def cpu_share(workers: int, cores: int) -> int:
    """Threads for the backends of each of ``workers`` pytest-xdist workers on a
    host of ``cores``: an equal share, at least one. Each backend otherwise
    takes every core, and N of them at once spin on each other's: -n 2 on two
    cores took 250 s over the GPU backend's smoke tier on the CPU, and failed
    1 to 3 of its server items; a core each, 81 s and none."""
    return max(1, cores // max(1, workers))


def xdist_workers(environ: Mapping[str, str] = os.environ) -> int:
    """How many pytest-xdist workers share this host (PYTEST_XDIST_WORKER_COUNT,
    which each worker has); 1 outside pytest-xdist."""
    return int(environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
