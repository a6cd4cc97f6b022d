"""Drive a GenerationEngine under a scenario and take every timestamp.

Closed loop (offline, single_stream): ``concurrency`` requests in flight; each
finish submits the next from inside the engine's callback, so an engine that
batches finds the whole next wave queued at once. Server: Poisson or gamma
arrivals at a request rate (or a trace's times), submitted by this thread at
their times whatever the engine is doing. The server search finds the highest valid rate within a time budget.

A multi-turn workload's requests are conversations (``Conversations``): the
closed loop and the arrivals start a conversation where they would send a
request, and each of its later turns is sent as the turn before it finishes,
made from that turn's answer.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from backends.generation import GenerationEngine, Request, TokenSink
from xpuperf.generation.metrics import Bounds, Trace, figures


class EngineError(RuntimeError):
    """The engine failed a request or did not finish the run in time."""


class _Sink(TokenSink):
    def __init__(self, run: "_Run", index: int):
        self.run, self.index = run, index
        self.submitted_ns = 0
        self.sent_ns: int | None = None  # when an engine that is a server's client sent it
        self.token_ns: list[int] = []  # when each token (or piece of text) arrived
        self.tokens: list[int] = []
        self.count: int | None = None  # the tokens an engine that streams text generated
        self.pieces: list[str] = []  # the text an engine that streams text sent

    def token(self, token_id: int) -> None:
        self.token_ns.append(time.perf_counter_ns())
        self.tokens.append(int(token_id))

    def text(self, piece: str, at_ns: int) -> None:
        self.token_ns.append(at_ns)
        self.pieces.append(piece)

    def sent(self, at_ns: int) -> None:
        self.sent_ns = at_ns

    def finish(self, error: BaseException | None = None, tokens: int | None = None) -> None:
        self.count = tokens
        self.run.finished(self, error)

    @property
    def generated(self) -> int:
        return len(self.tokens) if self.count is None else self.count


@dataclass(frozen=True)
class Conversations:
    """Each request of a run is a conversation's first turn, followed by
    ``turns`` - 1 more: ``follow(request, sink, conversation, turn)`` makes turn
    ``turn`` (1, 2, ...) of conversation ``conversation`` (0, 1, ...) from the
    turn before and its answer (the sink's tokens or text)."""

    turns: int
    follow: Callable[[Request, "_Sink", int, int], Request]


class _Run:
    """One run's requests: submits them, collects their sinks, waits for the end.
    With ``conversations``, request ``i * turns + k`` is conversation i's turn k."""

    def __init__(self, engine: GenerationEngine, requests: Sequence[Request],
                 conversations: Conversations | None = None):
        self.engine, self.talks = engine, conversations
        self.turns = conversations.turns if conversations else 1
        self.requests: list[Request | None] = [None] * (len(requests) * self.turns)
        self.requests[::self.turns] = requests
        self.sinks = [_Sink(self, i) for i in range(len(self.requests))]
        self.next = 0  # the next conversation's first request
        self.left = len(self.requests)
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.on_finish: Callable[[], None] = lambda: None  # a conversation ended

    def submit_next(self) -> None:
        with self.lock:
            if self.next >= len(self.requests):
                return
            index = self.next
            self.next += self.turns
        self._submit(index)

    def _submit(self, index: int) -> None:
        sink = self.sinks[index]
        sink.submitted_ns = time.perf_counter_ns()
        self.engine.submit(self.requests[index], sink)

    def finished(self, sink: _Sink, error: BaseException | None) -> None:
        request = self.requests[sink.index]
        want = request.max_new_tokens
        if error is None and sink.count is None and len(sink.tokens) != want:
            error = RuntimeError(f"finished with {len(sink.tokens)} tokens, {want} asked")
        # A server may stop short at an end of sequence it was asked to ignore
        # (not every one knows ignore_eos): its count is recorded, not failed.
        if error is None and sink.count is not None and not (sink.token_ns and sink.count > 0):
            error = RuntimeError("finished without a token")
        turn = sink.index % self.turns
        later = self.turns - 1 - turn  # the conversation's turns after this one
        if error is None and later:
            try:
                self.requests[sink.index + 1] = self.talks.follow(
                    request, sink, sink.index // self.turns, turn + 1)
            except Exception as e:  # noqa: BLE001 - the conversation ends, the run goes on
                error = e
        with self.lock:
            if error is not None:
                self.errors.append(f"request {sink.index}: {type(error).__name__}: {error}"
                                   + (f" (its conversation's {later} later turn(s) not sent)"
                                      if later else ""))
            ended = error is not None or not later
            self.left -= 1 + (later if error is not None else 0)
            last = self.left == 0
        if ended:
            self.on_finish()
        else:
            self._submit(sink.index + 1)
        if last:
            self.done.set()

    def wait(self, timeout_s: float) -> list[_Sink]:
        if not self.done.wait(timeout_s):
            raise EngineError(f"the engine finished {len(self.requests) - self.left} of "
                              f"{len(self.requests)} requests in {timeout_s:g} s")
        if self.errors:
            raise EngineError("; ".join(self.errors[:3]))
        return self.sinks


def closed_loop(engine: GenerationEngine, requests: Sequence[Request], concurrency: int,
                timeout_s: float, conversations: Conversations | None = None) -> list[_Sink]:
    """``concurrency`` requests (or conversations) in flight until all ran
    (offline; 1: single stream)."""
    run = _Run(engine, requests, conversations)
    run.on_finish = run.submit_next
    for _ in range(min(concurrency, len(requests))):
        run.submit_next()
    return run.wait(timeout_s)


def arrivals_ns(count: int, rate: float, seed: int, burstiness: float = 1.0) -> np.ndarray:
    """``count`` arrival times (ns from the first) at ``rate`` per second on
    average: gaps drawn from a gamma distribution of shape ``burstiness`` (1: a
    Poisson process; below 1 burstier, above 1 more even: vLLM's bench serve's
    --burstiness). Seeded: every run of a workload sees the same arrivals."""
    if not rate > 0 or not burstiness > 0:
        raise ValueError(f"arrivals need a rate > 0 and a burstiness > 0, got {rate}, {burstiness}")
    rng = np.random.default_rng(seed)
    # Poisson's gaps drawn as before gamma arrivals existed: a seed's arrivals stay.
    gaps = rng.exponential(1e9 / rate, count) if burstiness == 1 else \
        rng.gamma(burstiness, 1e9 / (rate * burstiness), count)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def at_times(engine: GenerationEngine, requests: Sequence[Request], offsets_ns: Sequence[float],
             timeout_s: float, conversations: Conversations | None = None) -> list[_Sink]:
    """Request (or conversation) i submitted at ``offsets_ns[i]`` after the start,
    by this thread, whatever the engine is doing (server, trace replay)."""
    run = _Run(engine, requests, conversations)
    start = time.perf_counter_ns()
    for arrival in offsets_ns:
        delay = (start + arrival - time.perf_counter_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        run.submit_next()
    return run.wait(timeout_s)


def traces(sinks: Sequence[_Sink]) -> list[Trace]:
    return [Trace(s.submitted_ns, tuple(s.token_ns), s.generated, s.sent_ns) for s in sinks]


def tokens(sinks: Sequence[_Sink]) -> list[list[int]]:
    return [list(s.tokens) for s in sinks]


def texts(sinks: Sequence[_Sink]) -> list[str]:
    """Each request's streamed text (an engine that streams text: a server)."""
    return ["".join(s.pieces) for s in sinks]


def generated(sinks: Sequence[_Sink]) -> int:
    return sum(s.generated for s in sinks)


def short(sinks: Sequence[_Sink]) -> int:
    """Requests that ended before the tokens they asked for (a server's end of sequence)."""
    return sum(s.generated < s.run.requests[s.index].max_new_tokens for s in sinks)


def turn(sinks: Sequence[_Sink], k: int) -> list[_Sink]:
    """The sinks of every conversation's turn ``k`` (0: the first)."""
    return [s for s in sinks if s.index % s.run.turns == k]


def run_figures(sinks: Sequence[_Sink], bounds: Bounds,
                percentiles: Sequence[float] | None = None) -> dict[str, Any]:
    """The run's figures (xpuperf.generation.metrics); of conversations, also each
    turn's TTFT (``ttft_ms_by_turn``, first turn first): a later turn's prompt holds
    the history, which a server's prefix cache need not prefill again."""
    fig = figures(traces(sinks), bounds, percentiles)
    turns = sinks[0].run.turns if sinks else 1
    if turns > 1:
        fig["ttft_ms_by_turn"] = [figures(traces(turn(sinks, k)), bounds, percentiles)["ttft_ms"]
                                  for k in range(turns)]
    return fig


def search(run_at: Callable[[float], dict[str, Any]], start: float, budget_s: float,
           max_trials: int, integer: bool = False, clock: Callable[[], float] = time.monotonic
           ) -> list[tuple[float, dict[str, Any]]]:
    """The highest load (a request rate, or with ``integer`` a concurrency) whose
    run is valid, searched as MLPerf's Server scenario and vLLM's SLA sweep do:
    double from ``start`` while valid (halve while not; a concurrency stops at 1),
    then bisect between the highest valid and the lowest invalid load (a
    concurrency until the two are neighbours), until ``max_trials`` runs or
    ``budget_s`` seconds are spent. Returns every trial's (load, figures)."""
    deadline = clock() + budget_s
    trials: list[tuple[float, dict[str, Any]]] = []
    best, worst = None, None  # highest valid, lowest invalid load
    load: float | None = start
    while load is not None and len(trials) < max_trials and (not trials or clock() < deadline):
        fig = run_at(load)
        trials.append((load, fig))
        if fig["valid"]:
            best = load if best is None else max(best, load)
        else:
            worst = load if worst is None else min(worst, load)
        if best is not None and worst is not None:
            load = ((best + worst) // 2 if worst - best > 1 else None) if integer \
                else (best + worst) / 2
        elif worst is None:
            load = load * 2
        else:
            load = (load // 2 if load > 1 else None) if integer else load / 2
    return trials


def search_rate(run_at: Callable[[float], dict[str, Any]], start: float, budget_s: float,
                max_trials: int, clock: Callable[[], float] = time.monotonic
                ) -> tuple[float | None, list[dict[str, Any]]]:
    """The server scenario's search (``search`` over request rates): the highest
    valid rate (None if no run was valid) and every trial's
    {rate, valid, ttft_p99_ms, tpot_p99_ms, output_tokens_per_s}."""
    trials = search(run_at, start, budget_s, max_trials, clock=clock)
    summary = [{"rate": rate, "valid": fig["valid"], "ttft_p99_ms": fig["ttft_ms"]["p99"],
                "tpot_p99_ms": fig["tpot_ms"]["p99"] if fig["tpot_ms"] else None,
                "output_tokens_per_s": fig["output_tokens_per_s"]} for rate, fig in trials]
    return max((t["rate"] for t in summary if t["valid"]), default=None), summary
