"""The SLA sweep's figures against a server with no model
(xpuperf.generation.instant_server, in a process of its own, each token ITL
after the last): the sweep of xpuperf.generation.serving run --repeats times,
each point's median output tokens/s beside the pace the server allows
(concurrency / ITL tokens a second, or rate x output tokens), its TTFT, TPOT
and ITL p50 and whether it met the SLOs, and the sweep's seconds.

    python benchmarks/llm_sweep.py                              # concurrency 1,2,4, ITL 2 ms
    python benchmarks/llm_sweep.py --sweep concurrency=auto --slo tpot_ms=2.5
    python benchmarks/llm_sweep.py --sweep rate=50,100,200 --devices 8
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one


class _Tokenizer:
    """No model: the instant server counts tokens itself (usage) and ignores prompts."""

    def load(self) -> None:
        pass

    def prompt(self, i: int, tokens: int) -> str:
        return f"prompt {i}"


def _workload(output_tokens: int, requests: int) -> dict:
    """A workload whose model is never built (the server's is measured)."""
    return {"generation": {"workloads": {"instant": {
        "family": "gpt2", "builder": "gpt2", "precisions": ["fp32"],
        "config": {"vocab_size": 300, "n_positions": 64, "n_embd": 16, "n_layer": 1, "n_head": 2},
        "prompt_tokens": 8, "output_tokens": output_tokens, "requests": requests,
        "concurrency": [1], "scenarios": ["offline"], "server": {"search_s": 60, "max_trials": 8},
        "tolerances": {"fp32": {}}}}}, "models": {}, "datasets": {}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", default="concurrency=1,2,4", help="as --llm-sweep")
    ap.add_argument("--itl-ms", type=float, default=2.0, help="the server's gap between tokens")
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--requests", type=int, default=16, help="per point (a concurrency: at "
                                                              "least 2 a slot)")
    ap.add_argument("--slo", default="tpot_ms=1000", help="as --llm-slo")
    ap.add_argument("--devices", type=int, default=1, help="as --llm-devices")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from xpuperf.generation import instant_server, settings, sweep
    from xpuperf.generation.openai_client import Endpoint
    from xpuperf.generation.serving import LLMSession
    from xpuperf.zoo import parse_zoo

    plan = sweep.parse(args.sweep)
    spec = parse_zoo(yaml.safe_dump(_workload(args.output_tokens, args.requests)),
                     "full").generation[0]
    runs, seconds = [], []
    with instant_server.in_a_process(args.itl_ms) as url:
        for _ in range(args.repeats):
            llm = LLMSession(None, {}, settings=settings.Settings(
                Endpoint(url, "ok"), slo=settings.parse_slo(args.slo),
                sweep=plan, devices=args.devices), tokenizer=_Tokenizer())
            try:
                llm.engine(spec, settings.ENDPOINT_PRECISION)  # warmed up, as an item's is
                start = time.perf_counter()
                fields, _ = llm.run_sweep(spec, settings.ENDPOINT_PRECISION)
                seconds.append(time.perf_counter() - start)
            finally:
                llm.close()
            runs.append(fields["sweep"])
    v = plan.variable
    print(f"sweep {plan} against the instant server (ITL {args.itl_ms:g} ms, {args.output_tokens} "
          f"tokens a request, {args.devices} device(s), SLO {args.slo}), {args.repeats} runs, "
          f"medians; sweep {statistics.median(seconds):.2f} s")
    print(f"{v:>11}  {'tokens/s':>9}  {'pace':>7}  {'ratio':>5}  {'/device':>8}  {'/user':>6}  "
          f"{'TTFT p50':>8}  {'TPOT p50':>8}  {'ITL p50':>7}  SLOs met")
    loads = sorted({p[v] for run in runs for p in run["points"]})
    for load in loads:
        at = [p for run in runs for p in run["points"] if p[v] == load]
        med = lambda key, sub=None: statistics.median(  # noqa: E731
            (p[key][sub] if sub else p[key]) for p in at)
        tokens = med("output_tokens_per_s")
        pace = load * 1e3 / args.itl_ms if plan.integer else load * args.output_tokens
        print(f"{load:>11.4g}  {tokens:>9.1f}  {pace:>7.0f}  {tokens / pace:>5.2f}  "
              f"{med('output_tokens_per_s_per_device'):>8.1f}  {med('tokens_per_s_per_user'):>6.0f}  "
              f"{med('ttft_ms', 'p50'):>8.2f}  {med('tpot_ms', 'p50'):>8.2f}  "
              f"{med('itl_ms', 'p50'):>7.2f}  {sum(p['passed'] for p in at)}/{len(at)}")
    print("verdicts (highest met, lowest missed): "
          + "; ".join(f"{r['max_passing']}, {r['min_failing']}" for r in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
