"""The worker process's main loop: build the host, answer the parent's commands.

The worker's own output (the backend's prints, Python's warnings, and on a
native crash faulthandler's traceback of every thread) goes to a log file whose
last lines the parent quotes when the worker dies.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

from xpuperf.extras import require
from xpuperf.worker import protocol

DEVICE_ENV = "XPUPERF_DEVICE"


def _error(e: BaseException) -> dict[str, str]:
    return {"type": type(e).__name__, "message": str(e),
            "traceback": "".join(traceback.format_exception(e))}


@dataclass(frozen=True)
class Origin:
    """What a worker takes from its parent as it starts: a worker forked from the
    session's server process (xpuperf.worker.process) would otherwise have the
    server's environment, import path and folder, as they were when it started.
    What the preloaded modules read from the environment as they were imported
    (torch's thread pools, say) stays as the server found it, at the session's
    first worker start."""

    environ: dict[str, str]
    path: list[str]
    cwd: str

    @classmethod
    def here(cls) -> "Origin":
        return cls(dict(os.environ), list(sys.path), os.getcwd())

    def enter(self) -> None:
        os.environ.clear()
        os.environ.update(self.environ)
        sys.path[:] = self.path
        os.chdir(self.cwd)


def _reap_with_parent(alive: Any) -> None:
    """Make this process the leader of a process group of its own, which whatever
    the backend starts joins, and fork a reaper that ends the whole group when the
    parent ends: the parent holds the only write end of ``alive``, so the reaper
    reads EOF when the parent exits or is killed (SIGKILL included), even while
    the worker hangs. The parent kills the group itself when it ends a worker
    (process.Worker). A process that leaves the group (setsid) escapes both."""
    worker = os.getpid()
    try:
        os.setpgid(0, 0)
        grouped = True
    except PermissionError:  # a sandbox that forbids it: the reaper then ends only the worker
        grouped = False
    if os.fork() == 0:
        try:
            fd = alive.fileno()
            os.closerange(0, fd)  # the pipes and the log: the parent must see the worker's end
            os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
            while os.read(fd, 1):
                pass
            if grouped:
                os.killpg(0, signal.SIGKILL)
            else:  # never the group it shares with the forkserver (the session's, maybe)
                os.kill(worker, signal.SIGKILL)
        finally:
            os._exit(0)
    alive.close()


def serve(conn: Any, host: str, kwargs: dict[str, Any], log_path: str,
          device: str | None, origin: Origin, alive: Any) -> None:
    """Run host ``module:Class`` (built with ``note`` and ``kwargs``) until the
    parent sends {"command": "exit"} or goes away; ``alive`` is the read end of
    the pipe whose EOF says the parent is gone (_reap_with_parent)."""
    _reap_with_parent(alive)
    origin.enter()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    faulthandler.enable(all_threads=True)
    if device is not None:  # a backend binds the device it is given (one worker per device)
        os.environ[DEVICE_ENV] = device
    run(conn, host, kwargs)


def run(conn: Any, host: str, kwargs: dict[str, Any]) -> None:
    """Build host ``module:Class`` (with ``note`` and ``kwargs``) and answer the
    commands on ``conn`` until the parent sends {"command": "exit"} or goes away.
    serve() runs it in a forked worker; rank 0 of a multi-rank worker
    (xpuperf.worker.ranks) on the socket its parent listens on."""

    def note(text: str) -> None:
        protocol.send(conn, {"note": text})

    try:
        module, _, name = host.partition(":")
        obj = getattr(require(module, f"the worker's {name}"), name)(note=note, **kwargs)
    except Exception as e:  # noqa: BLE001 - the parent reports it as the worker's failure to start
        protocol.send(conn, {"error": _error(e)})
        return
    protocol.send(conn, {"value": "ready"})
    try:
        while True:
            try:
                message = protocol.receive(conn)
            except EOFError:  # the parent is gone
                return
            command = message["command"]
            if command == "exit":
                return
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    if command not in obj.COMMANDS:
                        raise ValueError(f"unknown command {command!r} (known: {obj.COMMANDS})")
                    reply: dict[str, Any] = {"value": getattr(obj, command)(**message["args"])}
                except Exception as e:  # noqa: BLE001 - the parent fails the item with it
                    reply = {"error": _error(e)}
            reply["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
            try:
                protocol.send(conn, reply)
            except (TypeError, ValueError) as e:  # not JSON or arrays: say so, not hang
                protocol.send(conn, {"error": _error(e)})
    finally:
        obj.close()
