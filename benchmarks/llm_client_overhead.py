"""What the OpenAI-compatible client costs (xpuperf.generation.endpoint): 256
streams in flight against a server that answers instantly (no model: each of a
request's tokens one ITL after the last, xpuperf.generation.instant_server, in a
process of its own), for about 10 s, through the same harness the LLM items use.

Prints the client process's CPU time (user + system) as a share of the run's
wall time, the target being <= 5 %: the share of a core that measuring takes
from a server on the same host, and a bound on how late a timestamp can be
taken; the same per chunk, and as a share of a core at the server's nominal
pace (streams / ITL chunks a second: a server that lags its pace stretches the
wall time and flatters the first share); and the ITL the client measured
against the server's pace, whose excess is the client's and the server's lag;
and the socket reads and connections it took. ``--floor`` measures the floor
under the client: the same connections, reads and HTTP framing with the
events' parsing left out (a timestamp an event, no JSON), what any client on
this event loop pays. ``--loop asyncio``: the stdlib's event loop where
the suites would take uvloop's; ``--reads loop``: the event loop reads each
chunk as it arrives, where the suites' C reader would read on a tick (plain
HTTP, where it is built). ``--stall-ms N`` holds the client's loop N ms every
100 ms (a slow callback, a tokenizer's count, a loaded host that runs it late):
the ITL measured against the server's pace then shows whether the client's own
delays move the tokens' times (the C reader stamps each read with its bytes'
arrival; the loop's reads are stamped as they are made). Exits 1 when either
share is over 5 %, or when the ITL p50 it measured is off the server's pace by
more than a tenth (at least 0.5 ms): a client that times a stream's chunks
wrong (two to one read) fails, however cheap.

    python benchmarks/llm_client_overhead.py
    python benchmarks/llm_client_overhead.py --streams 256 --itl-ms 50 --seconds 10
    python benchmarks/llm_client_overhead.py --floor --loop asyncio
    python benchmarks/llm_client_overhead.py --reads loop --stall-ms 20
"""
from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the repository's package, not an installed one


class _Tokenizer:
    """No tokenizer: the instant server sends usage, and prompts are plain text."""

    def load(self) -> None:
        pass


def _cpu_s() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def _unparsed(tokens: int, reply: type) -> Callable[..., None]:
    """The floor's stand-in for Answer._event: a timestamp an event, no JSON."""
    def event(self: Any, data: bytes) -> None:
        if data == b"[DONE]":
            self.done.set_result(reply((), tokens))
        else:
            self.on_piece("", self.at_ns)
    return event


