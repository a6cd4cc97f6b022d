"""LLM serving: the metric math on hand-made timestamps, the server search, the
accuracy gates, the zoo's generation schema, and real engines that must fail: one
too slow for the server's bounds, one whose tokens diverge from the reference."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from backends.base import Backend
from backends.generation import Request, TokenSink
from backends.torch_generation import TorchEngine
from xpuperf.generation import accuracy
from xpuperf.generation import harness
from xpuperf.generation.harness import search_rate
from xpuperf.generation.metrics import Bounds, Trace, figures
from xpuperf.generation.serving import LLMSession
from xpuperf.zoo import ZooError, parse_zoo
from tests_selftest.fakes import METER_WATTS, ConstantPower

MS = 1_000_000  # ns

ZOO = """\
datasets:
  fake: {id: fake, format: fake}
models: {}
generation:
  defaults:
    tolerances: {fp32: {min_cosine: 0.9999, min_greedy_match: 1.0, max_perplexity_ratio: 1.001}}
  workloads:
    tiny:
      family: gpt2
      builder: gpt2
      config: {vocab_size: 300, n_positions: 64, n_embd: 16, n_layer: 1, n_head: 2}
      precisions: [fp32]
      prompt_tokens: 8
      output_tokens: 4
      requests: 4
      concurrency: [1, 2]
      scenarios: [offline, single_stream, server]
      server: {ttft_bound_ms: 2000, tpot_bound_ms: 60, search_s: 0.1, max_trials: 1}
      accuracy: {greedy_tokens: 6, text_tokens: 32}
      smoke: {requests: 2}
