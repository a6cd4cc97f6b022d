"""A worker in another interpreter, or on another import path: the A/B
baseline of another installed SDK version or another checkout (xpuperf.gate).

xpuperf.worker.process forks its workers from a server of this interpreter,
whose imports are made; a worker that must import another numpy, torch or
vendor SDK is started instead as a fresh ``python -m xpuperf.worker.spawned``
(``--ab-baseline-python``, with ``--ab-baseline-path`` first on its
PYTHONPATH), handed one end of a pipe, which speaks the same
protocol (xpuperf.worker.protocol: JSON and .npy, never a pickle) through the
same loop (xpuperf.worker.server.serve). This checkout's xpuperf comes last on
its path, so the timing loops are the candidate's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from xpuperf.worker.server import Origin, serve

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose xpuperf the worker runs


class SpawnedProcess:
    """The started interpreter, with the few members of multiprocessing.Process
    that xpuperf.worker.process.Worker uses; its ``sentinel`` is a pidfd, which
    becomes readable when the process ends, as a Process's sentinel does."""

    def __init__(self, popen: subprocess.Popen):
        self._popen = popen
        self.pid = popen.pid
        self.sentinel = os.pidfd_open(popen.pid)

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def kill(self) -> None:
        self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()


def start(python: str, path: str | None, host: str, kwargs: dict[str, Any], log: str,
          device: str | None, alive: Connection) -> tuple[SpawnedProcess, Connection]:
    """Start ``python -m xpuperf.worker.spawned``, handing it one end of a pipe
    and ``alive``, the read end of the reaper's (server.serve): (its process,
    our end). Its environment is this process's with ``path``
    and then this checkout first on PYTHONPATH; what it prints before its
    loop takes over (an import that fails) goes to ``log`` as the loop's does."""
    ours, theirs = Pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (path, str(ROOT), os.environ.get("PYTHONPATH")) if p)
    setup = json.dumps({"fd": theirs.fileno(), "host": host, "kwargs": kwargs, "log": log,
                        "device": device, "cwd": os.getcwd(), "alive": alive.fileno()})
    with open(log, "ab") as out:
        popen = subprocess.Popen([python, "-m", "xpuperf.worker.spawned", setup], env=env,
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 pass_fds=[theirs.fileno(), alive.fileno()])
    theirs.close()
    return SpawnedProcess(popen), ours


def main() -> None:
    setup = json.loads(sys.argv[1])
    origin = Origin(dict(os.environ), list(sys.path), setup["cwd"])
    serve(Connection(setup["fd"]), setup["host"], setup["kwargs"], setup["log"],
          setup["device"], origin, Connection(setup["alive"]))


if __name__ == "__main__":
    main()
