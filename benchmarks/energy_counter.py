"""A backend's energy counter (Backend.energy_meter), read as the timed windows
read it: how often it advances (its update period, which bounds how short a
window can be and still get a figure), and the watts it gives idle and under
a matmul load on the backend's device.

    python benchmarks/energy_counter.py --hardware GPU
    python benchmarks/energy_counter.py --hardware CPU --seconds 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one


def main() -> int:
    from backends import registry
    from xpuperf.measure import energy

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hardware", default="GPU")
    ap.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seconds", type=float, default=1.0, help="each phase's length")
    args = ap.parse_args()
    options = dict(o.split("=", 1) for o in args.backend_option)
    backend = registry.find(args.hardware).load()()
    meter = energy.Meter.open(backend, options)
    if meter.meter is None:
        print(f"{args.hardware}: energy unavailable: {meter.why}")
        return 0
    print(f"{args.hardware}: {meter.meter.method}")
    try:
        print(f"  update period: {_update_period_ms(meter.meter, args.seconds)}")
        for phase, load in (("idle", None), ("matmul load", _matmul(options))):
            window = meter.window()
            window.start()
            deadline = time.perf_counter() + args.seconds
            while time.perf_counter() < deadline:
                if load is not None:
                    load()
                else:
                    time.sleep(0.01)
            used = window.stop()
            print(f"  {phase:<12} " + (f"{used['avg_watts']:.1f} W over {used['seconds']:.2f} s "
                                       f"({used['joules']:.2f} J)" if "avg_watts" in used
                                       else f"unavailable: {used['unavailable']}"))
    finally:
        meter.close()
    return 0


def _update_period_ms(meter, seconds: float) -> str:
    """The median time between changes of the counters' sum, polled every 1 ms."""
    changes, last = [], sum(meter.read())
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        now = sum(meter.read())
        if now != last:
            changes.append(time.perf_counter())
            last = now
        time.sleep(0.001)
    if len(changes) < 2:
        return f"fewer than 2 changes in {seconds:g} s"
    gaps = [(b - a) * 1e3 for a, b in zip(changes, changes[1:])]
    return f"{statistics.median(gaps):.1f} ms median ({len(changes)} changes in {seconds:g} s)"


def _matmul(options):
    """One bf16 matmul (4096^2 on CUDA, 512^2 on the CPU) on the backend's device
    (device=..., default cuda where there is one), synchronized."""
    import torch

    name = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    n = 4096 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)

    def load() -> None:
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return load


if __name__ == "__main__":
    sys.exit(main())