"""


# --------------------------------------------------------------------------- metrics

def test_request_figures_from_hand_made_timestamps():
    t = Trace(submitted_ns=0, token_ns=(100 * MS, 110 * MS, 130 * MS, 160 * MS))
    assert t.ttft_ns == 100 * MS
    assert t.tpot_ns == 20 * MS  # (160 - 100) / (4 - 1)
    assert t.e2e_ns == 160 * MS
    assert Trace(0, (5 * MS,)).tpot_ns is None  # one token: no decode


def test_run_figures_percentiles_throughput_and_goodput():
    fast = Trace(0, (100 * MS, 110 * MS, 120 * MS))  # ttft 100, tpot 10
    slow = Trace(50 * MS, (450 * MS, 550 * MS, 650 * MS))  # ttft 400, tpot 100
    fig = figures([fast, slow], Bounds(ttft_ms=300, tpot_ms=50))
    assert fig["generated_tokens"] == 6
    assert fig["wall_s"] == pytest.approx(0.65)  # first submission to last token
    assert fig["output_tokens_per_s"] == pytest.approx(6 / 0.65)
    assert fig["requests_per_s"] == pytest.approx(2 / 0.65)
    assert fig["ttft_ms"]["p50"] == pytest.approx(250)
    assert fig["ttft_ms"]["p99"] == pytest.approx(100 + 0.99 * 300)
    assert fig["tpot_ms"]["p50"] == pytest.approx(55)
    assert fig["itl_ms"]["p50"] == pytest.approx(55)  # gaps 10, 10, 100, 100
    assert fig["e2e_ms"]["p90"] == pytest.approx(120 + 0.9 * 480)
    assert fig["goodput"] == 0.5 and fig["valid"] is False
    assert figures([fast], Bounds(300, 50))["valid"] is True


def test_search_finds_the_highest_valid_rate_within_its_trials():
    def run_at(rate):
        ok = rate <= 10
        return {"valid": ok, "ttft_ms": {"p99": rate}, "tpot_ms": {"p99": 1.0},
                "output_tokens_per_s": rate}
    best, trials = search_rate(run_at, start=4, budget_s=60, max_trials=8)
    assert [t["rate"] for t in trials[:3]] == [4, 8, 16]  # doubles until invalid
    assert 8 <= best <= 10 and all(t["valid"] == (t["rate"] <= 10) for t in trials)
    assert len(trials) == 8
    best, trials = search_rate(lambda r: {**run_at(r), "valid": False}, 4, 60, 3)
    assert best is None and [t["rate"] for t in trials] == [4, 2, 1]


def test_search_stops_at_its_time_budget():
    now = iter(range(100))
    _, trials = search_rate(lambda r: {"valid": True, "ttft_ms": {"p99": 1}, "tpot_ms": None,
                                       "output_tokens_per_s": 1.0},
                            1.0, budget_s=2, max_trials=50, clock=lambda: next(now))
    assert len(trials) == 2


# --------------------------------------------------------------------------- accuracy

def test_accuracy_figures():
    assert accuracy.greedy_match([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5  # nothing after a divergence
    uniform = np.zeros((5, 10))
    assert accuracy.perplexity(uniform, [0, 1, 2, 3, 4]) == pytest.approx(10)
    agree = accuracy.logits_agreement(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    assert agree["max_abs"] == pytest.approx(0.5) and 0.99 < agree["cosine"] < 1
    found = {"cosine": 0.98, "max_abs": 0.5, "greedy_match": 0.5, "perplexity_ratio": 1.2}
    problems = accuracy.verdict(found, {"min_cosine": 0.99, "min_greedy_match": 0.5})
    assert problems == ["first-token logits cosine 0.98, needs >= 0.99"]
    assert accuracy.verdict({**found, "cosine": float("nan")}, {"min_cosine": 0.5})


# --------------------------------------------------------------------------- schema

def test_generation_workloads_load_with_smoke_override():
    full, smoke = parse_zoo(ZOO, "full").generation[0], parse_zoo(ZOO, "smoke").generation[0]
    assert (full.requests, smoke.requests) == (4, 2)
    assert full.case_id("fp32", "server") == "tiny-fp32-in8-out4-server"
    assert full.case_id("fp32", "offline", 2) == "tiny-fp32-in8-out4-c2-offline"
    assert full.server.ttft_bound_ms == 2000 and full.server.load == 0.5  # default load


@pytest.mark.parametrize("old, new, expected", [
    ("      requests: 4\n", "      requests: 4\n      reqests: 4\n", ":16: generation.workloads.tiny.reqests: unknown field"),
    ("precisions: [fp32]", "precisions: [fp16]", "no tolerance for precision 'fp16'"),
    ("scenarios: [offline, single_stream, server]", "scenarios: [offline, multi_stream]",
     "unknown scenario 'multi_stream'"),
    ("builder: gpt2", "builder: gpt3", "unknown generation builder 'gpt3'"),
    ("concurrency: [1, 2]", "concurrency: [0]", "concurrency[0]: must be an integer >= 1"),
    ("      family: gpt2\n", "      model: nothing\n      family: gpt2\n", "comes from model"),
    ("      requests: 4\n", "      requests: 4\n      prefill_chunk: 8\n",
     ":16: generation.workloads.tiny.prefill_chunk: must be >= 1 and below prompt_tokens "
     r"\(8\), got 8: drop it"),
    ("      requests: 4\n", "      requests: 4\n      shared_prefix_tokens: 0\n",
     "tiny.shared_prefix_tokens: must be >= 1 and below prompt_tokens"),
    ("      requests: 4\n", "      requests: 4\n      endpoint_accuracy: {min_score: 1.5}\n",
     ":16: generation.workloads.tiny.endpoint_accuracy.min_score: is a share of the problems "
     r"in \(0, 1], got 1.5"),
    ("      requests: 4\n", "      requests: 4\n      endpoint_accuracy: {min_score: 0.5, "
     "method: bleu}\n", "endpoint_accuracy.method: unknown method 'bleu'"),
    ("      requests: 4\n", "      requests: 4\n      endpoint_accuracy: {min_score: 0.5, "
     "problems: 41}\n", r"endpoint_accuracy.problems: must be 1 to 40 \(the shipped set\), got 41"),
    ("      requests: 4\n", "      requests: 4\n      endpoint_accuracy: {method: reference}\n",
     "endpoint_accuracy: missing required field 'min_score'"),
    ("      requests: 4\n", "      requests: 4\n      tensor_parallel: 2\n",
     ":16: generation.workloads.tiny.tensor_parallel: tensor parallelism splits the builders "
     "llama, qwen3, not 'gpt2'"),
    ("      requests: 4\n", "      requests: 4\n      tensor_parallel: 0\n",
     "tensor_parallel: must be >= 1 ranks, got 0"),
    ("      requests: 4\n", "      requests: 4\n      tiers: [ful]\n", "tiers[0]: unknown tier 'ful'"),
    ("      requests: 4\n", "      requests: 4\n      turns: 0\n",
     r":16: generation.workloads.tiny.turns: must be >= 1 \(1: one request a conversation\), got 0"),
])
def test_generation_schema_errors_name_line_and_field(old, new, expected):
    assert old in ZOO
    with pytest.raises(ZooError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        parse_zoo(ZOO.replace(old, new), "full")


MLPERF = """\
  mlperf_bounds:
    llama2-70b-interactive: {ttft_ms: 450, tpot_ms: 40}
  workloads:
