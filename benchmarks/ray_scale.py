"""--ray-address on Ray's local multi-node test cluster (ray.cluster_utils):

1. split: a balanced CPU-bound selection (MODELS convolutions, each group's
   compile and numerics over SAMPLES samples, --backend-option threads=1) under
   `-n 2 --dist loadgroup --ray-address`, on a cluster of one node with one CPU
   (the groups queue for it) and of two such nodes: the wall time of each, their
   ratio, and whether the two runs' records agree item by item (ids, outcomes);
2. overhead: one offline throughput item timed for ITEM_S seconds (after its
   group's compile item, which starts the worker), its worker local (no Ray)
   and a Ray actor on one node, RUNS sessions of each, alternated: the
   throughput item's seconds (records.json's duration_s, setup to teardown),
   the median of each, and their ratio.

Needs Ray (pip install 'xpuperf[ray]'). On a host whose cores are busy with
other work the figures say little: the load average is printed beside them.

    python benchmarks/ray_scale.py [--only split|overhead]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

from ray.cluster_utils import Cluster  # noqa: E402
from tests_selftest.sessions import conv_zoo, session_command  # noqa: E402

MODELS = 4
SAMPLES = 256
ITEM_S = 1.0
RUNS = 3  # of each worker, alternated, for the overhead's medians
# Heavier convolutions than the selftests' (their zoo's text so replaced), so
# that a group's work is CPU time.
HEAVY = {"out_channels: 4, kernel_size: 1": "out_channels: 64, kernel_size: 3",
         "[batch, 4, 6, 6]": "[batch, 64, 56, 56]", "samples: 4": f"samples: {SAMPLES}"}


def _session(folder: Path, report: str, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(session_command(folder, "CPU", "--backend-option", "threads=1",
                                          *args, target="suites", report=report),
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the session failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def _records(folder: Path) -> dict[str, dict]:
    return {r["item"]: r for r in json.loads((folder / "records.json").read_text())["records"]}


def _on_cluster(nodes: int, run) -> float:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        return run(cluster.address)
    finally:
        cluster.shutdown()


def split(tmp: Path) -> None:
    (tmp / "split").mkdir()
    folder = conv_zoo(tmp / "split", {f"conv-{i}": "" for i in range(MODELS)})
    zoo = folder / "zoo.yaml"
    text = zoo.read_text()
    for old, new in HEAVY.items():
        text = text.replace(old, new)
    zoo.write_text(text)
    pick = ("-k", "test_compile or test_numerics")
    _session(folder, "warm", *pick)  # exports and references into the cache
    walls = {n: _on_cluster(n, lambda address, n=n: _session(
        folder, f"nodes-{n}", *pick, "-n", "2", "--dist", "loadgroup", "--ray-address", address))
        for n in (1, 2)}
    one, two = _records(folder / "nodes-1"), _records(folder / "nodes-2")
    same = {k: r["outcome"] for k, r in one.items()} == {k: r["outcome"] for k, r in two.items()}
    print(f"split: {len(one)} items, one node {walls[1]:.1f} s, two nodes {walls[2]:.1f} s: "
          f"{walls[2] / walls[1]:.2f}x (target <= 0.65x); records agree item by item: {same}; "
          f"Ray nodes used: {len({r.get('ray_node') for r in two.values()})}")


def overhead(tmp: Path) -> None:
    (tmp / "overhead").mkdir()
    folder = conv_zoo(tmp / "overhead", {"conv-a": ""})
    zoo = folder / "zoo.yaml"
    zoo.write_text(zoo.read_text().replace("min_time_s: 0.05", f"min_time_s: {ITEM_S}"))
    pick = ("-k", "test_compile or test_throughput")
    _session(folder, "warm", *pick)
    seconds: dict[str, list[float]] = {"local": [], "ray": []}
    # Alternated, so that a change in the shared host's load between runs falls
    # on both alike; the median of each, so that one disturbed run moves neither.
    for run in range(RUNS):
        for name in seconds:
            report = f"{name}-{run}"
            if name == "ray":
                _on_cluster(1, lambda address: _session(folder, report, *pick,
                                                        "--ray-address", address))
            else:
                _session(folder, report, *pick)
            (record,) = [r for r in _records(folder / report).values()
                         if r["suite"] == "performance"]
            seconds[name].append(record["duration_s"])
    local, ray = (statistics.median(seconds[n]) for n in ("local", "ray"))
    runs = "; ".join(f"{n} " + ", ".join(f"{s:.2f}" for s in v) for n, v in seconds.items())
    print(f"overhead: a {ITEM_S:g}-second item, median of {RUNS} alternated runs: "
          f"{local:.2f} s with its worker here, {ray:.2f} s as a Ray actor: "
          f"{100 * (ray / local - 1):+.1f} % (target <= 5 %) [{runs} s]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("split", "overhead"), help="one of the two figures")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, measure in (("split", split), ("overhead", overhead)):
            if args.only in (None, name):
                measure(Path(tmp))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
