"""The parent's handle on a worker process: start it, send it commands with a
time limit, and turn its death into an error that says what happened."""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, NoReturn

from xpuperf.worker import protocol, ranks as multi_rank, spawned
from xpuperf.worker.server import Origin, serve

# Workers are forked from one server process per session that has imported
# these once (multiprocessing's forkserver), not started afresh: a fresh python
# spent over a second importing torch and onnxruntime for every compiled model
# (benchmarks/worker_start.py), and each worker half a second importing onnx.
# The session adds its backend's own (Backend.preload, ``preload``). A module
# that is not installed is skipped. The server runs no thread of python's or
# torch's when it forks; numpy's and scipy's BLAS start idle pool threads, which
# they shut down before a fork and restart in the child.
PRELOAD = ("numpy", "onnx", "onnxruntime", "torch", "xpuperf.worker.server",
           "xpuperf.worker.host")
_also: list[str] = []  # the session's additions to PRELOAD (``preload``)
START_METHOD = "forkserver"  # benchmarks/worker_start.py times it against "spawn"
LOG_LINES = 30  # of the worker's output, quoted when it dies: faulthandler's header above a deep stack
TAIL_BYTES = 64 * 1024  # read of the log's end for them: a chatty backend's log grows long
EXIT_GRACE_S = 10.0  # for a worker told to exit to close its backend
# A multi-rank worker's error may be another rank's death, seen first by rank 0's
# collective ("Connection closed by peer"): the launcher, which watches every
# rank, then ends the rest and exits, about a second later. Waited for this
# long after such an error, so that the group fails as lost, with the launcher's
# report of which rank died, and not with rank 0's symptom.
RANK_LOSS_GRACE_S = 5.0
# For a worker's start: the session's first forks the server, which imports
# torch and onnxruntime (seconds, a minute on a loaded host), then the host
# builds the backend. It has a limit of its own, not charged to an item;
# $XPUPERF_START_TIMEOUT (seconds) replaces it.
START_TIMEOUT_S = 300.0
START_TIMEOUT_ENV = "XPUPERF_START_TIMEOUT"


class WorkerLost(RuntimeError):
    """The worker crashed or ran past its time limit; it has been ended.
    ``stage`` is what it said it was doing last."""

    def __init__(self, message: str, stage: str, timed_out: bool):
        super().__init__(message)
        self.stage, self.timed_out = stage, timed_out


class StartFailed(WorkerLost):
    """The worker did not start: it died, ran past its start-up limit, or its
    host raised as it was built (then ``traceback`` is the worker's)."""

    def __init__(self, message: str, timed_out: bool, traceback: str = ""):
        super().__init__(message, "starting", timed_out)
        self.traceback = traceback


class RemoteError(RuntimeError):
    """A command raised in the worker; ``traceback`` is the worker's."""

    def __init__(self, type: str, message: str, traceback: str):  # noqa: A002 - the wire's names
        super().__init__(f"{type}: {message}")
        self.type, self.message, self.traceback = type, message, traceback


class WorkerWarning(UserWarning):
    """A warning raised in the worker, passed on in the parent."""


def preload(modules: Iterable[str]) -> None:
    """Have the session's fork server import ``modules`` too (a backend's
    ``preload``), where it has not started yet: it starts with the first worker."""
    _also.extend(m for m in modules if m not in PRELOAD and m not in _also)


