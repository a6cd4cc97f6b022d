"""How a session's LLM items are served and loaded, from the command line:
the server they measure (--llm-endpoint, --llm-model, --llm-api,
--llm-tokenizer, --llm-request-timeout, --llm-ignore-eos, --llm-extra-body,
--llm-api-key-env; none: the backend's in-tree engine),
the SLOs that override the zoo's bounds (--llm-slo), the server scenario's
arrivals (--llm-arrivals: poisson, gamma:SHAPE, trace:PATH), extra latency
percentiles (--llm-percentiles), the SLA sweep (--llm-sweep, over
--llm-devices accelerators: xpuperf.generation.sweep) and the server's cards whose NVML
energy counters are read around its timed windows (--llm-energy-devices). Parsed once per session into RunConfig.llm
(xpuperf.options, which defines the flags); handed to each
LLM worker as a plain dict.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from xpuperf.generation.openai_client import Endpoint
from xpuperf.generation.sweep import Plan

ENDPOINT_PRECISION = "endpoint"  # the items' precision against a server: the server's own
SLO_KEYS = ("ttft_ms", "tpot_ms")
MAX_TRACE_LINES = 100_000
MAX_EXTRA_BODY = 65536  # bytes of --llm-extra-body: fields of a request, not a payload


@dataclass(frozen=True)
class TraceRequest:
    """One line of a replayed trace: when it arrives (s from the first), its sizes."""

    arrival_s: float
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Settings:
    endpoint: Endpoint | None = None
    tokenizer: str | None = None  # a local tokenizer (path or cached name) for the endpoint
    slo: Mapping[str, float] = field(default_factory=dict)  # ttft_ms / tpot_ms
    arrivals: str = "poisson"  # "poisson", "gamma:SHAPE" or "trace:PATH"
    percentiles: tuple[float, ...] = ()
    sweep: Plan | None = None  # None: no sweep item
    devices: int = 1  # the accelerators serving: the sweep's tokens/s per device
    energy_devices: tuple[int, ...] = ()  # NVML indices of the server's cards, on this host

    @property
    def burstiness(self) -> float:
        """The gamma shape of the arrivals' gaps (1: Poisson)."""
        return float(self.arrivals.split(":", 1)[1]) if self.arrivals.startswith("gamma:") else 1.0

    @property
    def trace_path(self) -> str | None:
        return self.arrivals.split(":", 1)[1] if self.arrivals.startswith("trace:") else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the endpoint and the sweep's plan as plain dicts

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Settings":
        endpoint, sweep = raw.get("endpoint"), raw.get("sweep")
        return cls(**{**raw, "endpoint": Endpoint(**endpoint) if endpoint else None,
                      "percentiles": tuple(raw.get("percentiles") or ()),
                      "sweep": Plan(sweep["variable"], tuple(sweep["points"])) if sweep else None,
                      "energy_devices": tuple(raw.get("energy_devices") or ())})


def parse(endpoint: str | None, model: str | None, api: str, tokenizer: str | None,
          request_timeout_s: float, ignore_eos: bool, slo: str | None, arrivals: str,
          percentiles: str | None, sweep: Plan | None = None, devices: int = 1, *,
          energy_devices: str | None = None, extra_body: str | None = None,
          api_key_env: str | None = None) -> Settings:
    """The command line's --llm-* options; ValueError naming the option and the fix
    (--llm-sweep and --llm-devices come checked by argparse)."""
    if bool(endpoint) != bool(model):
        raise ValueError("--llm-endpoint and --llm-model go together: the server's URL "
                         "(http://host:8000/v1) and the name it serves the model under")
    if (extra_body or api_key_env) and not endpoint:
        raise ValueError("--llm-extra-body and --llm-api-key-env shape the requests to a "
                         "server: give them with --llm-endpoint")
    served = Endpoint(endpoint, model, api, request_timeout_s, ignore_eos,
                      parse_extra_body(extra_body), api_key_env) if endpoint else None
    settings = Settings(served, tokenizer or model, parse_slo(slo), arrivals,
                        parse_percentiles(percentiles), sweep, devices,
                        parse_devices(energy_devices))
    if settings.energy_devices and not served:
        raise ValueError("--llm-energy-devices meters a server's cards: give it with "
                         "--llm-endpoint (the in-tree engines are metered by their backend)")
    if not (arrivals == "poisson" or arrivals.startswith(("gamma:", "trace:"))):
        raise ValueError(f"--llm-arrivals {arrivals!r}: poisson, gamma:SHAPE (e.g. gamma:0.5, "
                         f"burstier than Poisson) or trace:PATH (a JSONL trace)")
    try:
        ok = settings.burstiness > 0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"--llm-arrivals {arrivals!r}: the gamma shape must be a number > 0")
    if sweep is not None and not sweep.integer and settings.trace_path:
        raise ValueError(f"--llm-sweep {sweep} with --llm-arrivals {arrivals}: a trace keeps "
                         f"its own times; sweep concurrency, or give poisson or gamma:SHAPE")
    if settings.trace_path:
        load_trace(settings.trace_path)  # its errors now, not in the middle of the session
    return settings


