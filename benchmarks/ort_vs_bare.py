"""The engine's offline QPS on a real onnxruntime model, against a bare loop and LoadGen.

One InferenceSession (a 2-layer 256x256 MLP built with onnx.helper, batch 8) is
compiled once and shared by three drivers, each run for the same duration,
interleaved round by round (the order rotating), median of the runs:

* xpuperf: ``xpuperf.measure.loadgen.run_offline``;
* bare: a ``while`` loop calling ``sess.run`` until the duration is up;
* mlcommons-loadgen: LoadGen's offline scenario (xpuperf.measure.mlperf_driver).

All three rotate through the same pre-built input batches. Target: xpuperf
>= 0.98x bare.

    python benchmarks/ort_vs_bare.py [--duration S] [--runs N] [--threads T]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# Run as a script from anywhere: the package is the repository's, not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpuperf.measure import loadgen, mlperf_driver

WIDTH = 256
BATCH = 8
INPUT_BATCHES = 64


def mlp(width: int) -> onnx.ModelProto:
    """x[N, width] -> Gemm -> Relu -> Gemm -> y[N, width], seeded weights."""
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) / np.sqrt(width)).astype(np.float32), name)

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
         helper.make_node("Relu", ["h"], ["a"]),
         helper.make_node("Gemm", ["a", "w2", "b2"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        initializer=[weight("w1", width, width), weight("b1", width),
                     weight("w2", width, width), weight("b2", width)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime of the last years reads
    onnx.checker.check_model(model)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=0.5, help="seconds per measured run")
    ap.add_argument("--runs", type=int, default=21,
                    help="rounds; each runs every driver once (many short rounds track a drifting machine)")
    ap.add_argument("--threads", type=int, default=1,
                    help="onnxruntime intra-op threads (1 keeps its pool off a shared machine's other core)")
    args = ap.parse_args()
    mlperf_driver.import_loadgen()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(mlp(WIDTH).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((BATCH, WIDTH)).astype(np.float32)}
             for _ in range(INPUT_BATCHES)]
    run = sess.run

    def issue(query_index: int) -> None:
        run(None, feeds[query_index % INPUT_BATCHES])

    settings = loadgen.RunSettings(min_duration_s=args.duration, min_queries=1, warmup_queries=20)

    def bare() -> float:
        return loadgen.bare_loop_qps(issue, BATCH, args.duration)

    pace: list[float] = []  # LoadGen sizes its offline query from the last rate seen

    def ours() -> float:
        qps = loadgen.run_offline(issue, BATCH, settings).qps
        pace.append(qps)
        return qps

    def mlperf() -> float:
        return mlperf_driver.run_mlperf(issue, loadgen.OFFLINE, BATCH, INPUT_BATCHES, settings,
                                        expected_qps=pace[-1] if pace else None).qps

    drivers: list[tuple[str, Callable[[], float]]] = [
        ("xpuperf", ours), ("bare loop", bare), ("mlcommons-loadgen", mlperf)]
    for k in range(50):  # warm the session before any driver is timed
        issue(k)
    figures: dict[str, list[float]] = {name: [] for name, _ in drivers}
    for r in range(args.runs):
        shift = r % len(drivers)
        for name, measure in drivers[shift:] + drivers[:shift]:
            qps = measure()
            figures[name].append(qps)
            print(f"  run {r + 1}/{args.runs} {name:17s} {qps:12,.0f} samples/s", file=sys.stderr)

    print(f"\nonnxruntime {ort.__version__} MLP {WIDTH}x{WIDTH}x2, batch {BATCH}, "
          f"{args.threads} intra-op thread(s), {args.duration:g} s per run, "
          f"median of {args.runs} runs (interleaved)\n")
    print(f"{'driver':17s} {'median samples/s':>17s} {'min':>12s} {'max':>12s}")
    for name, values in figures.items():
        print(f"{name:17s} {statistics.median(values):17,.0f} {min(values):12,.0f} {max(values):12,.0f}")
    # A shared machine's pace drifts by more than the drivers differ; the three runs
    # of a round are adjacent in time, so their ratio cancels most of the drift.
    # The target is judged on the median of those per-round ratios.
    print(f"\n{'ratio':24s} {'of medians':>10s} {'median per round':>17s}")
    bare_runs = figures["bare loop"]
    for name in ("xpuperf", "mlcommons-loadgen"):
        of_medians = statistics.median(figures[name]) / statistics.median(bare_runs)
        paired = statistics.median(a / b for a, b in zip(figures[name], bare_runs))
        verdict = f"  ({'meets' if paired >= 0.98 else 'MISSES'} target >= 0.98x)" if name == "xpuperf" else ""
        print(f"{name + ' / bare':24s} {of_medians:9.3f}x {paired:16.3f}x{verdict}")


if __name__ == "__main__":
    main()
