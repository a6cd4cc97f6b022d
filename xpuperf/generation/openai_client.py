"""A streaming client for OpenAI-compatible servers (vLLM, SGLang, TGI,
TensorRT-LLM, `transformers serve`): ``/v1/completions`` and
``/v1/chat/completions`` with ``stream: true``, on asyncio (uvloop's event
loop where it is installed: ``new_loop``).

One event loop carries every request in flight, so 256 streams cost one thread,
not 256. Where the C reader is built (xpuperf/generation/_reader.c, ``READER``),
it reads the plain-HTTP connections, all that have bytes in one call, each
read stamped with the kernel's time of its bytes' arrival: a token's time is
not moved by the client's own delays (a busy loop, a loaded host). It reads as
soon as a socket has bytes, then once a tick while bytes keep coming, so that
256 streams wake the loop 200 times a second, not once a chunk
(benchmarks/llm_client_overhead.py measures the CPU it takes); the tick is at
most ``TICK_S`` and half the shortest gap between two chunks of a stream, so
that no read holds two (``tick_s``). Elsewhere (TLS, no compiler) the loop
reads each chunk as it arrives, stamped as it is read.
Connections are kept alive and reused (``Pool``), as vLLM's and SGLang's
benchmark clients do: a request's TTFT includes a connect only where no idle
connection was at hand. A stream is whole when it ends with
``data: [DONE]`` or, for servers that send none (`transformers serve`), ends
cleanly after a choice with a ``finish_reason``. Every way a server can fail a
request (refuses the connection, answers an HTTP error, drops the stream, sends
what is not JSON, stalls) raises EndpointError naming it, within the request's
time limit: a request never hangs. A kept-alive connection the server closed
meanwhile (its idle timeout) is no failure: the request is sent again, once,
on a new connection, where nothing of its answer had arrived.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import math
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

APIS = ("completions", "chat")
MAX_ERROR_BODY = 2048  # bytes of an HTTP error's body quoted in the message
MAX_LINE = 1 << 20  # a header or SSE line longer than this is not a server's
MAX_IDLE = 256  # idle connections kept per server: one a stream at the suite's concurrency
READ_SIZE = 16384
# The C reader's reads are at most this far apart while bytes keep coming: an
# answer's end is seen up to this late (its chunks' times are their arrivals').
# A read is a wake of the loop (30 us of CPU on the 2-core host). Two chunks of
# one stream inside one tick would share the later's time: the tick is half the
# shortest gap between two chunks of a stream seen in this GAP_WINDOW_S or the
# last (``tick_s``), and where that is under a millisecond (the event loop's
# timer resolution) the reader is read each time a socket has bytes.
TICK_S = 0.005
GAP_WINDOW_S = 1.0
_JSON = json.JSONDecoder().decode
# One chunk of a chunked body (its size, hex) that is one server-sent event of
# one data line: _Response.feed's fast path, a third of the parse's time a chunk
# (benchmarks/llm_client_overhead.py).
_ONE_EVENT = re.compile(rb"([0-9a-fA-F]{1,8})\r\n(data:([^\n]*)\n\n)\r\n")


try:
    from xpuperf.generation._reader import Reader as READER
except ImportError:  # not built (a checkout run without pip install, not Linux): the loop reads
    READER = None


def decode_stdlib(data: bytes) -> Any:
    """An event's JSON by the standard library: where orjson is not installed."""
    return _JSON(data.decode())  # from str: json.loads(bytes) sniffs the encoding


try:  # extra `client`: the event's JSON from its bytes, in a third of json's time
    from orjson import loads as decode
except ImportError:
    decode = decode_stdlib


def tick_s(shortest_gap_ns: float) -> float:
    """The C reader's tick where the shortest gap between two chunks of one
    stream is ``shortest_gap_ns``: half of it, at most TICK_S; 0 (a read as a
    socket has bytes) under a millisecond."""
    tick = min(TICK_S, shortest_gap_ns / 2e9)
    return tick if tick >= 0.001 else 0.0


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

    def body(self, prompt: str, max_tokens: int, history: tuple[str, ...] = ()) -> dict[str, Any]:
        """Greedy, with the token counts in a last chunk (``stream_options``);
        ``history``: a conversation's earlier messages, user's and assistant's in
        turn (chat: as messages; completions: the text before ``prompt``)."""
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}
        if self.ignore_eos:
            body.update(ignore_eos=True, min_tokens=max_tokens)
        if self.api == "chat":
            body["messages"] = [{"role": ("user", "assistant")[k % 2], "content": text}
                                for k, text in enumerate((*history, prompt))]
        else:
            body["prompt"] = "".join(history) + prompt
        return body


