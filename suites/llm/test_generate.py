"""LLM serving: each workload's scenarios and its accuracy gates against the fp32
reference (zoo.yaml `generation:`; figures: xpuperf.generation.metrics)."""
from __future__ import annotations

from xpuperf.measure.timing import shared_host
from xpuperf.worker.devices import xdist_workers


def test_generate(llm, gen_case, engine_ready, record_llm):
    """One scenario: offline at a concurrency, single_stream, or server (valid
    only within the TTFT and TPOT p99 bounds), with the highest valid rate."""
    fields, problems = llm.run_scenario(gen_case.spec, gen_case.precision, gen_case.scenario,
                                        gen_case.concurrency)
    record_llm(**fields)
    assert not problems, "; ".join(problems) + (
        shared_host(xdist_workers()) if gen_case.scenario == "server" else "")


def test_generation_accuracy(llm, gen_combo, engine_ready, record_llm):
    """First-token logits, greedy tokens and perplexity against the fp32 reference."""
    fields, problems = llm.check_accuracy(gen_combo.spec, gen_combo.precision)
    record_llm(**fields)
    assert not problems, "; ".join(problems)
