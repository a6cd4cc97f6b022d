"""The worker process (xpuperf.worker.process) without a backend: what crosses its
pipe, what it starts with, what its start may take, and that nothing it or its
backend started outlives it or the session (tests_selftest.faulty_backends:EchoHost)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests_selftest.sessions import ROOT, python_env
from xpuperf import session
from xpuperf.session import WorkerStartFailed
from xpuperf.worker.process import RemoteError, Worker, WorkerLost
from xpuperf.worker.ranks import Ranks


# --------------------------------------------------------------------------- the worker itself

def test_a_worker_carries_json_and_arrays_and_ends_with_the_reason():
    worker = Worker("tests_selftest.faulty_backends:EchoHost", {}, name="echo worker")
    try:
        value = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), "n": [1, 2.5, None, "x"],
                 "nan": float("nan")}
        back = worker.call("echo", 60, value=value)
        assert back["a"].dtype == np.float16 and (back["a"] == value["a"]).all()
        assert back["n"] == value["n"] and np.isnan(back["nan"])
        with pytest.raises(RemoteError, match="unknown command 'nope'") as raised:
            worker.call("nope", 60)
        assert "Traceback" in raised.value.traceback  # the worker's own
        with pytest.raises(WorkerLost, match="ran past its time limit of 1 s while sleep") as lost:
            worker.call("sleep", 1, seconds=30)
        assert lost.value.timed_out
        # A lost worker is replaced by a fresh one on the next call.
        with pytest.raises(WorkerLost, match="killed by SIGSEGV while about to crash") as lost:
            worker.call("crash", 60)
        assert not lost.value.timed_out and "last words" in str(lost.value)
        assert "Segmentation fault" in str(lost.value)  # faulthandler's stack
    finally:
        worker.close()


def test_a_worker_starts_with_its_parents_environment_folder_and_path_as_they_are_now(
        tmp_path, monkeypatch):
    # Workers fork from a server process started with the session's first worker:
    # what the parent changed since must still reach the next worker.
    first = Worker("tests_selftest.faulty_backends:EchoHost", {}, name="first worker")
    try:
        assert first.call("where", 60, variable="XPUPERF_TEST_ORIGIN")["value"] is None
    finally:
        first.close()
    monkeypatch.setenv("XPUPERF_TEST_ORIGIN", "set since")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    later = Worker("tests_selftest.faulty_backends:EchoHost", {}, name="later worker")
    try:
        seen = later.call("where", 60, variable="XPUPERF_TEST_ORIGIN")
    finally:
        later.close()
    assert seen["value"] == "set since" and seen["cwd"] == str(tmp_path)
    assert seen["path"][0] == str(tmp_path)


# --------------------------------------------------------------------------- what a backend starts

def _gone(pids, within_s: float = 10.0) -> list[int]:
    """Those of ``pids`` still running (not zombies) after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        left = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if state != "Z":
                left.append(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_a_worker_whose_forked_helper_holds_the_pipe_is_reported_dead_at_once():
    # Before the worker's sentinel was watched, the helper's copy of the pipe hid
    # the crash until the whole time limit (1,800 s by default; 60 here).
    worker = Worker("tests_selftest.faulty_backends:EchoHost", {}, name="forking worker")
    start = time.monotonic()
    try:
        with pytest.raises(WorkerLost, match="killed by SIGSEGV while fork_then_crash") as lost:
            worker.call("fork_then_crash", 60)
    finally:
        worker.close()
    assert time.monotonic() - start < 30 and not lost.value.timed_out
    helper = int(re.search(r"helper (\d+)", str(lost.value)).group(1))
    assert _gone([helper]) == []  # ended with the worker's process group


def test_what_a_backend_starts_ends_with_its_worker():
    worker = Worker("tests_selftest.faulty_backends:EchoHost", {}, name="spawning worker")
    try:
        pids = worker.call("spawn", 60)
        assert len(_gone(pids, 0)) == 2  # both running while the worker does
    finally:
        worker.close()
    assert _gone(pids) == []


# A session that adds the modules it is given to its fork server's preload (a
# backend's Backend.preload), then asks two workers in turn whether one was imported.
_PRELOADING = """
import sys
from xpuperf.worker import process
process.preload(sys.argv[1:])
for n in range(2):
    w = process.Worker("tests_selftest.faulty_backends:EchoHost", {}, name="preloaded worker")
    try:
        print(w.call("imported", 60, module="wave"), flush=True)
    except process.StartFailed as e:
        print(str(e).replace(" ", "_"), flush=True)
    w.close()
"""


@pytest.mark.parametrize("preload, said", [((), "False"), (("wave",), "True"),
                                           (("explodes",), "fork_server_ended")])
def test_a_worker_starts_with_what_its_session_preloads(preload, said, tmp_path):
    # "wave" (the stdlib's WAV files): what no module of PRELOAD imports. A module
    # that raises as it is imported ends the fork server: each worker then fails to
    # start, with the reason, and none hangs.
    (tmp_path / "explodes.py").write_text("raise RuntimeError('an SDK that fails to load')\n")
    out = subprocess.run([sys.executable, "-c", _PRELOADING, *preload], cwd=ROOT, timeout=300,
                         capture_output=True, text=True, env=python_env(tmp_path))
    answers = out.stdout.split()
    assert len(answers) == 2 and all(said in a for a in answers), out.stderr[-2000:]
    if said == "fork_server_ended":
        assert "explodes" in answers[0] and "an SDK that fails to load" in out.stderr


# A parent that starts a worker whose backend starts a sleeper and a forked copy,
# prints every pid of the session's machinery, then hangs the worker and either
# exits without closing it or waits to be SIGKILLed.
_PARENT = """
import multiprocessing.forkserver, multiprocessing.resource_tracker, sys
from xpuperf.worker.process import Worker
w = Worker("tests_selftest.faulty_backends:EchoHost", {}, name="orphaned worker")
pids = w.call("spawn", 60) + [w._process.pid,
    multiprocessing.forkserver._forkserver._forkserver_pid,
    multiprocessing.resource_tracker._resource_tracker._pid]
print(" ".join(map(str, pids)), flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
w.call("sleep", 600, seconds=600)
"""


@pytest.mark.parametrize("end", ["exit", "sigkill"])
def test_nothing_of_a_session_outlives_its_parent(end):
    # Its stdout is a pipe, as in `pytest -s | cat`: the reader sees EOF only once
    # every process holding it has ended (the forkserver and the resource
    # tracker hold it, and live while a worker or what it started does).
    proc = subprocess.Popen([sys.executable, "-c", _PARENT, end], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env=python_env())
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 5, "the parent did not start its worker"
        if end == "sigkill":
            time.sleep(0.5)  # the worker is in its sleep
            proc.kill()
        proc.communicate(timeout=20)  # EOF: no process holds the pipe any more
        assert _gone(pids) == []
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- its start's limit

def test_a_workers_start_has_its_own_limit_not_charged_to_the_first_item():
    slow = Worker("tests_selftest.faulty_backends:SlowStartHost", {"seconds": 2},
                  name="slow starter")
    try:
        assert slow.call("echo", 1, value=3) == 3  # a 2 s start, then a 1 s limit
    finally:
        slow.close()
    stuck = Worker("tests_selftest.faulty_backends:SlowStartHost", {"seconds": 60},
                   name="stuck starter", start_timeout_s=1)
    try:
        with pytest.raises(WorkerStartFailed) as failed:
            session.call(stuck, 60, "echo", value=3)
    finally:
        stuck.close()
    assert "ran past its start-up limit of 1 s while starting" in str(failed.value)
    assert "XPUPERF_START_TIMEOUT" in str(failed.value)  # how to raise it
    assert "compil" not in str(failed.value)


def test_an_error_of_rank_0_as_its_launcher_ends_loses_the_group():
    """Another rank's death reaches rank 0 first as its collective's error (gloo's
    "Connection closed by peer"), and the launcher ends the group a moment
    later: the call waits for that and raises WorkerLost with the launcher's
    end, not rank 0's symptom as the group's answer (a race CI once lost)."""
    worker = Worker("tests_selftest.faulty_backends:EchoHost", {}, name="two ranks",
                    ranks=Ranks(2))
    try:
        assert worker.call("echo", 60, value=3) == 3
        with pytest.raises(WorkerLost, match="while fail_as_the_launcher_ends"):
            worker.call("fail_as_the_launcher_ends", 60)
    finally:
        worker.close()
