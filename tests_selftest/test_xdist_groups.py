"""`-n 2 --dist loadgroup` as README documents it: each (model, precision) group
runs whole on one worker, and a worker crash ends the session with an exit code
(xpuperf.xdist_groups)."""
import json
import os
import re
from pathlib import Path

from tests_selftest.sessions import run_session, tiny_zoo
from xpuperf.worker import devices

XDIST = ("-n", "2", "--dist", "loadgroup", "-vv")
# pytest-xdist's verbose line per item: "[gw1] [ 50%] PASSED suites/...::test_x[id]"
RESULT = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] ([A-Z]+) (\S+::\S+)", re.M)


def two_model_zoo(folder: Path) -> Path:
    """The tiny zoo with a second model, so that there are two groups to spread."""
    zoo = tiny_zoo(folder) / "zoo.yaml"
    head, models = zoo.read_text().split("models:\n")
    zoo.write_text(head + "models:\n" + models + models.replace("tiny-bert:", "tiny-bert-b:", 1))
    return folder


def results(stdout: str) -> list[tuple[str, str, str]]:
    """(worker, outcome, node id) per item, in the order they were reported; without
    the "@<group>" that pytest-xdist appends to node ids before pytest 9.2."""
    return [(worker, outcome, nodeid.split("@")[0])
            for worker, outcome, nodeid in RESULT.findall(stdout)]


def group(nodeid: str) -> str:
    return re.sub(r"-bs\d+-\w+$", "", nodeid.split("[", 1)[1].split("]")[0])


# Items of the zoo's groups (the plugin parametrizes every test taking `combo`) that
# take down the pytest worker itself, as the OOM killer would; SIGKILL leaves no core.
CRASHING_MODULE = """
import os, signal

def test_crash(combo):
    if combo.model.name == "tiny-bert":
        os.kill(os.getpid(), signal.SIGKILL)

def test_after(combo):
    pass
"""


def test_a_crashing_worker_ends_the_session_and_its_group_goes_on(tmp_path):
    module = tmp_path / "test_crashing.py"
    module.write_text(CRASHING_MODULE)
    # run_session's subprocess time-out turns a hang into a failure of this test.
    r = run_session(two_model_zoo(tmp_path), "CPU", "-p", "xpuperf.plugin", *XDIST,
                    target=str(module))
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    outcomes = {nodeid.rsplit("::", 1)[1]: outcome for _, outcome, nodeid in results(r.stdout)}
    assert outcomes == {"test_crash[tiny-bert-fake-fp32]": "FAILED",
                        "test_after[tiny-bert-fake-fp32]": "PASSED",
                        "test_crash[tiny-bert-b-fake-fp32]": "PASSED",
                        "test_after[tiny-bert-b-fake-fp32]": "PASSED"}, r.stdout[-3000:]
    assert re.search(r"worker 'gw\d+' crashed while running '\S+test_crash\[tiny-bert-fake-fp32\][^']*'",
                     r.stdout), r.stdout[-3000:]


def test_each_group_runs_whole_on_one_worker_bound_to_its_device(tmp_path):
    # Two fake devices, two workers, two groups: each group runs whole on one
    # worker, each worker's backend is handed its own device, and every record
    # names the one its item ran on.
    r = run_session(two_model_zoo(tmp_path), "tests_selftest.fakes:DeviceEchoBackend", *XDIST,
                    "--devices", "0,1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    ran = results(r.stdout)
    workers: dict[str, set[str]] = {}
    for w, _, nodeid in ran:
        workers.setdefault(group(nodeid), set()).add(w)
    assert set(workers) == {"tiny-bert-fake-fp32", "tiny-bert-b-fake-fp32"}, r.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), workers
    assert len(ran) == len({nodeid for _, _, nodeid in ran}) == 8, ran
    worker = {g: next(iter(w)) for g, w in workers.items()}
    docs = [json.loads(p.read_text()) for p in tmp_path.glob("*/*/result-fp32.json")]
    bound = {d["Combination"]: (d["Device Index"], d["Graph Compile"]["Details"]["bound_device"])
             for d in docs}
    # gwK is bound to the K-th device: its backend saw it, its records name it.
    assert bound == {combo: (w[2:], w[2:]) for combo, w in worker.items()}, (bound, worker)
    assert set(worker.values()) == {"gw0", "gw1"}, worker
    # Each worker's backend takes half the host's cores (unless the user said).
    share = os.environ.get("OMP_NUM_THREADS") or devices.cpu_share(2, len(os.sched_getaffinity(0)))
    assert {d["Graph Compile"]["Details"]["threads"] for d in docs} == {int(share)}, docs
    bad = run_session(tmp_path, "CPU", "--devices", "0,gpu1",
                      target="suites/compiler_coverage/test_compile.py")
    assert bad.returncode == 4 and "argument --devices: '0,gpu1': give device indices" in bad.stderr


def test_a_workers_share_of_the_cores_is_equal_and_at_least_one():
    assert devices.cpu_share(2, 2) == 1 and devices.cpu_share(4, 16) == 4
    assert devices.cpu_share(3, 2) == 1 and devices.cpu_share(1, 8) == 8
