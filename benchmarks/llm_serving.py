"""LLM serving figures of one zoo workload on one backend, printed (issue 23's
llama2-7b targets, judged: benchmarks/gpu_targets.py --only llama2_7b).

Runs what suites/llm runs, through the same session (xpuperf.generation.serving),
and prints per scenario TTFT and TPOT percentiles, tokens/s, goodput, prefill MFU
and decode bandwidth utilization, the energy per output token where the
device has a counter, with the weight-read floor of TPOT (weights
bytes over the memory bandwidth) beside the measured TPOT, and which engine served.

--build-on cuda builds the model seeded directly on the GPU in the precision
(llama2-7b: seconds, 13.5 GB) instead of fp32 on the CPU and a copy (minutes,
54 GB); the benchmark needs no fp32 reference.

    python benchmarks/llm_serving.py llama2-7b --precision fp16 --scenario single_stream
    python benchmarks/llm_serving.py gpt2 --tier smoke --scenario offline --concurrency 4
    python benchmarks/llm_serving.py llama2-7b --hardware GPU --build-on cuda --prompt-tokens 512 --concurrency 32
    python benchmarks/llm_serving.py llama2-7b --hardware GPU --build-on cuda --scenario single_stream
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one


def workload_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of every LLM benchmark: the workload and where it runs, the
    lengths (default: the workload's), the backend options, where to build."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", help="a workload of zoo.yaml's generation: section")
    ap.add_argument("--tier", default="full", choices=("smoke", "full"))
    ap.add_argument("--hardware", default="CPU")
    ap.add_argument("--precision", default=None, help="default: the workload's first")
    ap.add_argument("--prompt-tokens", type=int)
    ap.add_argument("--output-tokens", type=int)
    ap.add_argument("--requests", type=int)
    ap.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--build-on", metavar="DEVICE",
                    help="build the model on this torch device in the precision (e.g. cuda); "
                         "default: fp32 on the CPU, then the engine's copy")
    ap.add_argument("--zoo", default=str(ROOT / "zoo.yaml"))
    return ap


def workload(ap: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The GenerationSpec ``args`` name, with their lengths and request count."""
    from xpuperf.zoo import load_zoo

    specs = {w.name: w for w in load_zoo(args.zoo, args.tier).generation}
    if args.workload not in specs:
        ap.error(f"no workload {args.workload!r} in {args.zoo} (known: {', '.join(specs)})")
    return dataclasses.replace(specs[args.workload], **{
        k: v for k, v in (("prompt_tokens", args.prompt_tokens),
                          ("output_tokens", args.output_tokens),
                          ("requests", args.requests)) if v is not None})


def main() -> int:
    from backends import registry
    from xpuperf.generation.serving import LLMSession, describe

    ap = workload_parser(__doc__)
    ap.add_argument("--scenario", action="append", choices=("offline", "single_stream", "server"),
                    help="repeatable; default: the workload's scenarios")
    ap.add_argument("--concurrency", type=int, action="append", help="offline; repeatable")
    ap.add_argument("--search-s", type=float, help="server: the rate search's time budget")
    args = ap.parse_args()
    spec = workload(ap, args)
    overrides = {}
    if args.concurrency:
        overrides["concurrency"] = tuple(args.concurrency)
    if args.search_s is not None:
        overrides["server"] = dataclasses.replace(spec.server, search_s=args.search_s)
    spec = dataclasses.replace(spec, **overrides)
    precision = args.precision or spec.precisions[0]
    options = dict(o.split("=", 1) for o in args.backend_option)
    build_on = (args.build_on, precision) if args.build_on else None
    llm = LLMSession(registry.find(args.hardware).load()(), options, build_on)
    try:
        print(f"{spec.name} {precision} on {args.hardware}: prompt {spec.prompt_tokens}, "
              f"output {spec.output_tokens} tokens, {spec.requests} requests a run")
        print(f"  engine: {describe(llm.engine(spec, precision))}")
        for scenario in args.scenario or spec.scenarios:
            for c in spec.concurrency if scenario == "offline" else (None,):
                fields, problems = llm.run_scenario(spec, precision, scenario, c)
                _print(scenario, fields, problems)
    finally:
        llm.close()
    return 0


def _print(scenario: str, f: dict, problems: list[str]) -> None:
    from xpuperf.generation.metrics import tpot_floor_ms

    pct = lambda key: "-" if f.get(key) is None else f"{100 * f[key]:.1f} %"  # noqa: E731
    ttft, tpot = f["ttft_ms"], f["tpot_ms"] or {}
    label = f"{scenario} c{f['concurrency']}" if f.get("concurrency") else scenario
    print(f"  {label:<16} TTFT p50/p90/p99 {ttft['p50']:.2f}/{ttft['p90']:.2f}/{ttft['p99']:.2f} ms  "
          f"TPOT {tpot.get('p50', 0):.2f}/{tpot.get('p90', 0):.2f}/{tpot.get('p99', 0):.2f} ms  "
          f"{f['output_tokens_per_s']:.1f} tokens/s  {f['requests_per_s']:.2f} requests/s  "
          f"goodput {pct('goodput')}  prefill MFU {pct('prefill_mfu')}  "
          f"decode BW {pct('decode_bandwidth_utilization')}")
    if f.get("memory_bandwidth"):
        floor_ms = tpot_floor_ms(f["weight_bytes"], f["memory_bandwidth"])
        print(f"  {'':<16} TPOT floor (weights {f['weight_bytes'] / 1e9:.3g} GB once at "
              f"{f['memory_bandwidth'] / 1e9:.3g} GB/s, {f['memory_bandwidth_source']}): "
              f"{floor_ms:.3f} ms")
    if scenario == "server":
        print(f"  {'':<16} at {f['target_rate']:.3g} requests/s ({f['rate_source']}): "
              f"{'valid' if f['valid'] else 'INVALID'}; highest valid rate found "
              f"{f['max_valid_rate'] or 0:.3g} requests/s in {len(f['search'])} trials")
    used = f.get("energy") or {}
    print(f"  {'':<16} energy: " + (
        f"{used['avg_watts']:.1f} W, {used['j_per_output_token'] * 1e3:.3g} mJ per output "
        f"token ({used['method']})" if "avg_watts" in used
        else f"unavailable: {used.get('unavailable', 'not recorded')}"))
    for p in problems:
        print(f"  {'':<16} FAIL: {p}")


if __name__ == "__main__":
    sys.exit(main())