@dataclass(frozen=True)
class Reply:
    """One streamed answer: its text (``pieces``: the chunks' texts, one an
    arrival), and the server's own count of the tokens it generated (the usage
    chunk's ``completion_tokens``), None when it sent none; ``cached_tokens``:
    the prompt tokens its prefix cache held (``prompt_tokens_details``), None
    when it did not say."""

    pieces: tuple[str, ...]
    completion_tokens: int | None
    cached_tokens: int | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def reads_in_c(url: str) -> bool:
    """Whether the C reader reads the answers from ``url`` (plain HTTP, where it is built)."""
    return READER is not None and urlsplit(url).scheme == "http"


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (the ``client`` extra): its reads
    and callbacks, in C, take about a sixth of the client's CPU a chunk off
    (benchmarks/llm_client_overhead.py); else the stdlib's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """An event loop (``new_loop``'s) running in a daemon thread of its own until
    ``close``, which cancels what still runs there (a stalled stream, say);
    ``kind`` names it: "uvloop" or "asyncio"."""

    def __init__(self, name: str):
        self.loop = new_loop()
        self.kind = type(self.loop).__module__.split(".")[0]
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)
        self._tasks: set[asyncio.Task[Any]] = set()  # start's, until they end
        self._thread.start()

    def submit(self, coroutine: Any) -> "concurrent.futures.Future[Any]":
        """Runs ``coroutine`` on the loop; called from another thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def start(self, coroutine: Any) -> None:
        """Runs ``coroutine`` on the loop, from any thread: from the loop's own (a
        closed loop's next request, submitted as the last one ends) as a task at
        once, without the wake of the loop and the thread-safe future that
        ``submit`` takes (a tenth of a request's cost on the client)."""
        if threading.get_ident() != self._thread.ident:
            self.submit(coroutine)
            return
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)  # the loop keeps a weak reference only
        task.add_done_callback(self._tasks.discard)

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


async def stream(endpoint: Endpoint, pool: "Pool", prompt: str, max_tokens: int,
                 on_piece: Callable[[str, int], None], history: tuple[str, ...] = ()) -> Reply:
    """Ask ``endpoint`` for ``prompt``'s completion (after a conversation's
    ``history``, as Endpoint.body) over one of ``pool``'s connections;
    ``on_piece(text, at_ns)`` is called for each chunk of it: its text and when
    it arrived (time.perf_counter_ns)."""
    try:
        async with asyncio.timeout(endpoint.timeout_s):
            return await _stream(endpoint, pool, prompt, max_tokens, on_piece, history)
    except TimeoutError:
        raise EndpointError(f"no complete answer within {endpoint.timeout_s:g} s (the server "
                            f"stalled or is too slow: raise --llm-request-timeout)") from None
    except (ConnectionError, OSError) as e:
        raise EndpointError(f"connection to {endpoint.url} failed: "
                            f"{type(e).__name__}: {e}") from None