def _stall_every_100_ms(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    """Holds ``loop`` (asleep: no CPU time) ``seconds`` every 100 ms until it stops."""
    def hold() -> None:
        time.sleep(seconds)
        loop.call_later(0.1, hold)
    loop.call_soon_threadsafe(hold)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=256, help="requests in flight")
    ap.add_argument("--itl-ms", type=float, default=50.0,
                    help="the server's gap between tokens (50: 20 tokens/s a user)")
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0, help="the run's length, about")
    ap.add_argument("--api", default="completions", choices=("completions", "chat"))
    ap.add_argument("--floor", action="store_true",
                    help="the reads and the event loop alone: the answers are not parsed")
    ap.add_argument("--loop", choices=("default", "asyncio"), default="default",
                    help="the client's event loop: the suites' (uvloop's where installed) "
                         "or the stdlib's")
    ap.add_argument("--reads", choices=("default", "loop"), default="default",
                    help="who reads the sockets: the suites' (the C reader where built) or "
                         "the event loop, a chunk as it arrives")
    ap.add_argument("--stall-ms", type=float, default=0.0,
                    help="hold the client's event loop this long every 100 ms")
    args = ap.parse_args()

    from backends import hostcpu
    from backends.generation import Request
    from xpuperf.generation import harness
    from xpuperf.generation.endpoint import EndpointEngine
    from xpuperf.generation.metrics import Bounds
    from xpuperf.generation import answer, instant_server, openai_client
    from xpuperf.generation.openai_client import Endpoint

    if args.floor:
        answer.Answer._event = _unparsed(args.output_tokens, answer.Reply)
    if args.loop == "asyncio":
        openai_client.new_loop = asyncio.new_event_loop
    if args.reads == "loop":
        openai_client.READER = None

    with instant_server.in_a_process(args.itl_ms) as url:
        engine = EndpointEngine(Endpoint(url, "ok", args.api, 120), _Tokenizer())
        if args.stall_ms:
            _stall_every_100_ms(engine._loop.loop, args.stall_ms / 1e3)
        per_request_s = args.output_tokens * args.itl_ms / 1e3
        waves = max(1, math.ceil(args.seconds / per_request_s))
        requests = [Request((), args.output_tokens, f"prompt {i}")
                    for i in range(args.streams * waves)]
        harness.closed_loop(engine, requests[:args.streams], args.streams, 60)  # warm-up
        pool = engine.pool
        warm = pool.reads, pool.opened, pool.reused
        cpu, wall = _cpu_s(), time.perf_counter()
        sinks = harness.closed_loop(engine, requests, args.streams, args.seconds * 10 + 60)
        (user, system), wall = np.subtract(_cpu_s(), cpu), time.perf_counter() - wall
        engine.close()
    reads, opened, reused = np.subtract((pool.reads, pool.opened, pool.reused), warm)
    # Its figures are the host's: the same client read 4.4 % of a core on one
    # 2-core host and 11.2 % on another (2026-12-07).
    host = f"{hostcpu.model()}, {os.cpu_count()} cores"
    if args.floor:  # a timestamp an event: the chunks are the server's
        cpu = user + system
        chunks = len(requests) * args.output_tokens
        print(f"floor (no JSON, {engine.loop_kind}, {host}): client CPU {cpu:.2f} s ({user:.2f} "
              f"user, {system:.2f} system) = {cpu / wall:.1%} of {wall:.2f} s wall, "
              f"{cpu / chunks * 1e6:.1f} us a chunk over {chunks} chunks; "
              f"{reads / chunks:.2f} socket reads a chunk, "
              f"{opened} connections opened, {reused} reused")
        return 0
    fig = harness.run_figures(sinks, Bounds(1e9, 1e9))
    chunks = sum(len(s.token_ns) for s in sinks)
    cpu = user + system
    share = cpu / wall
    print(f"{args.streams} streams, {len(requests)} requests of {args.output_tokens} tokens, "
          f"server ITL {args.itl_ms:g} ms ({args.api}), client on {engine.loop_kind}, {host}: "
          f"{wall:.2f} s wall, {chunks} chunks "
          f"({chunks / wall:,.0f}/s)")
    # A server slower than its nominal pace (this one shares the host) stretches
    # the wall time: the share at the nominal pace is the figure to judge.
    nominal = args.streams / (args.itl_ms / 1e3)
    print(f"client CPU {cpu:.2f} s ({user:.2f} user, {system:.2f} system) = {share:.1%} of "
          f"the wall time (target <= 5 %), {cpu / chunks * 1e6:.1f} us a chunk: "
          f"{cpu / chunks * nominal:.1%} of a core at the nominal {nominal:,.0f} chunks/s")
    print(f"{reads / chunks:.2f} socket reads a chunk; {opened} connections opened, "
          f"{reused} reused (warm-up's connections kept alive)")
    itl = fig["itl_ms"]
    held = f" (the loop held {args.stall_ms:g} ms every 100 ms)" if args.stall_ms else ""
    print(f"ITL measured p50 {itl['p50']:.2f} ms, p99 {itl['p99']:.2f} ms against the "
          f"server's {args.itl_ms:g} ms{held}; TTFT p50 {fig['ttft_ms']['p50']:.2f} ms, "
          f"p99 {fig['ttft_ms']['p99']:.2f} ms from the requests' sending, which the "
          f"client's own queue delayed p50 {fig['client_delay_ms']['p50']:.2f} ms, "
          f"p99 {fig['client_delay_ms']['p99']:.2f} ms from their submission")
    timed = abs(itl["p50"] - args.itl_ms) <= max(0.1 * args.itl_ms, 0.5)
    if not timed:
        print(f"ITL p50 {itl['p50']:.2f} ms is off the server's {args.itl_ms:g} ms pace")
    return 0 if max(share, cpu / chunks * nominal) <= 0.05 and timed else 1


if __name__ == "__main__":
    sys.exit(main())
