"""A streaming client for OpenAI-compatible servers (vLLM, SGLang, TGI,
TensorRT-LLM, `transformers serve`): ``/v1/completions`` and
``/v1/chat/completions`` with ``stream: true``, on the stdlib's asyncio streams.

One event loop carries every request in flight, so 256 streams cost one thread,
not 256 (benchmarks/llm_serving.py --client-overhead measures what it costs).
Each request opens its own HTTP/1.1 connection: its TTFT then includes the
connect, as a new user's does. A stream is whole when it ends with
``data: [DONE]`` or, for servers that send none (`transformers serve`), ends
cleanly after a choice with a ``finish_reason``. Every way a server can fail a
request (refuses the connection, answers an HTTP error, drops the stream, sends
what is not JSON, stalls) raises EndpointError naming it, within the request's
time limit: a request never hangs.
"""
from __future__ import annotations

import asyncio
import json
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

APIS = ("completions", "chat")
MAX_ERROR_BODY = 2048  # bytes of an HTTP error's body quoted in the message
MAX_LINE = 1 << 20  # a header or SSE line longer than this is not a server's


class EndpointError(RuntimeError):
    """The server failed one request; the message says how."""


@dataclass(frozen=True)
class Endpoint:
    """Where and what to ask: ``url`` is the API's base (http://host:8000/v1),
    ``model`` the served model's name, ``api`` "completions" or "chat",
    ``timeout_s`` each request's limit from connect to its last byte,
    ``ignore_eos``: ask for exactly ``max_tokens`` (vLLM's and SGLang's
    ``ignore_eos`` and ``min_tokens``; a server without them refuses the request)."""

    url: str
    model: str
    api: str = "completions"
    timeout_s: float = 60.0
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--llm-endpoint {self.url!r} is not an http(s) URL: give the API's "
                             f"base, e.g. http://localhost:8000/v1")
        if self.api not in APIS:
            raise ValueError(f"--llm-api {self.api!r}: one of {', '.join(APIS)}")
        if not self.timeout_s > 0:
            raise ValueError(f"--llm-request-timeout must be > 0 seconds, got {self.timeout_s}")

    @property
    def path(self) -> str:
        base = urlsplit(self.url).path.rstrip("/")
        return f"{base}/{'chat/completions' if self.api == 'chat' else 'completions'}"

    def body(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        """Greedy, with the token counts in a last chunk (``stream_options``)."""
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}
        if self.ignore_eos:
            body.update(ignore_eos=True, min_tokens=max_tokens)
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body


@dataclass(frozen=True)
class Reply:
    """One streamed answer: its text (``pieces``: the chunks' texts, one an
    arrival), and the server's own count of the tokens
    it generated (the usage chunk's ``completion_tokens``), None when it sent none."""

    pieces: tuple[str, ...]
    completion_tokens: int | None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class LoopThread:
    """An asyncio event loop running in a daemon thread of its own until ``close``,
    which cancels what still runs there (a stalled stream, say)."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)
        self._thread.start()

    def submit(self, coroutine: Any) -> "asyncio.Future[Any]":
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.submit(self._cancel_all()).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def stream(endpoint: Endpoint, prompt: str, max_tokens: int,
                 on_piece: Callable[[str], None]) -> Reply:
    """Ask ``endpoint`` for ``prompt``'s completion; ``on_piece(text)`` is called
    as each chunk of it arrives."""
    try:
        async with asyncio.timeout(endpoint.timeout_s):
            return await _stream(endpoint, prompt, max_tokens, on_piece)
    except TimeoutError:
        raise EndpointError(f"no complete answer within {endpoint.timeout_s:g} s (the server "
                            f"stalled or is too slow: raise --llm-request-timeout)") from None
    except (ConnectionError, OSError) as e:
        raise EndpointError(f"connection to {endpoint.url} failed: "
                            f"{type(e).__name__}: {e}") from None


async def _stream(endpoint: Endpoint, prompt: str, max_tokens: int,
                  on_piece: Callable[[str], None]) -> Reply:
    parts = urlsplit(endpoint.url)
    https = parts.scheme == "https"
    host, port = parts.hostname, parts.port or (443 if https else 80)
    reader, writer = await asyncio.open_connection(
        host, port, ssl=ssl.create_default_context() if https else None, limit=MAX_LINE)
    try:
        payload = json.dumps(endpoint.body(prompt, max_tokens)).encode()
        writer.write(f"POST {endpoint.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                     + payload)
        await writer.drain()
        status, headers = await _head(reader)
        body = _body(reader, headers)
        if status != 200:
            text = b""
            async for data in body:
                text += data
                if len(text) >= MAX_ERROR_BODY:
                    break
            raise EndpointError(f"HTTP {status} from {endpoint.path}: "
                                f"{text[:MAX_ERROR_BODY].decode('utf-8', 'replace').strip()}")
        return await _events(body, endpoint.api, on_piece)
    finally:
        writer.close()


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = await reader.readline()
    fields = line.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise EndpointError(f"not an HTTP response: {line[:200]!r}")
    headers = {}
    while True:
        line = await reader.readline()
        if not line:
            raise EndpointError("the connection closed inside the response's headers")
        if line in (b"\r\n", b"\n"):
            return int(fields[1]), headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]):
    """The body's bytes as they arrive, chunked transfer encoding undone."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                raise EndpointError("the stream ended mid-response" if not size_line else
                                    f"a malformed chunk size {size_line[:40]!r}") from None
            if size == 0:
                return
            try:
                data = await reader.readexactly(size + 2)
            except asyncio.IncompleteReadError:
                raise EndpointError("the stream ended mid-response (inside a chunk)") from None
            yield data[:-2]
    else:
        left = int(headers["content-length"]) if "content-length" in headers else None
        while left is None or left > 0:
            data = await reader.read(65536 if left is None else min(left, 65536))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data


async def _events(body: Any, api: str, on_piece: Callable[[str], None]) -> Reply:
    """Server-sent events to pieces of text, until ``data: [DONE]`` or the end."""
    buffer, pieces, usage, finished = b"", [], None, False
    async for data in body:
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        if len(buffer) > MAX_LINE:
            raise EndpointError(f"an event longer than {MAX_LINE} bytes")
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event: and id: fields
            data_ = line[5:].strip()
            if data_ == b"[DONE]":
                return Reply(tuple(pieces), usage)
            try:
                event = json.loads(data_)
            except ValueError:
                raise EndpointError(f"an event that is not JSON: {data_[:200]!r}") from None
            if not isinstance(event, dict):
                raise EndpointError(f"an event that is not a JSON object: {data_[:200]!r}")
            if "error" in event:
                raise EndpointError(f"the server reported an error mid-stream: {event['error']}")
            choices = event.get("choices")
            if choices:  # none: the usage chunk
                choice = choices[0]
                delta = choice.get("delta") or {}
                # Servers send a chunk a token, its text possibly empty (a partial
                # character, the end of sequence): each is an arrival, as vLLM's
                # bench counts them, but a chat's first chunk, the role's.
                if api != "chat" or "role" not in delta:
                    piece = (delta.get("content") if api == "chat" else choice.get("text")) or ""
                    pieces.append(piece)
                    on_piece(piece)
                finished = finished or bool(choice.get("finish_reason"))
            if event.get("usage"):
                usage = event["usage"].get("completion_tokens")
    if finished:
        return Reply(tuple(pieces), usage)
    raise EndpointError(f"the stream ended before its finish_reason or data: [DONE] "
                        f"(after {len(pieces)} chunks)")