async def _stream(endpoint: Endpoint, pool: "Pool", prompt: str, max_tokens: int,
                  on_piece: Callable[[str, int], None], history: tuple[str, ...]) -> Reply:
    parts = urlsplit(endpoint.url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    payload = json.dumps(endpoint.body(prompt, max_tokens, history)).encode()
    request = (f"POST {endpoint.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    loop = asyncio.get_running_loop()
    fresh = False
    while True:
        connection, reused = await pool.connection(host, port, parts.scheme == "https", fresh)
        response = _Response(endpoint, on_piece, loop.create_future(), pool)
        connection.send(request, response)
        try:
            return await response.done
        except EndpointError:
            # The server closed an idle connection as the request went out: the
            # one case a request is sent again, once, on a new connection.
            if not (reused and response.received == 0 and connection.lost):
                raise
            fresh = True
        finally:
            connection.settle(response)


class Pool:
    """Kept-alive connections of one event loop, per server: at most
    ``max_idle`` idle ones each (beyond them a connection is closed on its
    answer's end). ``opened``, ``reused`` and ``reads`` count connects, reuses
    and the socket reads of every connection (benchmarks/llm_client_overhead.py
    prints them). ``reader``: the C reader that reads its plain-HTTP
    connections (READER's, started with the first), None where the loop reads."""

    def __init__(self, max_idle: int = MAX_IDLE):
        if max_idle < 0:
            raise ValueError(f"a pool's max_idle must be >= 0, got {max_idle}")
        self.max_idle = max_idle
        self.opened = self.reused = self.reads = 0
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None  # made once: a context loads the CA store
        self.reader: Any = None
        self._reading: dict[int, _Connection] = {}  # the reader's connections by key
        self._keys = itertools.count()
        # The shortest gap between two chunks of one stream (ns, their arrivals)
        # in this window (lowered by _Response) and the last: the first window
        # reads as bytes arrive, none measured yet.
        self.shortest_gap_ns = math.inf
        self._shortest_before = 0.0
        self._window_end = 0.0

    async def connection(self, host: str, port: int, tls: bool, fresh: bool = False
                         ) -> tuple["_Connection", bool]:
        """An idle connection to the server (True), or a new one (False; always
        where ``fresh``)."""
        idle = None if fresh else self._idle.get((host, port, tls))
        if idle:
            self.take_reads()  # a server's close of an idle one, read meanwhile
        while idle:
            connection = idle.pop()
            if not connection.lost:  # one the server closed while it idled is dropped
                self.reused += 1
                return connection, True
        if tls and self._tls is None:
            self._tls = ssl.create_default_context()
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: _Connection(self, (host, port, tls)), host, port,
            ssl=self._tls if tls else None)
        connection.read_in_c()
        self.opened += 1
        return connection, False

    def close(self) -> None:
        """Closes every connection and the reader; call it on the pool's loop."""
        for connection in list(self._open):
            connection.close()
        if self.reader is not None:
            asyncio.get_running_loop().remove_reader(self.reader.fileno())
            self.reader.close()
            self.reader = None  # a tick still to come finds none to arm

    def register(self, connection: "_Connection", fd: int) -> tuple[int, int]:
        """The reader reads ``connection``'s socket from now on: its key, and the
        reader's own descriptor of it, which ``unregister`` closes."""
        if self.reader is None:
            self.reader = READER()
            self._arm()
        key = next(self._keys)
        own = self.reader.add(fd, key)
        self._reading[key] = connection
        return key, own

    def unregister(self, key: int, own: int) -> None:
        """No more reads of a connection that ends."""
        del self._reading[key]
        self.reader.remove(own)

    def _arm(self) -> None:
        """The loop reads as soon as one of the reader's sockets has bytes."""
        if self.reader is not None:
            asyncio.get_running_loop().add_reader(self.reader.fileno(), self._readable)

    def _readable(self) -> None:
        asyncio.get_running_loop().remove_reader(self.reader.fileno())
        self._tick()

    def _tick(self) -> None:
        """Reads, then again a tick later while bytes keep coming: a tick that
        finds none, or a tick of 0, arms the loop's wake on the next bytes
        instead. A tick that reads is one wake of the loop, not two (a timer to
        arm, then the wake on what is there: benchmarks/llm_client_overhead.py)."""
        if self.reader is None:  # closed meanwhile
            return
        tick = self._tick_s() if self.take_reads() else 0.0
        if tick:
            asyncio.get_running_loop().call_later(tick, self._tick)
        else:
            self._arm()

    def _tick_s(self) -> float:
        """The next tick, from the gaps of this window and the last (tick_s)."""
        now = asyncio.get_running_loop().time()
        if now >= self._window_end:
            self._shortest_before, self.shortest_gap_ns = self.shortest_gap_ns, math.inf
            self._window_end = now + GAP_WINDOW_S
        return tick_s(min(self._shortest_before, self.shortest_gap_ns))

    def take_reads(self) -> int:
        """Hands each connection of the reader's what it read of it; how many
        reads that was."""
        if self.reader is None:
            return 0
        reads = self.reader.read()
        for key, at_ns, data in reads:
            connection = self._reading.get(key)
            if connection is None:  # closed by an earlier read of this batch
                continue
            self.reads += 1
            if data.__class__ is bytes and data:
                connection.received(data, at_ns)
            else:  # b"": the server closed it; an int: the read failed (errno)
                connection.ended(OSError(data, os.strerror(data)) if data else None)
        return len(reads)

    def _idled(self, connection: "_Connection") -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) < self.max_idle:
            idle.append(connection)
        else:
            connection.close()

    def _gone(self, connection: "_Connection") -> None:
        self._open.discard(connection)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)


