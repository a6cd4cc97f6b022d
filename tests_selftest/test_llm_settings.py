"""The --llm-* options as settings.py parses them (xpuperf/generation/settings.py):
each bad value refused with the option and the fix, a trace's lines checked,
and the settings handed to the LLM worker whole (an API key's variable, never
the key). The client and the servers they shape are test_llm_endpoint.py's."""
from __future__ import annotations

import json

import pytest

from xpuperf.generation import settings


@pytest.mark.parametrize("option, value, message", [
    ("slo", "ttft=5", "--llm-slo 'ttft=5'"),
    ("slo", "tpot_ms=-1", "--llm-slo 'tpot_ms=-1'"),
    ("percentiles", "99,100", "--llm-percentiles '99,100'"),
    ("arrivals", "gamma:x", "the gamma shape must be a number > 0"),
    ("arrivals", "uniform", "--llm-arrivals 'uniform'"),
    ("arrivals", "trace:/nonexistent.jsonl", "no such file"),
    ("endpoint", "localhost:8000", "is not an http(s) URL"),
    ("energy_devices", "0,0", "--llm-energy-devices '0,0'"),
    ("energy_devices", "gpu0", "--llm-energy-devices 'gpu0'"),
    ("extra_body", "[1]", r"--llm-extra-body '\[1\]': give one JSON object"),
    ("extra_body", "{'top_k': 1}", "give one JSON object"),  # not JSON: Python's quotes
    ("extra_body", '{"stream": false, "top_k": 1}', "--llm-extra-body sets stream: the client"),
    ("api_key_env", "XPUPERF_UNSET_KEY",
     r"XPUPERF_UNSET_KEY: \$XPUPERF_UNSET_KEY is not set or empty"),
    ("api_key_env", "XPUPERF_SPACED_KEY", "characters an HTTP header cannot carry"),
])
def test_bad_llm_options_name_the_option_and_the_fix(option, value, message, monkeypatch):
    monkeypatch.delenv("XPUPERF_UNSET_KEY", raising=False)
    monkeypatch.setenv("XPUPERF_SPACED_KEY", "sk-1\r\nX-Injected: 1")
    args = {"endpoint": None, "model": None, "api": "completions", "tokenizer": None,
            "request_timeout_s": 60.0, "ignore_eos": False, "slo": None, "arrivals": "poisson",
            "percentiles": None, option: value}
    if option in ("endpoint", "energy_devices", "extra_body", "api_key_env"):
        args.update(endpoint=args.get("endpoint") or "http://h:1/v1", model="m")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings.parse(**args)


def test_a_trace_line_without_its_fields_is_named(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"arrival_s": 0, "input_tokens": 4, "output_tokens": 2}\n{"arrival_s": 1}\n')
    with pytest.raises(ValueError, match="t.jsonl line 2"):
        settings.load_trace(str(trace))


def test_settings_reach_the_worker_whole(monkeypatch):
    monkeypatch.setenv("XPUPERF_TEST_KEY", "sk-secret")
    s = settings.parse("http://h:1/v1", "m", "chat", None, 5.0, True, "tpot_ms=50", "gamma:0.5",
                       "95", energy_devices="1,0", extra_body='{"top_k": 1}',
                       api_key_env="XPUPERF_TEST_KEY")
    handed = json.dumps(s.to_dict())
    assert settings.Settings.from_dict(json.loads(handed)) == s
    assert "sk-secret" not in handed  # the variable's name goes to the worker, not the key
    assert s.tokenizer == "m" and s.burstiness == 0.5 and s.percentiles == (95.0,)
    assert s.energy_devices == (1, 0)
    with pytest.raises(ValueError, match="--llm-energy-devices meters a server's cards"):
        settings.parse(None, None, "completions", None, 5.0, False, None, "poisson", None,
                       energy_devices="0")
    with pytest.raises(ValueError, match="give them with --llm-endpoint"):
        settings.parse(None, None, "completions", None, 5.0, False, None, "poisson", None,
                       extra_body='{"top_k": 1}')
