"""Serving figures from the harness's timestamps (pure: numbers in, numbers out).

Per request: TTFT is the first token's time less the request's start: its
submission to an engine that computes the tokens, its sending to a server (the
client's own queue before it is not the server's: client_delay_ms says how long
it was, as vLLM's bench times a request from its send); TPOT is
(last token - first token) / (tokens - 1), the decode rate that request saw;
inter-token latencies are the gaps between consecutive tokens (between a
server's chunks: a chunk of several tokens is one gap, as vLLM's bench counts); end-to-end is the
last token less the start. Every figure is over all requests of the run,
at p50/p90/p99. Throughput counts the output tokens over the run's window: from
the first submission to the last token, so no start-up stagger is in it (what
llm_perf's window included), and every time is in nanoseconds until it is
turned into milliseconds here (llm_perf subtracted ms from ns).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from xpuperf.measure.stats import PERCENTILES, latency_summary_ms

NS_PER_MS = 1e6


@dataclass(frozen=True)
class Trace:
    """One request as the harness saw it: when it was submitted and when each of
    its tokens arrived (perf_counter_ns). A server streams chunks of text, a
    token or a few each: then ``token_ns`` are the chunks' arrivals,
    ``tokens`` the count of tokens they held (the usage's, or the tokenizer's)
    and ``sent_ns`` when the client sent the request."""

    submitted_ns: int
    token_ns: tuple[int, ...]
    tokens: int | None = None
    sent_ns: int | None = None

    @property
    def start_ns(self) -> int:
        """Where its latencies count from: its sending, where a client sent it."""
        return self.submitted_ns if self.sent_ns is None else self.sent_ns

    @property
    def generated(self) -> int:
        return len(self.token_ns) if self.tokens is None else self.tokens

    @property
    def ttft_ns(self) -> int:
        return self.token_ns[0] - self.start_ns

    @property
    def tpot_ns(self) -> float | None:
        """None for a one-token request: it has no decode."""
        n = self.generated
        return (self.token_ns[-1] - self.token_ns[0]) / (n - 1) if n > 1 else None

    @property
    def e2e_ns(self) -> int:
        return self.token_ns[-1] - self.start_ns


@dataclass(frozen=True)
class Bounds:
    """A server run is valid when TTFT p99 and TPOT p99 are within these."""

    ttft_ms: float
    tpot_ms: float

    def met_by(self, trace: Trace) -> bool:
        tpot = trace.tpot_ns
        return trace.ttft_ns <= self.ttft_ms * NS_PER_MS and (
            tpot is None or tpot <= self.tpot_ms * NS_PER_MS)


def figures(traces: Sequence[Trace], bounds: Bounds,
            percentiles: Sequence[float] | None = None) -> dict[str, Any]:
    """The run's figures: ttft_ms, tpot_ms, itl_ms, e2e_ms ({p50, p90, p99, mean},
    and p<q> for each of ``percentiles``), requests, generated_tokens, wall_s,
    output_tokens_per_s, requests_per_s, goodput (the share of requests within
    both bounds), goodput_requests_per_s (those requests over the wall time),
    valid (both p99s within the bounds) and client_delay_ms (from each
    request's submission to its sending, as ttft_ms; None where no client sent
    them: the in-tree engines)."""
    if not traces or any(not t.token_ns for t in traces):
        raise ValueError("every request of a run must have produced a token")
    qs = sorted({*PERCENTILES, *(percentiles or ())})
    start = min(t.submitted_ns for t in traces)
    wall_ns = max(t.token_ns[-1] for t in traces) - start
    tokens = sum(t.generated for t in traces)
    tpots = [t.tpot_ns for t in traces if t.tpot_ns is not None]
    itls = np.concatenate([np.diff(t.token_ns) for t in traces])
    good = sum(bounds.met_by(t) for t in traces)
    out: dict[str, Any] = {
        "requests": len(traces), "generated_tokens": tokens, "wall_s": wall_ns / 1e9,
        "ttft_ms": latency_summary_ms([t.ttft_ns for t in traces], qs),
        "tpot_ms": latency_summary_ms(tpots, qs) if tpots else None,
        "itl_ms": latency_summary_ms(itls, qs) if itls.size else None,
        "e2e_ms": latency_summary_ms([t.e2e_ns for t in traces], qs),
        "output_tokens_per_s": tokens * 1e9 / wall_ns if wall_ns > 0 else None,
        "requests_per_s": len(traces) * 1e9 / wall_ns if wall_ns > 0 else None,
        "goodput": good / len(traces),
        "goodput_requests_per_s": good * 1e9 / wall_ns if wall_ns > 0 else None,
        "client_delay_ms": latency_summary_ms([t.sent_ns - t.submitted_ns for t in traces], qs)
        if all(t.sent_ns is not None for t in traces) else None,
    }
    out["valid"] = out["ttft_ms"]["p99"] <= bounds.ttft_ms and (
        out["tpot_ms"] is None or out["tpot_ms"]["p99"] <= bounds.tpot_ms)
    return out


def prefill_mfu(flops: float, ttft_ms: float, peak_flops: float | None) -> float | None:
    """FLOPs of one prefill over its time (TTFT of a lone request) over the peak."""
    if not peak_flops or ttft_ms <= 0:
        return None
    return flops / (ttft_ms / 1e3) / peak_flops


def tpot_floor_ms(weight_bytes: float, bandwidth: float) -> float:
    """The weight-read floor of TPOT: a decode step reads every weight once, at
    best at the memory bandwidth (bytes/s)."""
    return weight_bytes / bandwidth * 1e3


def decode_bandwidth_utilization(bytes_per_step: float, tpot_ms: float,
                                 bandwidth: float | None) -> float | None:
    """Bytes one decode step reads (the weights once, every sequence's KV cache)
    over the step's time (TPOT: each request gets one token a step) over the
    measured memory bandwidth."""
    if not bandwidth or tpot_ms <= 0:
        return None
    return bytes_per_step / (tpot_ms / 1e3) / bandwidth