"""


@pytest.mark.parametrize("server, expected", [
    ("{mlperf: llama2-70b-interactive, search_s: 0.1}",
     (450, 40, "MLPerf's llama2-70b-interactive (zoo.yaml generation.mlperf_bounds)")),
    ("{ttft_bound_ms: 2000, tpot_bound_ms: 60}", (2000, 60, "zoo.yaml")),
    ("{mlperf: llama2-70b}",
     ":20: generation.workloads.tiny.server.mlperf: unknown model of generation.mlperf_bounds "
     "'llama2-70b' (known: llama2-70b-interactive)"),
    ("{mlperf: llama2-70b-interactive, tpot_bound_ms: 60}",
     "server.tpot_bound_ms: comes from mlperf 'llama2-70b-interactive'; give one of the two"),
])
def test_a_workloads_server_takes_mlperfs_bounds_by_name(server, expected):
    old = "      server: {ttft_bound_ms: 2000, tpot_bound_ms: 60, search_s: 0.1, max_trials: 1}\n"
    zoo = ZOO.replace("  workloads:\n", MLPERF).replace(old, f"      server: {server}\n")
    if isinstance(expected, str):
        with pytest.raises(ZooError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            parse_zoo(zoo, "full")
        return
    s = parse_zoo(zoo, "full").generation[0].server
    assert (s.ttft_bound_ms, s.tpot_bound_ms, s.bounds_source) == expected


def test_mlperf_bounds_are_checked():
    with pytest.raises(ZooError, match=":8: generation.mlperf_bounds.x: missing required"):
        parse_zoo(ZOO.replace("  workloads:\n", "  mlperf_bounds:\n    x: {ttft_ms: 5}\n"
                                                 "  workloads:\n"), "full")


def test_the_shipped_zoo_has_the_llm_workloads():
    from pathlib import Path
    zoo = parse_zoo((Path(__file__).resolve().parents[1] / "zoo.yaml").read_text(), "full")
    names = {w.name: w for w in zoo.generation}
    assert {"gpt2", "llama2-7b", "chatglm2-6b"} <= names.keys()
    assert {"qwen3", "qwen3_moe"} <= {w.builder for w in names.values()}
    assert names["llama2-7b"].case_id("fp16", "server") == "llama2-7b-fp16-in1024-out128-server"
    # Every workload has its gate against a server; the long-context ones are long in full only.
    assert all(w.endpoint_accuracy for w in names.values())
    smoke = {w.name: w for w in parse_zoo((Path(__file__).resolve().parents[1] / "zoo.yaml")
                                          .read_text(), "smoke").generation}
    for name, tokens in (("qwen3-8b-long8k", (8192, 1024)), ("qwen3-8b-long32k", (32768, 128))):
        assert (names[name].prompt_tokens, names[name].output_tokens) == tokens
        assert smoke[name].prompt_tokens <= 256 and smoke[name].config["vocab_size"] == 512
    assert names["llama2-7b-tp2"].tensor_parallel == 2
    assert "llama2-7b-tp2" not in smoke
    assert (names["llama2-7b-multi-turn"].turns, smoke["llama2-7b-multi-turn"].turns) == (4, 3)


LLAMA = ZOO.replace("""      family: gpt2
      builder: gpt2
      config: {vocab_size: 300, n_positions: 64, n_embd: 16, n_layer: 1, n_head: 2}""", """\
      family: llama
      builder: llama
      config: {vocab_size: 300, hidden_size: 16, intermediate_size: 30, num_hidden_layers: 1,
               num_attention_heads: 4, num_key_value_heads: 2}
      tensor_parallel: 4""")


def test_tensor_parallel_must_divide_the_heads_and_the_mlp():
    with pytest.raises(ZooError, match=r":13: generation.workloads.tiny.tensor_parallel: "
                       r"num_key_value_heads=2, intermediate_size=30 not divisible by 4 ranks"):
        parse_zoo(LLAMA, "full")
    assert parse_zoo(LLAMA.replace("tensor_parallel: 4", "tensor_parallel: 2").replace(
        "intermediate_size: 30", "intermediate_size: 32"), "full").generation[0].tensor_parallel == 2


# --------------------------------------------------------------------------- engines that fail

class _Relay(TokenSink):
    """Hands tokens on, optionally after a delay (a slow engine) or altered from
    the third on (an engine that diverges)."""

    def __init__(self, sink: TokenSink, delay_s: float, diverge: bool):
        self.sink, self.delay_s, self.diverge, self.count = sink, delay_s, diverge, 0

    def token(self, token_id: int) -> None:
        time.sleep(self.delay_s)
        self.count += 1
        self.sink.token(token_id + 1 if self.diverge and self.count > 2 else token_id)

    def text(self, piece: str, at_ns: int) -> None:
        self.sink.text(piece, at_ns)

    def finish(self, error=None, tokens=None) -> None:
        self.sink.finish(error, tokens)


class _Engine(TorchEngine):
    delay_s, diverge = 0.0, False

    def submit(self, request, sink):
        super().submit(request, _Relay(sink, self.delay_s, self.diverge))


class _Backend(Backend):
    name = "TEST"

    def __init__(self, **behaviour):
        self.engine_class = type("Engine", (_Engine,), behaviour)

    def precisions(self):
        return {"fp32"}

    def compile(self, *args, **kwargs):
        raise NotImplementedError

    def generation_engine(self, artifact, precision, options):
        return self.engine_class(artifact, precision, options)


@pytest.fixture(scope="module")
def tiny():
    return parse_zoo(ZOO, "full").generation[0]


def _session(**behaviour) -> LLMSession:
    return LLMSession(_Backend(**behaviour), {})


def test_the_reference_engine_passes_the_server_bounds_and_the_accuracy_gate(tiny):
    # Bounds with room for a stall of this shared 2-core machine (the slow engine
    # below is judged against 60 ms).
    roomy = replace(tiny, server=replace(tiny.server, tpot_bound_ms=1000))
    llm = _session()
    try:
        fields, problems = llm.run_scenario(roomy, "fp32", "server", None)
        assert problems == [] and fields["valid"] and fields["max_valid_rate"] is not None
        # A backend without an energy counter says so in the record.
        assert fields["energy"] == {"unavailable": "the TEST backend reads no energy counter "
                                                   "(implement Backend.energy_meter)"}
        fields, problems = llm.check_accuracy(tiny, "fp32")
        assert problems == [] and fields["greedy_match"] == 1.0
        assert fields["engine"].startswith("torch reference engine")  # the record says who served
    finally:
        llm.close()


class _MeteredBackend(_Backend):
    def energy_meter(self, options):
        return ConstantPower()


def test_a_scenario_records_its_energy_per_output_token_and_request(tiny):
    llm = LLMSession(_MeteredBackend(), {})
    try:
        fields, problems = llm.run_scenario(tiny, "fp32", "offline", 2)
    finally:
        llm.close()
    used = fields["energy"]
    assert problems == [] and fields["generated_tokens"] == 4 * 4
    assert used["avg_watts"] == pytest.approx(METER_WATTS, rel=1e-2)
    assert used["j_per_output_token"] == pytest.approx(used["joules"] / 16)
    assert used["j_per_request"] == pytest.approx(used["joules"] / 4)
    # The window is the run: it starts before the first submit, ends after the last token.
    assert fields["wall_s"] <= used["seconds"] < fields["wall_s"] + 0.5


def test_a_shared_prefix_starts_every_prompt_and_each_request_has_its_own_rest(tiny):
    shared, plain = (LLMSession(None, {})._requests(spec, 3) for spec in
                     (replace(tiny, shared_prefix_tokens=5), tiny))
    assert [len(r.prompt) for r in shared + plain] == [8] * 6
    assert len({r.prompt[:5] for r in shared}) == 1 and len({r.prompt[5:] for r in shared}) == 3
    assert len({r.prompt[:5] for r in plain}) == 3


def test_a_conversations_later_turns_hold_its_history_and_answers(tiny):
    spec = replace(tiny, turns=3)
    llm = _session()
    try:
        sinks = llm._closed(spec, llm.engine(spec, "fp32"), 3, 2)()
        fields, problems = llm.run_scenario(spec, "fp32", "offline", 2)
    finally:
        llm.close()
    requests = sinks[0].run.requests
    assert len(sinks) == 3 * 3
    for before, sink in zip(sinks, sinks[1:]):
        if sink.index % 3 == 0:  # a conversation's first turn
            continue
        # The turn before's prompt, its answer, then a new message of 8 tokens.
        prompt, earlier = requests[sink.index].prompt, requests[before.index].prompt
        assert prompt[:len(earlier) + 4] == earlier + tuple(before.tokens)
        assert len(prompt) == len(earlier) + 4 + 8
        assert sink.submitted_ns >= before.token_ns[-1]  # sent once the answer was there
    assert problems == [] and fields["turns"] == 3
    assert fields["requests"] == 4 * 3 and fields["generated_tokens"] == 4 * 3 * 4
    assert len(fields["ttft_ms_by_turn"]) == 3 and all(t["p50"] > 0 for t in fields["ttft_ms_by_turn"])


def test_a_failed_turn_ends_its_conversation_and_the_run_says_so():
    class Engine:  # answers one token; fails a prompt longer than two tokens
        def submit(self, request, sink):
            if len(request.prompt) > 2:
                sink.finish(RuntimeError("context too long"))
                return
            sink.token(7)
            sink.finish()

    def follow(request, sink, conversation, turn):
        return Request(request.prompt + tuple(sink.tokens) + (conversation,), 1)

    with pytest.raises(harness.EngineError, match=r"^request 1: RuntimeError: context too long "
                       r"\(its conversation's 1 later turn\(s\) not sent\); request 4: "):
        harness.closed_loop(Engine(), [Request((c,), 1) for c in range(2)], 2, 5,
                            harness.Conversations(3, follow))


def test_a_slow_engine_fails_the_server_bounds(tiny):
    llm = _session(delay_s=0.12)  # TPOT ~120 ms against a 60 ms bound
    measured, capacity = [], llm._offline_capacity

    def spy(*args, again=False):  # the run again's rate: the offline rate measured again now
        measured.append(again)
        return capacity(*args, again=again)
    llm._offline_capacity = spy
    try:
        fields, problems = llm.run_scenario(tiny, "fp32", "server", None)
    finally:
        llm.close()
    assert measured == [False, True]
    assert fields["valid"] is False and fields["runs"] == 2 and fields["tpot_ms"]["p99"] > 60
    assert len(problems) == 1 and "TPOT p99" in problems[0] and "> 60 ms" in problems[0]


def test_an_engine_whose_tokens_diverge_fails_the_accuracy_gate(tiny):
    llm = _session(diverge=True)
    try:
        fields, problems = llm.check_accuracy(tiny, "fp32")
    finally:
        llm.close()
    assert fields["greedy_match"] == pytest.approx(2 / 6)
    assert problems == ["greedy tokens matched before divergence 0.333333, needs >= 1"]


# --------------------------------------------------------------------------- reports

def test_generation_records_reach_the_report_and_result_json(tmp_path):
    from xpuperf.report import TEMPLATES, write_reports
    identity = {"suite": "generation", "combination": "tiny-fp32", "model": "tiny",
                "dataset": "prompts", "precision": "fp32", "hardware": "CPU",
                "framework": "torch", "domain": "llm", "family": "gpt2"}
    ms = lambda v: {"p50": v, "p90": v, "p99": v, "mean": v}  # noqa: E731
    records = [
        {**identity, "scenario": "offline", "concurrency": c, "ttft_ms": ms(5.0),
         "tpot_ms": ms(1.0), "output_tokens_per_s": 100.0 * c, "outcome": "passed", "message": "",
         # against a server (c4's): its TTFT counts from the sending, its client's queue before
         "client_delay_ms": ms(12.5) if c == 4 else None}
        for c in (1, 4)] + [
        {**identity, "scenario": "server", "ttft_ms": ms(3000.0), "tpot_ms": ms(1.0),
         "valid": False, "target_rate": 2.0, "max_valid_rate": 1.0,
         "search": [{"rate": 2.0, "valid": False, "ttft_p99_ms": 3000.0, "tpot_p99_ms": 1.0},
                    {"rate": 1.0, "valid": True, "ttft_p99_ms": 900.0, "tpot_p99_ms": 1.0}],
         "outcome": "failed", "message": "server at 2 requests/s is invalid"},
        {**identity, "cosine": 0.5, "greedy_match": 0.25, "outcome": "failed",
         "message": "greedy tokens matched"}]
    html, result = write_reports(records, tmp_path, "CPU", {}, TEMPLATES)
    page = html.read_text()
    assert "LLM serving" in page and "tiny-fp32 server: TTFT p99" in page
    assert "tokens/s against concurrency" in page and "No performance recorded" not in page
    assert page.count("after their submission") == 1 and "p99 12.5 ms after their submission" in page
    import json
    doc = json.loads(result.read_text())
    assert doc["Status"] == "failed" and len(doc["Generation"]) == 4
    assert doc["Generation"][2]["max_valid_rate"] == 1.0
