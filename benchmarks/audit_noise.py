"""How often the timing audits fail an honest backend, and what they cost.

Runs the caching and alternate-seed audits (xpuperf.measure.audits, one attempt each, as
suites/performance/test_audits.py measures them) many times on the CPU backend
for a few smoke-tier models, and prints per model and audit: the median and
worst point estimate (speedup, change), how often a single attempt failed, and
seconds per attempt. Target: no honest failure at two attempts, i.e. a
single-attempt failure rate well under 10 %, on a busy 2-core machine.

    python benchmarks/audit_noise.py [--models bert-torch-squad-fp32,...] [--repeats N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

from xpuperf.measure import audits  # noqa: E402
from xpuperf.batches import audit_batch_size, perf_indices  # noqa: E402
from xpuperf.worker.host import GroupHost  # noqa: E402
from xpuperf.zoo import load_zoo  # noqa: E402

DEFAULT_MODELS = "bert-torch-squad-fp32,resnet50-torch-imagenet-fp32,widedeep-tf-criteo-fp32"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help="combination ids, comma-separated")
    ap.add_argument("--repeats", type=int, default=10, help="attempts per audit and model")
    ap.add_argument("--cache-dir", default=str(ROOT / ".xpuperf_cache"))
    args = ap.parse_args()
    zoo = load_zoo(ROOT / "zoo.yaml", "smoke")
    assert zoo.audits is not None, "the smoke tier runs no audits"
    rounds, block = zoo.audits["rounds"], zoo.audits["block"]
    combos = {c.id: c for c in zoo.combinations()}
    print(f"smoke tier audits: {rounds} rounds, blocks of {block}; {args.repeats} single attempts\n")
    print(f"{'combination':30s} {'audit':8s} {'median':>8s} {'worst':>8s} {'failed':>7s} "
          f"{'s/attempt':>9s} basis")
    for cid in args.models.split(","):
        combo = combos[cid]
        # The worker's host, in this process: the audits' loops run where they run in a session.
        host = GroupHost(lambda _note: None, "CPU", {}, str(ROOT / "zoo.yaml"), "smoke",
                         args.cache_dir, str(ROOT / "datasets"), combo.model.name, combo.precision)
        host.compile()
        run, ds = host.compiled.run, host.dataset
        bs = audit_batch_size(combo.model.batch_sizes, len(ds))
        batches = [ds.feeds(i) for i in perf_indices(len(ds), bs)]
        per_attempt = (rounds + 1) * block
        distinct = audits.distinct_index_batches(len(ds), bs, args.repeats * per_attempt, 1,
                                                 (0,) * bs)
        repeated = ds.feeds([0] * bs)
        results: dict[str, list[tuple[audits.Verdict, float]]] = {"caching": [], "seed": []}
        for r in range(args.repeats):
            # Interleaved, so both audits see the same spells of load.
            if distinct is not None:
                mine = [ds.feeds(list(i)) for i in distinct[r * per_attempt:(r + 1) * per_attempt]]
                t0 = time.perf_counter()
                t = audits.alternating_blocks(run, {
                    "repeated": lambda k, same=repeated: [same] * block,
                    "distinct": lambda k, mine=mine: mine[(k + 1) * block:(k + 2) * block],
                }, rounds)
                results["caching"].append((audits.caching_verdict(t["repeated"], t["distinct"]),
                                           time.perf_counter() - t0))
            if len(batches) > 1:
                alternate = audits.alternate_order(len(batches), rounds + 1, 1 + r)
                t0 = time.perf_counter()
                t = audits.alternating_blocks(run, {
                    "default": lambda k, b=batches: b,
                    "alternate": lambda k, b=batches, o=alternate: [b[i] for i in o[k + 1]],
                }, rounds)
                results["seed"].append((audits.seed_verdict(t["default"], t["alternate"]),
                                        time.perf_counter() - t0))
        for name, got in results.items():
            if not got:
                continue
            key = "speedup" if name == "caching" else "change"
            values = [100 * v.figures[key] for v, _ in got]
            print(f"{cid:30s} {name:8s} {statistics.median(values):+7.1f}% "
                  f"{max(values, key=abs):+7.1f}% {sum(not v.passed for v, _ in got):3d}/{len(got):<3d} "
                  f"{statistics.median(s for _, s in got):9.2f} {got[0][0].figures['basis']}")
        host.close()


if __name__ == "__main__":
    main()