class _Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection, its answers parsed as their bytes arrive (no
    coroutine is woken per chunk: what keeps 256 streams cheap): read by the
    pool's C reader where it is built and the connection is plain HTTP (the
    loop's own reading paused), else by the loop, into a buffer of its own (a
    plain Protocol is handed a fresh 256 KiB bytes object a read, which the
    allocator maps and unmaps: two system calls a chunk). Back to the pool's
    idle ones when an answer's body has ended and the server keeps the
    connection open."""

    def __init__(self, pool: Pool, key: tuple[str, int, bool]):
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.response: _Response | None = None  # the answer being read
        self.lost = False
        self.read = memoryview(bytearray(READ_SIZE))
        self.reader_key: int | None = None  # the pool's C reader reads it: its key, descriptor
        self.reader_fd = -1
        self._ended: Exception | None = None  # why the C reader's reads ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool._open.add(self)

    def read_in_c(self) -> None:
        """The pool's C reader reads a plain-HTTP connection from now on, not the
        loop (once connected: uvloop starts its reading after connection_made)."""
        sock = self.transport.get_extra_info("socket")
        if READER is not None and not self.key[2] and sock is not None:  # as reads_in_c
            self.transport.pause_reading()
            self.reader_key, self.reader_fd = self.pool.register(self, sock.fileno())

    def send(self, request: bytes, response: "_Response") -> None:
        self.response = response
        self.transport.write(request)

    def settle(self, response: "_Response") -> None:
        """After ``response``'s request ended: a failed or cancelled one's
        connection is closed (its bytes are in an unknown state); one answered
        before its body's end (the last chunk after ``data: [DONE]``) is left to
        go idle when that end arrives."""
        if self.response is response and (response.done.cancelled()
                                          or response.done.exception() is not None):
            self.close()

    def close(self) -> None:
        self.response = None
        self._unregister()
        self.transport.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.read

    def buffer_updated(self, nbytes: int) -> None:
        self.pool.reads += 1
        self.received(self.read[:nbytes], time.perf_counter_ns())

    def received(self, data: memoryview | bytes, at_ns: int) -> None:
        """``data`` was read at ``at_ns`` (time.perf_counter_ns)."""
        response = self.response
        if response is None:  # bytes no request asked for: not a connection to reuse
            self.close()
            return
        response.feed(data, at_ns)
        if response.whole:
            self.response = None
            if response.keep_alive:
                self.pool._idled(self)
            else:
                self.close()
        elif response.failed:
            self.close()

    def ended(self, exc: Exception | None) -> None:
        """The C reader read the server's close (None) or a failed read: lost now,
        not at connection_lost, which the loop calls later (an idle connection
        is not to be taken meanwhile)."""
        self.lost, self._ended = True, exc
        self._unregister()
        self.transport.close()

    def _unregister(self) -> None:
        if self.reader_key is not None:
            self.pool.unregister(self.reader_key, self.reader_fd)
            self.reader_key = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._unregister()
        self.pool._gone(self)
        if self.response is not None:
            self.response.lost(exc or self._ended)


class _Response:
    """One answer, parsed as its connection hands it bytes: the status and
    headers, the body's framing (chunked, a length, or until the connection
    closes), then server-sent events, each handed on at once. ``done`` holds
    the Reply (from ``data: [DONE]`` or the body's end); ``whole`` says the
    body has ended, ``keep_alive`` that the connection may carry another."""

    def __init__(self, endpoint: Endpoint, on_piece: Callable[[str, int], None],
                 done: "asyncio.Future[Reply]", pool: "Pool"):
        self.endpoint, self.on_piece, self.done, self.pool = endpoint, on_piece, done, pool
        self.received = 0  # bytes of the answer read
        self.buffer = b""  # received, not yet parsed
        self.status: int | None = None
        self.framing = ""  # "chunked", "length", "eof"
        self.left = 0  # "length": body bytes to come; "chunked": of the current chunk, 0: a size next
        self.events = b""  # body bytes of an event not yet whole
        self.error_body = b""
        self.pieces: list[str] = []
        self.usage: int | None = None
        self.cached: int | None = None  # the usage's prompt_tokens_details.cached_tokens
        self.finished = False  # a choice with a finish_reason was seen
        self.whole = False
        self.keep_alive = False
        self.failed = False  # its bytes broke the protocol: the connection is not to be reused
        self.at_ns = 0  # when the bytes being parsed were read
        self.piece_ns = 0  # when the last chunk handed on was

    def feed(self, data: memoryview | bytes, at_ns: int) -> None:
        """``data``, read at ``at_ns``: each chunk it completes is handed on with that time."""
        self.at_ns = at_ns
        self.received += len(data)
        try:
            # A server's usual read: one whole chunk of the body holding one whole
            # event (a token's), taken in one match; anything else (split reads,
            # several events, comments) goes through the framing below, as all did.
            if (self.status == 200 and self.framing == "chunked"
                    and not (self.left or self.buffer or self.events)
                    and (one := _ONE_EVENT.fullmatch(data)) and int(one[1], 16) == len(one[2])):
                if not self.done.done():
                    self._event(one[3].strip())
                return
            self.buffer += data
            if self.status is None:
                self._head()
            if self.status is not None:
                self._body()
        except Exception as e:  # noqa: BLE001 - a server's bytes fail this answer, never the reads
            self.failed = True
            if not self.done.done():
                self.done.set_exception(e if isinstance(e, EndpointError) else EndpointError(
                    f"an answer the client cannot read: {type(e).__name__}: {e}"))

    def lost(self, exc: Exception | None) -> None:
        """The connection closed (``exc``: why, None: the server closed it)."""
        if self.done.done():
            return
        if self.status is not None and self.framing == "eof":
            try:
                self._end()
                return
            except EndpointError as e:
                self.done.set_exception(e)
                return
        where = "inside the response's headers" if self.status is None else "mid-response"
        self.done.set_exception(EndpointError(
            f"the stream ended {where}" + (f": {exc}" if exc else "")))

    def _head(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            self._bounded("the response's headers")
            return
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        self.buffer = self.buffer[end + 4:]
        fields = lines[0].split(None, 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise EndpointError(f"not an HTTP response: {lines[0][:200]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.status = int(fields[1])
        self.keep_alive = headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.framing = "chunked"
        elif "content-length" in headers:
            self.framing, self.left = "length", int(headers["content-length"])
        else:
            self.framing, self.keep_alive = "eof", False

    def _body(self) -> None:
        """Undo the framing of what arrived; the content goes to ``_content``."""
        if self.framing == "eof":
            data, self.buffer = self.buffer, b""
            self._content(data)
        elif self.framing == "length":
            data, self.buffer = self.buffer[:self.left], self.buffer[self.left:]
            self.left -= len(data)
            self._content(data)
            if self.left == 0:
                self._end()
        else:
            while not self.whole:  # on past data: [DONE], to the body's end
                if self.left == 0:  # a chunk's size line next
                    end = self.buffer.find(b"\r\n")
                    if end < 0:
                        self._bounded("a chunk's size line")
                        return
                    try:
                        size = int(self.buffer[:end].split(b";")[0], 16)
                    except ValueError:
                        raise EndpointError(f"a malformed chunk size "
                                            f"{self.buffer[:min(end, 40)]!r}") from None
                    if size == 0:  # the last chunk: the body ends with the trailers' blank line
                        if self.buffer.find(b"\r\n\r\n", end) >= 0:
                            self._end()
                        else:
                            self._bounded("the body's trailers")
                        return
                    self.buffer, self.left = self.buffer[end + 2:], size + 2  # with its CRLF
                # A chunk's bytes are content as they arrive, not kept until the
                # chunk is whole (its size is the server's word: up to 4 GiB).
                if self.left > 2 and self.buffer:
                    data = self.buffer[:self.left - 2]
                    self.buffer, self.left = self.buffer[len(data):], self.left - len(data)
                    self._content(data)
                if len(self.buffer) < self.left:
                    return
                self.buffer, self.left = self.buffer[self.left:], 0  # the chunk's CRLF

    def _bounded(self, what: str) -> None:
        """``what`` is still to end in the buffer: no longer than a server's."""
        if len(self.buffer) > MAX_LINE:
            raise EndpointError(f"{what} longer than {MAX_LINE} bytes")

    def _content(self, data: bytes) -> None:
        if self.status != 200:
            self.error_body += data
            if len(self.error_body) >= MAX_ERROR_BODY:
                self._end(whole=False)
            return
        self.events += data
        *lines, self.events = self.events.split(b"\n")
        if len(self.events) > MAX_LINE:
            raise EndpointError(f"an event longer than {MAX_LINE} bytes")
        for line in lines:
            if line.startswith(b"data:") and not self.done.done():
                self._event(line[5:].strip())

    def _event(self, data: bytes) -> None:
        if data == b"[DONE]":
            self.done.set_result(Reply(tuple(self.pieces), self.usage, self.cached))
            return
        try:
            event = decode(data)
        except (ValueError, RecursionError):  # the stdlib's answer to deep nesting
            raise EndpointError(f"an event that is not JSON: {data[:200]!r}") from None
        if not isinstance(event, dict):
            raise EndpointError(f"an event that is not a JSON object: {data[:200]!r}")
        if "error" in event:
            raise EndpointError(f"the server reported an error mid-stream: {event['error']}")
        choices = event.get("choices")
        if choices:  # none: the usage chunk
            choice = choices[0] if isinstance(choices, list) else None
            delta = (choice.get("delta") or {}) if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                raise EndpointError(f"an event whose choices are not JSON objects: {data[:200]!r}")
            # Servers send a chunk a token, its text possibly empty (a partial
            # character, the end of sequence): each is an arrival, as vLLM's bench
            # counts them, but a chat's first chunk, the role's.
            if self.endpoint.api != "chat" or "role" not in delta:
                piece = (delta.get("content") if self.endpoint.api == "chat"
                         else choice.get("text")) or ""
                if not isinstance(piece, str):
                    raise EndpointError(f"an event whose text is not a string: {data[:200]!r}")
                self.pieces.append(piece)
                self.on_piece(piece, self.at_ns)
                # The gap from the last chunk, for the C reader's tick; 0 where
                # both came in one read (the client late, or sent as one): no gap
                # measured. The first's, from 0, is longer than any.
                gap = self.at_ns - self.piece_ns
                if 0 < gap < self.pool.shortest_gap_ns:
                    self.pool.shortest_gap_ns = gap
                self.piece_ns = self.at_ns
            self.finished = self.finished or bool(choice.get("finish_reason"))
        usage = event.get("usage")
        if usage:
            count = usage.get("completion_tokens") if isinstance(usage, dict) else "?"
            if count is not None and (not isinstance(count, int) or count < 0):
                raise EndpointError(f"a usage that is not a count of tokens: {usage!r:.200}")
            self.usage = count
            details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            if cached is not None and (not isinstance(cached, int) or cached < 0):
                raise EndpointError(f"a usage whose cached_tokens is not a count: {usage!r:.200}")
            self.cached = cached

    def _end(self, whole: bool = True) -> None:
        """The body has ended (``whole``), or an error's is long enough to quote."""
        self.whole = whole
        if self.done.done():
            return
        if self.status != 200:
            raise EndpointError(f"HTTP {self.status} from {self.endpoint.path}: "
                                f"{self.error_body[:MAX_ERROR_BODY].decode('utf-8', 'replace').strip()}")
        if not self.finished:
            raise EndpointError(f"the stream ended before its finish_reason or data: [DONE] "
                                f"(after {len(self.pieces)} chunks)")
        self.done.set_result(Reply(tuple(self.pieces), self.usage, self.cached))