def parse_extra_body(text: str | None) -> dict[str, Any]:
    """'{"top_k": 1}' -> {'top_k': 1}: a JSON object, at most MAX_EXTRA_BODY bytes."""
    if not text:
        return {}
    try:
        body = json.loads(text) if len(text) <= MAX_EXTRA_BODY else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ValueError(f"--llm-extra-body {text[:200]!r}: give one JSON object of at most "
                         f"{MAX_EXTRA_BODY} bytes, the fields to add to every request, e.g. "
                         f"'{{\"chat_template_kwargs\": {{\"enable_thinking\": false}}}}'")
    return body


def parse_slo(text: str | None) -> dict[str, float]:
    """'ttft_ms=500,tpot_ms=50' -> {'ttft_ms': 500.0, 'tpot_ms': 50.0}."""
    out: dict[str, float] = {}
    for part in filter(None, (text or "").split(",")):
        key, _, value = part.partition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if key not in SLO_KEYS or not number > 0:
            raise ValueError(f"--llm-slo {part!r}: give {' and/or '.join(SLO_KEYS)} as KEY=MS "
                             f"(> 0), e.g. --llm-slo ttft_ms=2000,tpot_ms=200")
        out[key] = number
    return out


def parse_percentiles(text: str | None) -> tuple[float, ...]:
    """'99.9,95' -> (95.0, 99.9)."""
    try:
        qs = tuple(sorted(float(p) for p in filter(None, (text or "").split(","))))
    except ValueError:
        qs = (-1.0,)
    if any(not 0 < q < 100 for q in qs):
        raise ValueError(f"--llm-percentiles {text!r}: numbers between 0 and 100, e.g. 95,99.9")
    return qs


def parse_devices(text: str | None) -> tuple[int, ...]:
    """'0,1' -> (0, 1): NVML's indices (nvidia-smi's), each once."""
    try:
        cards = tuple(int(c) for c in filter(None, (text or "").split(",")))
    except ValueError:
        cards = (-1,)
    if any(c < 0 for c in cards) or len(set(cards)) != len(cards):
        raise ValueError(f"--llm-energy-devices {text!r}: the server's cards as nvidia-smi "
                         f"numbers them, each once, e.g. 0,1")
    return cards


def load_trace(path: str) -> list[TraceRequest]:
    """A JSONL trace, one request a line: {"arrival_s": ..., "input_tokens": ...,
    "output_tokens": ...}, arrival times in seconds from the trace's start."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--llm-arrivals trace:{path}: no such file")
    out = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if len(out) >= MAX_TRACE_LINES:
                raise ValueError(f"trace {path}: more than {MAX_TRACE_LINES} requests")
            try:
                raw = json.loads(line)
                r = TraceRequest(float(raw["arrival_s"]), int(raw["input_tokens"]),
                                 int(raw["output_tokens"]))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"trace {path} line {n}: {e!r}: each line is "
                                 f'{{"arrival_s": S, "input_tokens": N, "output_tokens": M}}') from None
            if r.arrival_s < 0 or r.input_tokens < 1 or r.output_tokens < 1:
                raise ValueError(f"trace {path} line {n}: arrival_s >= 0 and token counts >= 1")
            out.append(r)
    if not out:
        raise ValueError(f"trace {path} has no requests")
    return sorted(out, key=lambda r: r.arrival_s)
