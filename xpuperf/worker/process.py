"""The parent's handle on a worker process: start it, send it commands with a
time limit, and turn its death into an error that says what happened."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from xpuperf.worker import protocol, spawned
from xpuperf.worker.server import Origin, serve

# Workers are forked from one server process per session that has imported
# these once (multiprocessing's forkserver), not started afresh: a fresh python
# spent over a second importing torch and onnxruntime for every compiled model
# (benchmarks/worker_start.py). A module that is not installed is skipped. The
# server runs no thread of python's or torch's when it forks; numpy's BLAS
# starts idle pool threads, which it shuts down before a fork and restarts in
# the child.
PRELOAD = ("numpy", "onnxruntime", "torch", "xpuperf.worker.server", "xpuperf.worker.host")
START_METHOD = "forkserver"  # benchmarks/worker_start.py times it against "spawn"
LOG_LINES = 20  # of the worker's output, quoted when it dies
TAIL_BYTES = 64 * 1024  # read of the log's end for them: a chatty backend's log grows long
EXIT_GRACE_S = 10.0  # for a worker told to exit to close its backend


class WorkerLost(RuntimeError):
    """The worker crashed or ran past its time limit; it has been ended.
    ``stage`` is what it said it was doing last."""

    def __init__(self, message: str, stage: str, timed_out: bool):
        super().__init__(message)
        self.stage, self.timed_out = stage, timed_out


class RemoteError(RuntimeError):
    """A command raised in the worker; ``traceback`` is the worker's."""

    def __init__(self, type: str, message: str, traceback: str):  # noqa: A002 - the wire's names
        super().__init__(f"{type}: {message}")
        self.type, self.message, self.traceback = type, message, traceback


class WorkerWarning(UserWarning):
    """A warning raised in the worker, passed on in the parent."""


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class Worker:
    """A worker process hosting ``host`` ("module:Class", see server.serve), built
    with ``kwargs``; ``device`` is handed to it as XPUPERF_DEVICE. Started on the
    first call; ``close()`` ends it. ``python`` or ``path``: started as that
    interpreter, with that folder first on its import path (xpuperf.worker.spawned),
    instead of forked from this one's server."""

    def __init__(self, host: str, kwargs: dict[str, Any], name: str,
                 device: str | None = None, python: str | None = None,
                 path: str | None = None):
        self.host, self.kwargs, self.name, self.device = host, kwargs, name, device
        self.python, self.path = python, path
        self.stage = ""
        self._process: Any = None
        self._conn: Any = None
        self._log: Path | None = None

    def call(self, command: str, timeout_s: float, **args: Any) -> Any:
        """``command(**args)`` in the worker, its answer back within ``timeout_s``
        (a start included). RemoteError when it raised; WorkerLost when the worker
        died or ran out of time (and is then ended)."""
        deadline = time.monotonic() + timeout_s
        try:
            if self._process is None:
                self._start(deadline, timeout_s)
            self.stage = command
            try:
                protocol.send(self._conn, {"command": command, "args": args})
            except OSError:
                pass  # it died since its last answer: _answer finds out how
            return self._answer(deadline, timeout_s)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM mid-command: end it now, not on close
            self._stop()
            raise

    def close(self) -> None:
        """Ask the worker to close its backend and exit; end it if it does not."""
        if self._process is not None and self._process.is_alive():
            try:
                protocol.send(self._conn, {"command": "exit"})
                self._process.join(EXIT_GRACE_S)
            except OSError:
                pass
        self._stop()

    # ------------------------------------------------------------------ internals
    def _start(self, deadline: float, timeout_s: float) -> None:
        fd, log = tempfile.mkstemp(prefix="xpuperf-worker-", suffix=".log")
        os.close(fd)
        self._log = Path(log)
        self.stage = "starting"
        if self.python or self.path:
            self._process, self._conn = spawned.start(self.python or sys.executable, self.path,
                                                      self.host, self.kwargs, log, self.device)
        else:
            ctx = multiprocessing.get_context(START_METHOD)
            ctx.set_forkserver_preload(list(PRELOAD))  # for the server's start: a no-op after
            self._conn, child = ctx.Pipe()
            self._process = ctx.Process(target=serve, daemon=True, name=self.name,
                                        args=(child, self.host, self.kwargs, log, self.device,
                                              Origin.here()))
            self._process.start()
            child.close()
        self._answer(deadline, timeout_s)

    def _answer(self, deadline: float, timeout_s: float) -> Any:
        while True:
            message = self._receive(deadline, timeout_s)
            if "note" in message:
                self.stage = message["note"]
                continue
            for text in message.get("warnings", ()):
                warnings.warn(f"{self.name}: {text}", WorkerWarning, stacklevel=3)
            if "error" in message:
                if self.stage == "starting":
                    self._stop()
                raise RemoteError(**message["error"])
            return message["value"]

    def _receive(self, deadline: float, timeout_s: float) -> dict[str, Any]:
        if self._conn.poll(max(0.0, deadline - time.monotonic())):
            try:
                return protocol.receive(self._conn)
            except (EOFError, OSError):
                self._process.join(5)
                why, timed_out = _signal_name(self._process.exitcode), False
        else:
            why, timed_out = f"ran past its time limit of {timeout_s:g} s", True
        stage, tail = self.stage, self._tail()
        self._stop()
        raise WorkerLost(f"the backend's worker process {why} while {stage}"
                         + (f"; its last output:\n{tail}" if tail else " (it wrote nothing)"),
                         stage, timed_out)

    def _tail(self) -> str:
        if self._log is None:
            return ""
        try:
            with self._log.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - TAIL_BYTES))
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-LOG_LINES:])

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._conn.close()
        if self._log is not None:
            self._log.unlink(missing_ok=True)
        self._process = self._conn = self._log = None
