"""How much of onnx's node test cases the GPU backend's ONNX path takes.

Runs every case (xpuperf.conformance.opconformance) through the GPU backend in
this process, as the per-op items do in their worker, and prints the count of
each outcome, the share that passed, and the ops that most often could not be
converted. With --device cpu (the default) it runs here without a GPU.

    python benchmarks/gpu_onnx_coverage.py [--device cuda] [--ops Add,Conv]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one

from backends.gpu import GpuBackend  # noqa: E402
from xpuperf.conformance import opconformance  # noqa: E402

TOP = 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ops", help="comma-separated op types (default: every case)")
    args = parser.parse_args()
    cases = opconformance.collect_cases(set(args.ops.split(",")) if args.ops else None)
    backend, options = GpuBackend(), {"device": args.device}
    outcomes: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx2torch's deprecation warnings, one per case
        for case in cases:
            result = opconformance.run_case(backend, case, "fp32", options)
            outcomes[result.outcome] += 1
            if result.outcome == "conversion":
                # "(CastLike: Converter is not implemented ...; Size: ...)": each op named.
                named = re.findall(r"(?:\(|; )([\w.]+): ", result.reason)
                missed.update(set(named) or {result.op_type})
    seconds = time.perf_counter() - start
    print(f"{len(cases)} cases on device={args.device} in {seconds:.0f} s")
    for outcome in opconformance.OUTCOMES:
        print(f"  {outcome:12s} {outcomes[outcome]:5d}")
    print(f"passed: {outcomes['pass'] / max(len(cases), 1):.1%}")
    print(f"most missed ops (cases): "
          + ", ".join(f"{op} ({n})" for op, n in missed.most_common(TOP)))


if __name__ == "__main__":
    main()
