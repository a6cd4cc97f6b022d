"""What the TVM backend's loop schedule buys: latency per batch with it and without.

Each smoke-tier combination is compiled twice by the TVM backend, with
``schedule=loops`` (the default, backends/tvm/schedule.py) and ``schedule=none``
(tvm.compile's CPU pipeline as is), through the suite's own worker host (export,
data, compile cache), in this process. The two run the same batches in alternation, one call
each per round, and the medians are compared; the largest difference between
their outputs is printed too (the schedule moves only spatial loops, so it
should be 0). Target: faster on every model, by the most on MatMul-heavy ones.

    python benchmarks/tvm_schedule.py [--models minilm-l6-torch-fake-fp32,...] [--rounds N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

from xpuperf.batches import perf_indices  # noqa: E402
from xpuperf.worker.host import GroupHost  # noqa: E402
from xpuperf.zoo import load_zoo  # noqa: E402

DEFAULT_MODELS = ("minilm-l6-torch-fake-fp32,unet-onnx-fake-fp32,vae-decoder-onnx-fake-fp32,"
                  "encoder-layer-s1024-fake-fp32,decoder-layer-s1024-fake-fp32,"
                  "bert-torch-squad-fp32,resnet50-torch-imagenet-fp32,yolov5-onnx-fake-fp32")
SCHEDULES = ("none", "loops")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help="combination ids, comma-separated")
    ap.add_argument("--rounds", type=int, default=9, help="calls per schedule (after one warm-up)")
    ap.add_argument("--cache-dir", default=str(ROOT / ".xpuperf_cache"))
    args = ap.parse_args()
    zoo = load_zoo(ROOT / "zoo.yaml", "smoke")
    combos = {c.id: c for c in zoo.combinations()}
    print(f"{'combination':34s} {'bs':>3s} {'none ms':>9s} {'loops ms':>9s} {'speedup':>8s} "
          f"{'kernels scheduled':>18s} {'max |diff|':>10s}")
    for cid in args.models.split(","):
        if cid not in combos:
            sys.exit(f"{cid}: no such smoke-tier combination; e.g. {next(iter(combos))}")
        combo = combos[cid]
        bs = min(combo.model.batch_sizes)
        hosts = {s: GroupHost(lambda _note: None, "TVM", {"schedule": s}, str(ROOT / "zoo.yaml"),
                              "smoke", args.cache_dir, str(ROOT / "datasets"), combo.model.name,
                              combo.precision) for s in SCHEDULES}
        ds = hosts["none"].dataset
        feeds = ds.feeds(perf_indices(len(ds), bs)[0])
        for host in hosts.values():
            host.compile()
        runs = {s: host.compiled.run for s, host in hosts.items()}
        outputs = {s: run(feeds) for s, run in runs.items()}  # also the warm-up
        seconds: dict[str, list[float]] = {s: [] for s in SCHEDULES}
        for _ in range(args.rounds):  # alternating, so both see the same spells of load
            for s, run in runs.items():
                t = time.perf_counter()
                run(feeds)
                seconds[s].append(time.perf_counter() - t)
        none, loops = (1e3 * statistics.median(seconds[s]) for s in SCHEDULES)
        diff = max(float(np.max(np.abs(np.asarray(outputs["loops"][k], np.float64)
                                       - np.asarray(outputs["none"][k], np.float64))))
                   for k in outputs["none"])
        kernels = hosts["loops"].report.details["kernels_scheduled"]
        print(f"{cid:34s} {bs:3d} {none:9.2f} {loops:9.2f} {none / loops:7.1f}x "
              f"{kernels:>18s} {diff:10.2e}", flush=True)
        for host in hosts.values():
            host.close()


if __name__ == "__main__":
    main()
