"""LLM items against an OpenAI-compatible server: the streaming client against
a stdlib server that fails each way a server can (refuses, drops the stream,
sends what is not JSON, answers an error, stalls), the figures of a stream of
chunks, the arrivals (gamma, a replayed trace), the accuracy gate, and the
suites run as a user runs them against `transformers serve` on a tiny model
(skipped, with the reason, where its packages are missing). The --llm-* options'
parse is test_llm_settings.py's."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

from dataclasses import replace

import numpy as np
import pytest
import yaml

from backends.generation import Request
from xpuperf.generation import arithmetic, harness, settings
from xpuperf.generation.endpoint import EndpointEngine
from xpuperf.generation.instant_server import InstantServer
from xpuperf.generation.metrics import Bounds, Trace, figures
from xpuperf.generation.openai_client import Endpoint, Pool
from xpuperf.generation.serving import LLMSession
from xpuperf.report import TEMPLATES, write_reports
from xpuperf.zoo import parse_zoo
from xpuperf.zoo.specs import EndpointAccuracySpec
from tests_selftest.sessions import ROOT, python_env, run_session
from tests_selftest.test_llm_answer import answer_bytes

MS = 1_000_000  # ns
CERTIFICATE = ROOT / "tests_selftest" / "localhost.pem"  # 127.0.0.1's, self-signed


class _WordTokenizer:
    """A stand-in tokenizer: a token per word (the instant server's pieces are
    words), so that the count without usage is known."""

    def load(self) -> None:
        pass

    def count(self, text: str) -> int:
        return len(text.split())

    def prompt(self, i: int, tokens: int) -> str:
        return "".join(f"w{i} " for _ in range(tokens))


@pytest.fixture(params=["asyncio", "uvloop", "asyncio, C reader", "uvloop, C reader"])
def loop_kind(request, monkeypatch):
    """The client on each event loop it may run on (uvloop's where installed),
    its sockets read by the loop (as over TLS) or by the C reader (plain HTTP
    where it is built: test_llm_reader.py fails where it is not)."""
    from xpuperf.generation import openai_client
    if request.param.startswith("asyncio"):
        monkeypatch.setattr(openai_client, "new_loop", asyncio.new_event_loop)
    elif importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed (extra `client`)")
    if not request.param.endswith("C reader"):
        monkeypatch.setattr(openai_client, "READER", None)
    elif openai_client.READER is None:
        pytest.skip("the C reader is not built (pip install -e . builds it)")
    return request.param


@pytest.fixture(scope="module")
def server():
    s = InstantServer()
    yield s
    s.close()


def _engine(url: str, model: str, api: str = "completions", timeout_s: float = 10.0):
    return EndpointEngine(Endpoint(url, model, api, timeout_s), _WordTokenizer())


def _requests(count: int, tokens: int = 5) -> list[Request]:
    return [Request((), tokens, f"prompt {i}") for i in range(count)]


# --------------------------------------------------------------------------- the client

@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize("model, source", [("ok", "usage"), ("no_usage", "tokenizer")])
def test_a_stream_is_timed_per_chunk_and_counted_from_usage_else_the_tokenizer(
        server, api, model, source, loop_kind):
    engine = _engine(server.url, model, api)
    try:
        sinks = harness.closed_loop(engine, _requests(6), 3, 10)
    finally:
        engine.close()
    assert engine.description.endswith(f"client on {loop_kind}")
    # One arrival a token's chunk (a chat's opening chunk, the role's, is none).
    assert [len(s.token_ns) for s in sinks] == [5] * 6
    assert harness.generated(sinks) == 30 and harness.short(sinks) == 0
    assert dict(engine.token_counts) == {source: 6}


def test_a_request_waiting_for_the_clients_loop_is_timed_from_its_sending(server):
    """The client's own queue is not the server's: requests submitted while the
    client's event loop is held 0.3 s (a slow callback; many answers ending at
    once, whose next requests wait for each other) are timed from when they
    were written, and the wait is client_delay_ms. Fails where TTFT counts
    from the submission."""
    engine = _engine(server.url, "ok")
    try:
        engine._loop.loop.call_soon_threadsafe(time.sleep, 0.3)
        sinks = harness.closed_loop(engine, _requests(4), 4, 10)
    finally:
        engine.close()
    fig = harness.run_figures(sinks, Bounds(1e9, 1e9))
    assert fig["client_delay_ms"]["p50"] >= 250 and fig["ttft_ms"]["p99"] < 250, fig
    assert all(s.submitted_ns < s.sent_ns < s.token_ns[0] for s in sinks)


def test_a_connect_made_for_a_request_counts_in_its_ttft(server, monkeypatch):
    """Where no idle connection was at hand, the connect is the server's to answer
    (its accept, a TLS handshake) and TTFT includes it, as vLLM's bench counts
    it: requests whose connects take 0.2 s have a TTFT of at least that, and no
    client delay for it. Fails where a request is timed from after its connect."""
    from xpuperf.generation import openai_client

    class SlowConnects(asyncio.SelectorEventLoop):
        async def create_connection(self, *args, **kwargs):
            await asyncio.sleep(0.2)
            return await super().create_connection(*args, **kwargs)

    monkeypatch.setattr(openai_client, "new_loop", SlowConnects)
    engine = _engine(server.url, "ok")
    try:
        sinks = harness.closed_loop(engine, _requests(2), 2, 10)
    finally:
        engine.close()
    fig = harness.run_figures(sinks, Bounds(1e9, 1e9))
    assert fig["ttft_ms"]["p50"] >= 200 and fig["client_delay_ms"]["p99"] < 100, fig


def test_an_api_key_is_the_bearer_token_and_extra_fields_go_with_every_request(monkeypatch):
    """A server started with an API key (vLLM's --api-key) answers a request
    without it, or with another, HTTP 401: each fails with the server's reason;
    --llm-api-key-env's variable carries it, and --llm-extra-body's fields reach
    the server. The key is in no description, only its variable's name."""
    server = InstantServer(api_key="sk-test-1234")
    monkeypatch.setenv("XPUPERF_TEST_KEY", "sk-test-1234")
    monkeypatch.setenv("XPUPERF_OTHER_KEY", "sk-other")
    extra = {"top_k": 1, "chat_template_kwargs": {"enable_thinking": False}}
    try:
        keyed = EndpointEngine(Endpoint(server.url, "ok", extra_body=extra,
                                        api_key_env="XPUPERF_TEST_KEY"), _WordTokenizer())
        try:
            sinks = harness.closed_loop(keyed, _requests(2), 2, 10)
        finally:
            keyed.close()
        assert harness.generated(sinks) == 10
        assert {k: server.last_body[k] for k in extra} == extra
        assert server.last_body["stream"] is True and server.last_body["temperature"] == 0.0
        assert "sk-test" not in keyed.description
        assert 'extra body {"top_k": 1, ' in keyed.description
        assert "API key from $XPUPERF_TEST_KEY" in keyed.description
        for key_env in (None, "XPUPERF_OTHER_KEY"):
            engine = EndpointEngine(Endpoint(server.url, "ok", api_key_env=key_env),
                                    _WordTokenizer())
            try:
                with pytest.raises(harness.EngineError, match="HTTP 401 from /v1/completions: .*"
                                                      "a missing or wrong API key"):
                    harness.closed_loop(engine, _requests(2), 2, 10)
            finally:
                engine.close()
    finally:
        server.close()


def test_a_server_over_https_is_read_by_the_loop_and_its_certificate_checked(monkeypatch):
    """A hosted endpoint speaks HTTPS: its streams are read by the event loop
    (the C reader reads plain HTTP), timed and counted as over HTTP, against a
    certificate the machine trusts ($SSL_CERT_FILE, as OpenSSL reads it); one it
    does not trust fails each request with the reason, never a stall."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(CERTIFICATE)
    server = InstantServer(tls=tls)
    try:
        assert server.url.startswith("https://")
        for trusted in (True, False):
            if trusted:
                monkeypatch.setenv("SSL_CERT_FILE", str(CERTIFICATE))
            else:
                monkeypatch.delenv("SSL_CERT_FILE", raising=False)
            engine = _engine(server.url, "ok")
            try:
                assert "C reader" not in engine.description
                if trusted:
                    sinks = harness.closed_loop(engine, _requests(4), 2, 10)
                    assert [len(s.token_ns) for s in sinks] == [5] * 4
                    assert dict(engine.token_counts) == {"usage": 4}
                else:
                    with pytest.raises(harness.EngineError,
                                       match="failed: SSLCertVerificationError: .*certificate"):
                        harness.closed_loop(engine, _requests(2), 2, 10)
            finally:
                engine.close()
    finally:
        server.close()


@pytest.mark.parametrize("model, expected", [
    ("drop", "the stream ended mid-response"),
    ("malformed", "an event that is not JSON"),
    ("bad_choices", "an event whose choices are not JSON objects"),
    ("bad_usage", "a usage that is not a count of tokens"),
    ("error", "HTTP 500 from /v1/completions"),
    ("stall", "no complete answer within 0.5 s"),
    # Read at once, not held with the tokens by the C reader: not the stall's timeout.
    ("error_event", "the server reported an error mid-stream: .*out of KV cache"),
])
def test_a_failing_server_fails_the_run_with_the_reason_never_a_hang(server, model, expected,
                                                                     loop_kind):
    engine = _engine(server.url, model, timeout_s=0.5)
    start = time.monotonic()
    try:
        with pytest.raises(harness.EngineError, match=expected):
            harness.closed_loop(engine, _requests(4), 4, 30)
    finally:
        engine.close()
    assert time.monotonic() - start < 10  # the requests' own limit ended it, not the run's


def test_a_refused_connection_is_a_failed_request(loop_kind):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = _engine(f"http://127.0.0.1:{port}/v1", "ok")
    try:
        with pytest.raises(harness.EngineError, match="ConnectionRefusedError"):
            harness.closed_loop(engine, _requests(1), 1, 30)
    finally:
        engine.close()


def test_a_group_whose_engine_did_not_start_fails_its_later_items_at_once(monkeypatch):
    # A stalled server failed each item's start after the same wait.
    from xpuperf.generation.remote import RemoteLLM
    from xpuperf.session import BackendError

    calls = []

    def start_fails(self, spec, precision, command, **args):
        calls.append(command)
        raise BackendError("EngineError: no complete answer within 1 s\n\ntraceback")
    monkeypatch.setattr(RemoteLLM, "_call", start_fails)
    llm = RemoteLLM("CPU", {}, None, 10)
    with pytest.raises(BackendError, match="no complete answer"):
        llm.start(_spec(), "endpoint")
    with pytest.raises(BackendError, match="not run: the engine of tiny-endpoint did not start "
                                           "for an earlier item: EngineError: no complete answer"):
        llm.start(_spec(), "endpoint")
    assert calls == ["start"]


def _waves(engine, waves: int, streams: int, pause_s: float = 0.0) -> None:
    for _ in range(waves):
        sinks = harness.closed_loop(engine, _requests(streams), streams, 30)
        assert harness.generated(sinks) == 5 * streams
        time.sleep(pause_s)


def test_connections_are_kept_alive_and_reused():
    server = InstantServer()
    engine = _engine(server.url, "ok")
    try:
        _waves(engine, 3, 4)
        # Each of 3 waves of 4 requests: a connection each for the first, then reused.
        assert server.connections == engine.pool.opened <= 4
        assert engine.pool.opened + engine.pool.reused == 12
    finally:
        engine.close()
        server.close()


def test_idle_connections_beyond_the_pools_bound_are_closed():
    server = InstantServer(itl_s=0.02)  # a wave's 4 streams overlap: none ends before all began
    engine = _engine(server.url, "ok")
    engine.pool = Pool(max_idle=2)
    try:
        _waves(engine, 2, 4)
        # The first wave's 4 connections: 2 kept idle, 2 closed; the second reuses 2.
        assert (engine.pool.opened, engine.pool.reused, server.connections) == (6, 2, 6)
    finally:
        engine.close()
        server.close()


@pytest.mark.parametrize("close, value", [
    # The server's idle timer closes the connections between the waves (on a
    # loaded host its close may reach the client only as it reuses one).
    ("idle_s", 0.05),
    # It closes each unanswered as its second request comes in (the race a client
    # cannot see coming): each of those 8 requests is sent again on a new connection.
    ("requests_per_connection", 1),
])
def test_a_server_closing_idle_connections_fails_no_request(close, value, loop_kind):
    server = InstantServer(**{close: value})
    engine = _engine(server.url, "ok")
    try:
        _waves(engine, 3, 4, pause_s=0.2)  # would raise EngineError for a failed request
        assert engine.pool.opened == server.connections
        if close == "requests_per_connection":
            assert (server.connections, engine.pool.reused) == (12, 8)
        else:  # closed connections were replaced (a loaded host's timer may fire late: not all)
            assert server.connections > 4
    finally:
        engine.close()
        server.close()


def test_bytes_that_break_the_framing_after_done_close_the_connection(loop_kind):
    """A server (or a proxy) that follows ``data: [DONE]`` with what is not the
    chunked body's end: the answer stands, and its connection is closed at
    once, not left open with the answer unended or kept for the next request."""
    answer = answer_bytes("completions", 3)
    assert answer.endswith(b"0\r\n\r\n")
    answer = answer[:-5] + b"zz\r\n\r\n"
    seen: dict[str, bytes] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            listener.settimeout(10)
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(10)
                connection.recv(65536)  # the request
                connection.sendall(answer)
                seen["after"] = connection.recv(1)  # b"": the client closed it
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        engine = _engine(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", "ok")
        try:
            [sink] = harness.closed_loop(engine, _requests(1, 3), 1, 30)
            thread.join(5)
            assert seen == {"after": b""}, "the client kept the connection open"
        finally:
            engine.close()
    assert sink.count == 3 and engine.pool.reused == 0


# --------------------------------------------------------------------------- figures, arrivals

def test_tpot_of_a_chunked_stream_counts_its_tokens_and_itl_its_chunks():
    # Three chunks holding 7 tokens: the decode rate is over the 6 tokens after the
    # first, the inter-token gaps are the chunks' (as vLLM's bench counts both).
    t = Trace(0, (10 * MS, 22 * MS, 40 * MS), tokens=7)
    assert t.tpot_ns == 30 * MS / 6 and t.generated == 7
    fig = figures([t], Bounds(ttft_ms=20, tpot_ms=4), percentiles=[99.9])
    assert fig["generated_tokens"] == 7 and fig["itl_ms"]["p50"] == pytest.approx(15)
    assert fig["output_tokens_per_s"] == pytest.approx(7 / 0.040)
    assert "p99.9" in fig["ttft_ms"] and fig["goodput"] == 0.0  # TPOT 5 ms > 4 ms
    assert fig["goodput_requests_per_s"] == 0.0


def test_latencies_count_from_the_sending_where_a_client_sent_the_request():
    # Submitted at 0, written at 30 ms (the client busy), chunks at 40 and 100 ms.
    t = Trace(0, (40 * MS, 100 * MS), sent_ns=30 * MS)
    fig = figures([t], Bounds(ttft_ms=20, tpot_ms=100))
    assert (fig["ttft_ms"]["p50"], fig["e2e_ms"]["p50"]) == (pytest.approx(10), pytest.approx(70))
    assert fig["client_delay_ms"]["p50"] == pytest.approx(30) and fig["valid"]
    assert fig["wall_s"] == pytest.approx(0.1)  # the run's window still opens at the submission
    # An in-tree engine's requests: from the submission, and no client's queue.
    fig = figures([Trace(0, (40 * MS, 100 * MS))], Bounds(ttft_ms=20, tpot_ms=100))
    assert fig["ttft_ms"]["p50"] == pytest.approx(40) and fig["client_delay_ms"] is None


def test_gamma_arrivals_keep_the_rate_and_spread_as_their_shape_says():
    for shape in (0.25, 1.0, 4.0):
        at = harness.arrivals_ns(20_000, rate=50.0, seed=3, burstiness=shape)
        gaps = np.diff(at) / 1e9
        assert gaps.mean() == pytest.approx(1 / 50, rel=0.05)
        # A gamma gap's squared coefficient of variation is 1 / shape (1: Poisson).
        assert (gaps.std() / gaps.mean()) ** 2 == pytest.approx(1 / shape, rel=0.1)
    assert np.array_equal(harness.arrivals_ns(8, 5.0, 1), harness.arrivals_ns(8, 5.0, 1))


def test_a_session_replays_a_trace_against_the_server_at_its_times(server, tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(json.dumps({"arrival_s": a, "input_tokens": 4, "output_tokens": n})
                               for a, n in [(0.0, 3), (0.2, 6), (0.3, 2)]))
    llm = LLMSession(None, {}, settings=settings.Settings(
        Endpoint(server.url, "ok"), slo={"ttft_ms": 1000.0}, arrivals=f"trace:{trace}"))
    llm._tokenizer = _WordTokenizer()
    spec = _spec()
    try:
        fields, problems = llm.run_scenario(spec, settings.ENDPOINT_PRECISION, "server", None)
    finally:
        llm.close()
    assert problems == [] and fields["arrivals"] == f"trace {trace}"
    assert fields["requests"] == 3 and fields["generated_tokens"] == 11
    assert fields["wall_s"] >= 0.3  # the last arrived 0.3 s after the first
    assert fields["ttft_bound_ms"] == 1000.0 and fields["bounds_source"] == "--llm-slo"
    assert fields["token_count_source"] == {"usage": 3}
    assert "unavailable" in fields["energy"]
    # The report takes a replay (no rate search) and a server item that failed
    # before it had any figure, beside it.
    identity = {"suite": "generation", "combination": "tiny-endpoint", "model": "tiny",
                "dataset": "prompts", "precision": "endpoint", "hardware": "CPU",
                "framework": "server", "domain": "llm", "family": "gpt2"}
    html, _ = write_reports([{**identity, **fields, "outcome": "passed", "message": ""},
                             {**identity, "scenario": "server", "concurrency": 2,
                              "outcome": "failed", "message": "stalled"}],
                            tmp_path / "report", "CPU", {}, TEMPLATES)
    page = html.read_text()
    assert "tiny-endpoint" in page and "stalled" in page


@pytest.mark.parametrize("nvml, devices, expected", [
    ("fake", (0, 1), None),
    (None, (0,), "pip install nvidia-ml-py"),  # the binding is not installed
    ("fake", (), "unless --llm-energy-devices names its NVIDIA cards"),
])
def test_a_servers_energy_is_read_from_nvml_around_its_timed_window(
        server, monkeypatch, nvml, devices, expected):
    from tests_selftest.test_energy import _FakeNvml
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml() if nvml else None)
    zoo = _endpoint_zoo()  # with MLPerf's bounds, which the record says it used
    zoo["generation"]["mlperf_bounds"] = {"llama2-70b-interactive": {"ttft_ms": 450, "tpot_ms": 40}}
    zoo["generation"]["workloads"]["tiny"]["server"] = {"mlperf": "llama2-70b-interactive"}
    llm = LLMSession(None, {}, settings=settings.Settings(
        Endpoint(server.url, "ok"), energy_devices=devices))
    llm._tokenizer = _WordTokenizer()
    try:
        fields, problems = llm.run_scenario(parse_zoo(yaml.safe_dump(zoo), "full").generation[0],
                                            settings.ENDPOINT_PRECISION, "offline", 2)
    finally:
        llm.close()
    assert (fields["ttft_bound_ms"], fields["tpot_bound_ms"]) == (450, 40)
    assert fields["bounds_source"].startswith("MLPerf's llama2-70b-interactive")
    used = fields["energy"]
    if expected:
        assert expected in used["unavailable"] and set(used) == {"unavailable"}
        return
    # Two cards, each counter 7.5 J a read of the fake: 15 J each over the window.
    assert used["joules"] == pytest.approx(30)
    assert used["j_per_output_token"] == pytest.approx(30 / fields["generated_tokens"])
    assert used["avg_watts"] == pytest.approx(30 / used["seconds"])
    assert used["method"] == ("NVML total energy (nvmlDeviceGetTotalEnergyConsumption), "
                              "GPU 0, GPU 1")


def test_a_shared_prefix_is_recorded_as_the_prompt_tokens_the_server_had_cached(server):
    # The instant server counts as cached the words a prompt shares at its start
    # with the one before; its usage says so, as vLLM's and SGLang's do.
    cached = {}
    for prefix in (0, 3):
        llm = LLMSession(None, {}, settings=settings.Settings(Endpoint(server.url, "ok")))
        llm._tokenizer = _WordTokenizer()
        try:
            fields, _ = llm.run_scenario(replace(_spec(), shared_prefix_tokens=prefix),
                                         settings.ENDPOINT_PRECISION, "offline", 1)
        finally:
            llm.close()
        assert fields["cached_prompt_tokens_requests"] == fields["requests"] == 4
        cached[prefix] = fields["cached_prompt_tokens"]
    # One at a time, each request shares the prefix with the one before, but the
    # first may repeat the warm-up's last prompt whole (8 tokens).
    assert cached[0] in (0, 8) and cached[3] in (4 * 3, 3 * 3 + 8)


def test_a_conversation_goes_to_the_server_as_messages_or_as_one_prompt():
    history = ("q1", "a1", "q2", "a2")
    chat, plain = (Endpoint("http://localhost:8000/v1", "m", api) for api in ("chat", "completions"))
    assert chat.body("q3", 4, history)["messages"] == [
        {"role": role, "content": text}
        for role, text in zip(("user", "assistant") * 2 + ("user",), (*history, "q3"))]
    assert plain.body("q3", 4, history)["prompt"] == "q1a1q2a2q3"


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_a_multi_turn_workload_sends_each_turn_after_its_history(server, api):
    llm = LLMSession(None, {}, settings=settings.Settings(Endpoint(server.url, "ok", api)))
    llm._tokenizer = _WordTokenizer()
    try:
        fields, problems = llm.run_scenario(replace(_spec(), turns=3, shared_prefix_tokens=0),
                                            settings.ENDPOINT_PRECISION, "offline", 1)
    finally:
        llm.close()
    assert problems == [] and fields["requests"] == 4 * 3 and len(fields["ttft_ms_by_turn"]) == 3
    # One conversation at a time: a later turn's prompt begins with the whole
    # prompt of the turn before (8 words, then 19 or 20 with an answer and a new
    # message), which the instant server counts as cached; the messages alone
    # share nothing.
    assert fields["cached_prompt_tokens"] >= 4 * (8 + 19)


def _spec():
    return parse_zoo(yaml.safe_dump(_endpoint_zoo()), "full").generation[0]


# --------------------------------------------------------------------------- the accuracy gate

def test_the_shipped_problems_are_the_generators_and_right_answers_score_one():
    problems = arithmetic.load()
    assert list(problems) == arithmetic.generate() and len(problems) == arithmetic.PROBLEMS
    right = [f" {p.answer:,}. Because" for p in problems]  # a thousands comma too
    assert arithmetic.exact_match(problems, right) == 1.0
    assert arithmetic.exact_match(problems, [" 12.5"] + right[1:]) == 1 - 1 / len(problems)
    assert arithmetic.agreement(["a b", "c"], [" a b\n", "c d"]) == 0.5


def _gate_accuracy(url: str, model: str, gate: EndpointAccuracySpec, tokenizer=None):
    llm = LLMSession(None, {}, settings=settings.Settings(Endpoint(url, model),
                                                          tokenizer=tokenizer))
    if tokenizer is None:
        llm._tokenizer = _WordTokenizer()
    try:
        return llm.check_accuracy(replace(_spec(), endpoint_accuracy=gate),
                                  settings.ENDPOINT_PRECISION)
    finally:
        llm.close()


def test_a_server_fast_because_it_answers_junk_fails_the_exact_match_gate(server):
    fields, problems = _gate_accuracy(server.url, "ok", EndpointAccuracySpec(0.5, "exact_match",
                                                                             40, 6))
    assert fields["score"] == 0.0 and len(fields["replies"]) == 40
    assert fields["replies"][0] == " t0 t1 t2 t3 t4 t5"
    assert problems == ["endpoint accuracy (exact_match) 0 on 40 arithmetic problems, needs "
                        ">= 0.5: the server answers wrongly"]


# --------------------------------------------------------------------------- a real server

SERVE_PACKAGES = ("fastapi", "uvicorn", "openai", "accelerate")
MISSING = [p for p in SERVE_PACKAGES if importlib.util.find_spec(p) is None]

def _endpoint_zoo() -> dict:
    """test_llm's tiny workload, three quick scenarios: its model is never built
    (the server's is measured), its sizes and scenarios are the items'."""
    from tests_selftest.test_llm import ZOO
    zoo = yaml.safe_load(ZOO)
    tiny = zoo["generation"]["workloads"]["tiny"]
    tiny.update(requests=4, concurrency=[2], server={"search_s": 0.5, "max_trials": 1},
                endpoint_accuracy=REFERENCE_GATE, shared_prefix_tokens=4)
    return zoo


# A tiny model with random weights answers no arithmetic: its answers are checked
# against its own fp32 greedy text, computed by the worker from its folder.
REFERENCE_GATE = {"method": "reference", "min_score": 0.75, "problems": 4, "max_tokens": 8}


@pytest.fixture(scope="module", autouse=True)
def _launched(request, tmp_path_factory):
    """`transformers serve` on a tiny Llama, on this CPU, started as this module
    begins when a test of it is to run: it takes longer to come up than the other
    tests here take, which run meanwhile. Ended with the module."""
    wanted = any("transformers_serve" in getattr(item, "fixturenames", ())
                 for item in request.session.items)
    if MISSING or not wanted:
        yield None
        return
    folder = tmp_path_factory.mktemp("tiny-llama")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (folder / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests_selftest" / "tiny_hf_server.py"), str(folder),
             str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env=python_env())
        try:
            yield proc, folder, port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def transformers_serve(_launched):
    """The server's URL and model name, once it answers."""
    if MISSING:
        pytest.skip(f"`transformers serve` needs {', '.join(MISSING)} (pip install -e "
                    f"'.[serving]', as .ci/setup does)")
    proc, folder, port = _launched
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return f"http://127.0.0.1:{port}/v1", str(folder)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("transformers serve did not come up:\n"
                            + (folder / "serve.log").read_text()[-3000:])
            time.sleep(0.3)


def test_transformers_serve_keeps_the_clients_connections_alive(transformers_serve):
    url, model = transformers_serve
    engine = EndpointEngine(Endpoint(url, model, timeout_s=60), _WordTokenizer())
    try:
        for _ in range(3):
            sinks = harness.closed_loop(engine, _requests(2, tokens=3), 2, 60)
            assert harness.generated(sinks) > 0
    finally:
        engine.close()
    # Three waves of two: two connections, reused by the later four requests.
    assert (engine.pool.opened, engine.pool.reused) == (2, 4)


def test_the_llm_suite_measures_transformers_serve(transformers_serve, tmp_path, monkeypatch):
    url, model = transformers_serve
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(_endpoint_zoo()))
    # A key as a shared server asks for one (transformers serve reads none), and
    # a field of the server's own, which it would refuse if it were not one it knows.
    monkeypatch.setenv("XPUPERF_TEST_KEY", "sk-never-written-anywhere")
    # The model's name is its folder: its tokenizer is found by the name, as a
    # user's hub name finds the tokenizer in their cache.
    r = run_session(tmp_path, "CPU", "--llm-endpoint", url, "--llm-model", model,
                    "--llm-percentiles", "95", "--llm-sweep", "concurrency=1,2",
                    "--llm-extra-body", '{"top_p": 1.0}', "--llm-api-key-env", "XPUPERF_TEST_KEY",
                    target="suites/llm", report="report", timeout_s=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "5 passed" in r.stdout, r.stdout[-3000:]
    folder = tmp_path / "report"
    doc = json.loads((folder / "tiny" / "result-endpoint.json").read_text())
    records = {g["scenario"]: g for g in doc["Generation"] if g.get("scenario")}
    assert set(records) == {"offline", "single_stream", "server", "sweep"}
    # The sweep's every point, in the result file, records.json and benchmark.json alike.
    swept = records.pop("sweep")["sweep"]
    assert [p["concurrency"] for p in swept["points"]] == [1, 2]
    assert all(p["output_tokens_per_s"] > 0 and p["ttft_ms"]["p95"] > 0 for p in swept["points"])
    [kept] = [r for r in json.loads((folder / "records.json").read_text())["records"]
              if r.get("scenario") == "sweep"]
    [bench] = json.loads((folder / "benchmark.json").read_text())["benchmarks"]
    assert kept["sweep"] == bench["extra_info"]["sweep"] == swept
    assert bench["name"] == "test_sla_sweep[tiny-endpoint-in8-out4-sweep]"
    assert bench["stats"]["rounds"] == sum(p["requests"] for p in swept["points"])
    assert not [f for f in folder.rglob("*") if f.is_file()
                and b"sk-never-written" in f.read_bytes()], "the API key was written"
    for g in records.values():
        assert g["engine"].startswith(f"OpenAI-compatible server {url}")
        assert 'extra body {"top_p": 1.0}, API key from $XPUPERF_TEST_KEY' in g["engine"]
        assert g["token_count_source"] == {"usage": g["requests"]}
        assert g["ttft_ms"]["p95"] > 0 and g["output_tokens_per_s"] > 0
        # transformers serve has no prefix cache to report: None, not a guess.
        assert g["shared_prefix_tokens"] == 4 and g["cached_prompt_tokens"] is None
    assert records["server"]["max_valid_rate"] is not None
    gate, = (g for g in doc["Generation"] if not g.get("scenario"))
    assert gate["method"] == "reference" and gate["score"] >= REFERENCE_GATE["min_score"]


def test_the_reference_gate_fails_the_instant_server_and_passes_transformers_serve(
        transformers_serve, server):
    # One gate, the served model's fp32 greedy text as the reference: the server
    # that answers at once with junk fails it, the one that runs the model passes.
    url, model = transformers_serve
    gate = EndpointAccuracySpec(**REFERENCE_GATE)
    junk, junk_problems = _gate_accuracy(server.url, "ok", gate, tokenizer=model)
    real, real_problems = _gate_accuracy(url, model, gate, tokenizer=model)
    assert junk["reference_replies"] == real["reference_replies"]
    assert junk["score"] == 0.0 and "the server answers wrongly" in junk_problems[0]
    assert real["score"] >= gate.min_score and real_problems == []

