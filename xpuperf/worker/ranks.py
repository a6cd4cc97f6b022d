"""A worker of several ranks (a tensor-parallel LLM, zoo.yaml's
``tensor_parallel: N``): its N processes are launched by torchrun, or by the
scheduler's own launcher (--micro-launcher "srun -n {world_size}"; see
xpuperf.launcher), and meet through RANK/WORLD_SIZE/MASTER_ADDR, gloo on the
CPU, nccl on CUDA. Rank 0 connects to a socket its parent listens on and talks
the worker protocol there (xpuperf.worker.server.run): it hosts the group and
reports. The other ranks follow it: they run the host class's ``follow`` with
the same arguments, doing their part of each step rank 0 leads (for an LLM:
backends/tensor_parallel.py).

The parent's handle is xpuperf.worker.process.Worker, given ``ranks``: it
waits for rank 0 as for a forked worker, and when the launcher exits (a rank
died, and torchrun ended the others) quotes the launcher's report from the
ranks' shared log. Rank 0 must run on the parent's host (the socket is a Unix
one): torchrun's ranks all do; under srun or mpirun, place rank 0 there.
"""
from __future__ import annotations

import faulthandler
import json
import multiprocessing.connection
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from xpuperf.extras import require
from xpuperf.launcher import command, join
from xpuperf.worker.server import DEVICE_ENV, run
from xpuperf.worker.spawned import ROOT, SpawnedProcess

PROGRAM = "xpuperf.worker.ranks"
TERM_GRACE_S = 10.0  # for the launcher, told to end, to end its ranks (torchrun does on SIGTERM)


@dataclass(frozen=True)
class Ranks:
    """``world_size`` ranks on torch device ``device`` ("cpu", "cuda": each
    rank its LOCAL_RANK's), launched by ``launcher`` (None: torchrun)."""

    world_size: int
    launcher: str | None = None
    device: str = "cpu"


class Launcher(SpawnedProcess):
    """The launcher's process. torchrun starts each rank in a session of its
    own, so a kill of the launcher's group would miss them: it is asked to end
    them first (SIGTERM), and killed after TERM_GRACE_S."""

    def kill(self) -> None:
        if self.is_alive():
            os.killpg(self.pid, signal.SIGTERM)
            self.join(TERM_GRACE_S)
        super().kill()


def launch(ranks: Ranks, host: str, kwargs: dict[str, Any], log: str, device: str | None,
           timeout_s: float) -> tuple[Launcher, Any]:
    """Launch the ranks, their output to ``log``, and wait up to ``timeout_s``
    for rank 0's connection: (the launcher, the connection to rank 0, or None
    when the launcher died or time ran out first)."""
    folder = tempfile.mkdtemp(prefix="xpuperf-ranks-")  # mode 0700: only we connect
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(os.path.join(folder, "rank0"))
            listener.listen(1)
            setup = json.dumps({"socket": listener.getsockname(), "host": host,
                                "kwargs": kwargs, "device": ranks.device})
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
            if device is not None:
                env[DEVICE_ENV] = device
            with open(log, "ab") as out:
                popen = subprocess.Popen(
                    command(ranks.world_size, ranks.launcher) + ["-m", PROGRAM, setup],
                    env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)  # a group of its own, which Worker kills at its end
            launcher = Launcher(popen)
            ready = multiprocessing.connection.wait([listener, launcher.sentinel], timeout_s)
            if listener not in ready:
                return launcher, None
            conn, _ = listener.accept()
            return launcher, multiprocessing.connection.Connection(conn.detach())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    setup = json.loads(sys.argv[1])
    rank, _, _, _ = join(PROGRAM, setup["device"])
    faulthandler.enable(all_threads=True)
    module, _, name = setup["host"].partition(":")
    if rank == 0:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(setup["socket"])
            run(multiprocessing.connection.Connection(conn.detach()), setup["host"],
                setup["kwargs"])
    else:
        getattr(require(module, f"the worker's {name}"), name).follow(**setup["kwargs"])


if __name__ == "__main__":
    main()
