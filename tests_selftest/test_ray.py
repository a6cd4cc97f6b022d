"""--ray-address on Ray's local multi-node test cluster (ray.cluster_utils):
each group's backend worker runs as an actor on a node offering the hardware's
resource, two at once under -n 2, results in one report; a node lost mid-item
costs its group's items, with the reason, and the session goes on. Skipped
where Ray is not installed (it is an optional extra: pip install xpuperf[ray])."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests_selftest.sessions import ROOT, conv_zoo, session_command
from xpuperf.worker.ray_worker import placement

COMPILE_ONLY = ("-m", "compiler_coverage")


def test_placement_asks_for_one_of_the_hardwares_resource():
    assert placement("GPU") == {"num_cpus": 0, "num_gpus": 1}
    assert placement("CPU") == {"num_cpus": 1}
    assert placement("TVM") == {"num_cpus": 0, "resources": {"TVM": 1}}


@pytest.fixture
def cluster():
    """A head node that runs nothing (no CPU, no custom resource) and a cluster's
    address; nodes are added by each test."""
    ray_cluster = pytest.importorskip(
        "ray.cluster_utils", reason="Ray is not installed (pip install 'xpuperf[ray]')")
    made = ray_cluster.Cluster()
    _add_node(made, num_cpus=0)  # the first node added is the head
    yield made
    made.shutdown()


def _add_node(cluster, **node_args):
    """cluster.add_node, tried up to three times: Ray gives a new node 30 s to
    register with the GCS (fixed in ray._private.node), which CI's lane at nice 19
    beside README's command has missed ("timed out during startup ... the GCS
    has become overloaded"). Ray's exit hook ends a node that timed out."""
    for attempt in range(3):
        try:
            return cluster.add_node(**node_args)
        except Exception as error:  # Ray raises a bare Exception for it
            if "timed out during startup" not in str(error) or attempt == 2:
                raise


def _records(folder: Path) -> dict[str, dict]:
    doc = json.loads((folder / "records.json").read_text())
    return {r["combination"]: r for r in doc["records"]}


def test_groups_run_on_ray_nodes_two_at_once_into_one_report(cluster, tmp_path):
    for _ in range(2):
        _add_node(cluster, num_cpus=1)
    cluster.wait_for_nodes()
    folder = conv_zoo(tmp_path, {"conv-a": "", "conv-b": ""})
    done = subprocess.run(session_command(folder, "CPU", *COMPILE_ONLY, "-n", "2", "--dist",
                                          "loadgroup", "--ray-address", cluster.address,
                                          target="suites"),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = _records(folder / "CPU")
    assert sorted(records) == ["conv-a-fake-fp32", "conv-b-fake-fp32"]
    nodes = {node["NodeID"] for node in _ray_nodes(cluster) if node["Resources"].get("CPU")}
    for rec in records.values():
        assert rec["outcome"] == "passed" and rec["ray_node"] in nodes, rec
        assert rec["host"]


def _ray_nodes(cluster) -> list[dict]:
    import ray
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        return ray.nodes()
    finally:
        ray.shutdown()


def test_a_node_lost_mid_item_fails_its_group_with_the_reason_and_the_session_goes_on(
        cluster, tmp_path):
    # Only STALLCPU nodes run the fake's actors: the first is taken away while
    # the first group's compile stalls on it; the second runs the next group.
    doomed = _add_node(cluster, num_cpus=1, resources={"STALLCPU": 1})
    cluster.wait_for_nodes()
    folder = conv_zoo(tmp_path, {"conv-a": "", "conv-b": ""})
    flag = tmp_path / "stalled"
    session = subprocess.Popen(
        session_command(folder, "tests_selftest.fakes:StallingBackend", *COMPILE_ONLY,
                        "--backend-option", f"stall_flag={flag}", "--ray-address",
                        cluster.address, target="suites", report="report"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not flag.exists():
            assert session.poll() is None, session.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the first group's compile never began"
            time.sleep(0.5)
        _add_node(cluster, num_cpus=1, resources={"STALLCPU": 1})
        cluster.remove_node(doomed)
        out = session.communicate(timeout=600)[0]
    finally:
        session.kill()
    assert session.returncode == 1, out[-3000:]  # an item failed; the session ended
    records = _records(folder / "report")
    lost, after = records["conv-a-fake-fp32"], records["conv-b-fake-fp32"]
    assert lost["outcome"] == "failed", lost
    assert "Ray actor of the backend's worker" in lost["message"] and "lost" in lost["message"]
    assert after["outcome"] == "passed", after
