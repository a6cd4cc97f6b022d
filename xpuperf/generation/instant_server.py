"""An OpenAI-compatible server with no model: it streams ``max_tokens`` pieces
of text, one every ``itl_s``, at once. What it is for: measuring the client's
own cost (benchmarks/llm_serving.py --client-overhead), and the ways a server
fails a request, for the selftests: the requested model's name picks one.

    ok          the answer, a usage chunk (its cached_tokens: the words the prompt
                shares at its start with the prompt before: a prefix cache of one
                prompt), data: [DONE]
    no_usage    the answer and [DONE], no usage (the tokenizer counts)
    drop        two pieces, then the connection closes mid-stream
    malformed   one piece, then an event that is not JSON
    bad_choices one piece, then an event whose choices are not JSON objects
    bad_usage   the answer, then a usage whose count is not a number
    stall       one piece, then nothing until the client gives up
    error_event one piece, then an error event mid-stream (as vLLM sends one),
                then nothing until the client gives up
    error       HTTP 500 with a JSON error body

``api_key``: requests without it as their bearer token are refused (HTTP 401,
as vLLM's ``--api-key`` refuses them). ``tls``: served over HTTPS with that
context. ``last_body``: the last request's JSON.

Connections are kept alive, as real servers keep them (``connections`` counts
those accepted): ``idle_s`` closes one idle that long after an answer
(uvicorn's keep-alive timeout); ``requests_per_connection`` closes one unanswered when a request past
that many arrives (a server's idle timer firing as the request comes in).

    python -m xpuperf.generation.instant_server --port 8000 --itl-ms 20
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from xpuperf.generation.openai_client import LoopThread

MODES = ("ok", "no_usage", "drop", "malformed", "bad_choices", "bad_usage", "stall", "error_event",
         "error")
MAX_BODY = 1 << 20


class InstantServer:
    """Serves on 127.0.0.1:``port`` (0: a free one, then ``port`` says which)
    from an event loop in a thread of its own, until ``close``."""

    def __init__(self, port: int = 0, itl_s: float = 0.0, idle_s: float | None = None,
                 requests_per_connection: int | None = None, api_key: str | None = None,
                 tls: ssl.SSLContext | None = None):
        self.itl_s, self.idle_s, self.api_key, self.tls = itl_s, idle_s, api_key, tls
        self.requests_per_connection = requests_per_connection
        self.connections = 0
        self.last_body: dict[str, Any] | None = None
        self._last_prompt: list[str] = []  # the words of the prompt answered last
        self._handlers: set[asyncio.Task] = set()
        self._loop = LoopThread("instant OpenAI server")
        self._server = self._loop.submit(
            asyncio.start_server(self._serve, "127.0.0.1", port, backlog=1024, ssl=tls)).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self._loop.loop.call_soon_threadsafe(self._server.close)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio holds a handler's task weakly once its client has gone: a
        # stalled one would be collected mid-await without this reference.
        task = asyncio.current_task()
        self._handlers.add(task)
        self.connections += 1
        served = 0
        try:
            # Until the client closes, idles past idle_s after an answer (not
            # before its first request: a loaded host may be slow to read it),
            # or an answer ends mid-way.
            while (request := await asyncio.wait_for(
                    _request(reader), self.idle_s if served else None)) is not None:
                served += 1
                if self.requests_per_connection is not None and served > self.requests_per_connection:
                    break
                authorization, self.last_body = request
                if self.api_key is not None and authorization != f"Bearer {self.api_key}":
                    await _error(writer, "401 Unauthorized", "a missing or wrong API key")
                elif not await self._answer(self.last_body, writer):
                    break
        except (ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.CancelledError,
                TimeoutError):
            pass  # the client went away, sent nonsense, idled, or the server closes
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        """Whether the answer was whole (the connection may carry another)."""
        mode = body.get("model", "ok")
        if mode == "error" or mode not in MODES:
            await _error(writer, "500 Internal Server Error", f"model {mode!r}: one of {MODES}")
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chat = "messages" in body
        prompt = " ".join(m.get("content", "") for m in body["messages"]) if chat \
            else str(body.get("prompt", ""))
        cached = self._cached(prompt.split())
        tokens = int(body.get("max_tokens") or 16)
        if chat:  # a chat stream opens with the role, no token yet (as vLLM's does)
            writer.write(_event({"choices": [{"index": 0, "delta": {"role": "assistant",
                                                                      "content": ""}}]}))
        for i in range(tokens):
            if mode == "drop" and i == 2:
                return False
            if mode in ("malformed", "bad_choices") and i == 1:
                writer.write(_chunk(b"data: {\"choices\": [\r\n\r\n") if mode == "malformed"
                             else _event({"choices": [1]}))
                await writer.drain()
                return False
            if mode == "error_event" and i == 1:
                writer.write(_event({"error": {"message": "out of KV cache", "code": 500}}))
                await writer.drain()
            if mode in ("stall", "error_event") and i == 1:
                await asyncio.Event().wait()
            choice = {"index": 0, "finish_reason": "length" if i == tokens - 1 else None,
                      **({"delta": {"content": f" t{i}"}} if chat else {"text": f" t{i}"})}
            writer.write(_event({"choices": [choice]}))
            await writer.drain()
            if self.itl_s:
                await asyncio.sleep(self.itl_s)
        if mode != "no_usage":
            count = "many" if mode == "bad_usage" else tokens
            writer.write(_event({"choices": [], "usage": {
                "prompt_tokens": 0, "completion_tokens": count, "total_tokens": count,
                "prompt_tokens_details": {"cached_tokens": cached}}}))
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True

    def _cached(self, words: list[str]) -> int:
        """How many of ``words`` begin the last prompt too (then this one is last)."""
        shared = next((i for i, (a, b) in enumerate(zip(words, self._last_prompt)) if a != b),
                      min(len(words), len(self._last_prompt)))
        self._last_prompt = words
        return shared


async def _request(reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]] | None:
    """The next request's Authorization header ("" without one) and JSON body;
    None where the client closed the connection."""
    if not await reader.readline():  # the request line: every path answers the same
        return None
    length, authorization = 0, ""
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "authorization":
            authorization = value.strip()
    if not 0 < length <= MAX_BODY:
        raise ValueError(f"a body of {length} bytes")
    return authorization, json.loads(await reader.readexactly(length))


async def _error(writer: asyncio.StreamWriter, status: str, message: str) -> None:
    """An HTTP error with OpenAI's JSON error body."""
    payload = json.dumps({"error": {"message": message}})
    writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n{payload}".encode())
    await writer.drain()


def _event(event: dict[str, Any]) -> bytes:
    return _chunk(b"data: " + json.dumps(event).encode() + b"\n\n")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@contextlib.contextmanager
def in_a_process(itl_ms: float) -> Iterator[str]:
    """The server in a process of its own, so that its CPU time is not the
    measured client's (the benchmarks): its URL, until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "xpuperf.generation.instant_server",
                               "--port", str(port), "--itl-ms", str(itl_ms)],
                              cwd=Path(__file__).resolve().parents[2],
                              stdout=subprocess.PIPE, text=True)
    try:
        server.stdout.readline()  # "serving on ...": it listens
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--itl-ms", type=float, default=0.0, help="the gap between pieces")
    args = p.parse_args()
    server = InstantServer(args.port, args.itl_ms / 1e3)
    print(f"serving on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
