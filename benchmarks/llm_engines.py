"""Two or more LLM engines of one backend side by side on one workload: what
continuous batching buys over static batching, measured the same way.

Each round runs every engine in turn (alternated, so a drift of the machine
falls on all of them) on the same requests: offline (all in flight at once:
output tokens/s) and server (Poisson arrivals at fixed rates: TTFT and TPOT
p50/p99, end-to-end p50). Prints the median of the rounds per engine and each
engine's ratio to the first. The rates default to fractions of the first
engine's offline request rate, so they mean the same load on any machine.

    python benchmarks/llm_engines.py llama2-7b --tier smoke --requests 32 --output-tokens 32
    python benchmarks/llm_engines.py llama2-7b --hardware GPU --engines static,continuous \
        --build-on cuda --requests 32
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one


def main() -> int:
    from backends import registry
    from llm_serving import workload, workload_parser  # this folder's: run as a script
    from xpuperf.generation import harness, prompts
    from xpuperf.generation.metrics import Bounds, figures
    from xpuperf.generation.models import LMArtifact

    ap = workload_parser(__doc__)
    ap.add_argument("--engines", default="reference,continuous",
                    help="values of the backend option engine=, comma-separated; the first is the baseline")
    ap.add_argument("--loads", default="0.3,0.6", help="server rates as fractions of the "
                    "first engine's offline request rate, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    spec = workload(ap, args)
    precision = args.precision or spec.precisions[0]
    artifact = LMArtifact(spec.name, spec.builder, spec.config, spec.seed,
                          (args.build_on, precision) if args.build_on else None)
    requests = prompts.requests(spec.requests, spec.prompt_tokens, spec.output_tokens,
                                artifact.vocab_size)
    bounds = Bounds(spec.server.ttft_bound_ms, spec.server.tpot_bound_ms)
    backend = registry.find(args.hardware).load()()
    options = dict(o.split("=", 1) for o in args.backend_option)
    names = args.engines.split(",")
    engines = {name: backend.generation_engine(artifact, precision, {**options, "engine": name})
               for name in names}
    timeout = spec.timeout_s

    def offline(engine):
        return figures(harness.traces(harness.closed_loop(engine, requests, len(requests),
                                                          timeout)), bounds)

    def server(engine, rate, seed):
        return figures(harness.traces(harness.at_times(
            engine, requests, harness.arrivals_ns(len(requests), rate, seed), timeout)),
                       bounds)

    try:
        print(f"{spec.name} {precision} on {args.hardware}: {len(requests)} requests, prompt "
              f"{len(requests[0].prompt)}, output {requests[0].max_new_tokens} tokens; "
              f"median of {args.rounds} rounds")
        for name, engine in engines.items():
            offline(engine)  # warm-up: first calls of a shape are slow
            print(f"  {name}: {engine.description}")
        capacity = offline(engines[names[0]])["requests_per_s"]
        rates = [float(x) * capacity for x in args.loads.split(",")]
        runs: dict[tuple[str, str], list[dict]] = {}
        for r in range(args.rounds):
            for name, engine in engines.items():
                runs.setdefault((name, "offline"), []).append(offline(engine))
                for rate in rates:
                    runs.setdefault((name, f"server {rate:.3g}/s"), []).append(
                        server(engine, rate, seed=r))
    finally:
        for engine in engines.values():
            engine.close()

    def med(fs, key, sub=None):
        return statistics.median(f[key][sub] if sub else f[key] for f in fs)

    columns = (("tokens/s", "output_tokens_per_s", None), ("TTFT p50", "ttft_ms", "p50"),
               ("TTFT p99", "ttft_ms", "p99"), ("TPOT p50", "tpot_ms", "p50"),
               ("TPOT p99", "tpot_ms", "p99"), ("e2e p50", "e2e_ms", "p50"))
    print(f"  {'run':<18}{'engine':<12}" + "".join(f"{c[0]:>12}" for c in columns))
    for scenario in dict.fromkeys(s for _, s in runs):
        base = runs[(names[0], scenario)]
        for name in names:
            fs = runs[(name, scenario)]
            cells = []
            for _, key, sub in columns:
                value = med(fs, key, sub)
                ratio = "" if name == names[0] else f" {value / med(base, key, sub):.2f}x"
                cells.append(f"{value:.4g}{ratio}".rjust(12))
            print(f"  {scenario:<18}{name:<12}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