def start_limit_s() -> float:
    text = os.environ.get(START_TIMEOUT_ENV, "")
    try:
        seconds = float(text) if text else START_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"${START_TIMEOUT_ENV}={text!r}: give the worker's start-up limit in "
                         f"seconds > 0, e.g. {START_TIMEOUT_ENV}=600")
    return seconds


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
    instead of forked from this one's server. ``ranks``: launched as that many
    ranks, rank 0 hosting ``host`` (xpuperf.worker.ranks)."""

    def __init__(self, host: str, kwargs: dict[str, Any], name: str,
                 device: str | None = None, start_timeout_s: float | None = None,
                 python: str | None = None, path: str | None = None,
                 ranks: multi_rank.Ranks | None = None):
        self.host, self.kwargs, self.name, self.device = host, kwargs, name, device
        self.start_timeout_s = start_timeout_s or start_limit_s()
        self.python, self.path, self.ranks = python, path, ranks
        self.stage = ""
        self._process: Any = None
        self._conn: Any = None
        self._alive: Any = None  # the write end of the worker's reaper pipe (server.serve)
        self._log: Path | None = None

    def call(self, command: str, timeout_s: float, **args: Any) -> Any:
        """``command(**args)`` in the worker, its answer back within ``timeout_s``
        (after the worker's start, which has a limit of its own). RemoteError when
        it raised; WorkerLost when the worker died or ran out of time (and is then
        ended); StartFailed when it could not start."""
        try:
            if self._process is None:
                self._start()
            deadline = time.monotonic() + timeout_s
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
    def _start(self) -> None:
        fd, log = tempfile.mkstemp(prefix="xpuperf-worker-", suffix=".log")
        os.close(fd)
        self._log = Path(log)
        self.stage = "starting"
        if self.ranks:
            # No reaper: the launcher's children cannot inherit its pipe. Rank 0
            # reads EOF on its socket when this process ends, and exits; then
            # the launcher ends the other ranks.
            self._process, self._conn = multi_rank.launch(
                self.ranks, self.host, self.kwargs, log, self.device, self.start_timeout_s)
            if self._conn is None:  # the launcher died, or rank 0 never called
                try:
                    self._lost(*self._why_gone(not self._process.is_alive(),
                                                 self.start_timeout_s))
                except WorkerLost as e:
                    raise StartFailed(str(e), e.timed_out) from None
            self._start_answer()
            return
        # Only this process holds the reaper pipe's write end: when it ends,
        # however it ends (SIGKILL included), the worker's reaper reads EOF and
        # ends the worker's process group (server.serve).
        if self.python or self.path:
            reaper, self._alive = multiprocessing.Pipe(duplex=False)
            self._process, self._conn = spawned.start(self.python or sys.executable, self.path,
                                                      self.host, self.kwargs, log, self.device,
                                                      reaper)
        else:
            ctx = multiprocessing.get_context(START_METHOD)
            ctx.set_forkserver_preload([*PRELOAD, *_also])  # for the server's start: a no-op after
            self._conn, child = ctx.Pipe()
            reaper, self._alive = ctx.Pipe(duplex=False)
            self._process = ctx.Process(target=serve, daemon=True, name=self.name,
                                        args=(child, self.host, self.kwargs, log, self.device,
                                              Origin.here(), reaper))
            try:
                self._process.start()
            except (EOFError, OSError) as e:  # the server died before it forked this worker
                self._process = None
                for end in (child, reaper, self._conn, self._alive):
                    end.close()
                self._stop()
                raise StartFailed(
                    f"the session's fork server ended before it started the worker ({e}): "
                    f"a module it imports first ({', '.join([*PRELOAD, *_also])}) raised "
                    f"as it was imported; its traceback is on the session's stderr; import "
                    f"each in python to find which, and fix or uninstall it", False) from None
            child.close()
        reaper.close()
        self._start_answer()

    def _start_answer(self) -> None:
        """Wait for the started worker's "ready"."""
        try:
            self._answer(time.monotonic() + self.start_timeout_s, self.start_timeout_s)
        except WorkerLost as e:
            raise StartFailed(str(e), e.timed_out) from None
        except RemoteError as e:
            raise StartFailed(f"the backend's worker process could not start: {e}", False,
                              e.traceback) from None

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
                elif self.ranks:
                    self._process.join(RANK_LOSS_GRACE_S)
                    if not self._process.is_alive():
                        self._lost(*self._why_gone(True, timeout_s))
                raise RemoteError(**message["error"])
            return message["value"]

    def _receive(self, deadline: float, timeout_s: float) -> dict[str, Any]:
        # The process's sentinel, not only the pipe: a helper the backend forked
        # holds the pipe open after the worker died, and would hide its death
        # until the time limit.
        ready = multiprocessing.connection.wait([self._conn, self._process.sentinel],
                                                max(0.0, deadline - time.monotonic()))
        if ready:
            try:  # what it sent before it died is still in the pipe: read that first
                if self._conn in ready or self._conn.poll(0):
                    return protocol.receive(self._conn)
            except (EOFError, OSError):
                pass
        self._lost(*self._why_gone(bool(ready), timeout_s))

    def _why_gone(self, ended: bool, timeout_s: float) -> tuple[str, bool]:
        """(why the worker answers no more, whether it ran out of time):
        ``ended``, it exited or closed its end; else its time ran out."""
        if ended:
            self._process.join(5)
            return _signal_name(self._process.exitcode), False
        limit = "start-up limit" if self.stage == "starting" else "time limit"
        return f"ran past its {limit} of {timeout_s:g} s", True

    def _lost(self, why: str, timed_out: bool) -> NoReturn:
        """End the worker and raise WorkerLost quoting its last output."""
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
            _kill_group(self._process.pid)  # what the backend started, and the reaper
            if self._conn is not None:
                self._conn.close()
            if self._alive is not None:
                self._alive.close()
        if self._log is not None:
            self._log.unlink(missing_ok=True)
        self._process = self._conn = self._alive = self._log = None


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in the worker's group (server.serve makes the
    worker its leader). The group's id is not reused while any of it lives."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # none left, or it died before setpgid
        pass
