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
that no read holds two (``tick_s``). A token's chunk costs no Python call as
it arrives: while an answer is at a chunk's start the reader holds each read
that is one whole event, with its time, and the answer parses them together
(Answer.replay) before its next read that is not, and once a window
(``GAP_WINDOW_S``). Elsewhere (TLS, no compiler) the loop
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
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from xpuperf.generation.answer import Answer, EndpointError, Reply

APIS = ("completions", "chat")
# A request's fields the client sets itself (Endpoint.body): --llm-extra-body may not.
OWNED_FIELDS = ("model", "prompt", "messages", "max_tokens", "temperature", "stream",
                "stream_options", "ignore_eos", "min_tokens")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: a bearer token's characters
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


try:
    from xpuperf.generation._reader import Reader as READER
except ImportError:  # not built (a checkout run without pip install, not Linux): the loop reads
    READER = None


def tick_s(shortest_gap_ns: float) -> float:
    """The C reader's tick where the shortest gap between two chunks of one
    stream is ``shortest_gap_ns``: half of it, at most TICK_S; 0 (a read as a
    socket has bytes) under a millisecond."""
    tick = min(TICK_S, shortest_gap_ns / 2e9)
    return tick if tick >= 0.001 else 0.0


@dataclass(frozen=True)
class Endpoint:
    """Where and what to ask: ``url`` is the API's base (http://host:8000/v1),
    ``model`` the served model's name, ``api`` "completions" or "chat",
    ``timeout_s`` each request's limit from connect to its last byte,
    ``ignore_eos``: ask for exactly ``max_tokens`` (vLLM's and SGLang's
    ``ignore_eos`` and ``min_tokens``; a server without them refuses the request),
    ``extra_body``: more fields of every request, a server's own (a chat
    template's ``enable_thinking``, a sampler's ``top_k``), ``api_key_env``: the
    environment variable whose value is sent as the bearer token (read when a
    request is made: the key itself is in no record, option or dataclass)."""

    url: str
    model: str
    api: str = "completions"
    timeout_s: float = 60.0
    ignore_eos: bool = False
    extra_body: Mapping[str, Any] = field(default_factory=dict, hash=False)  # a dict: unhashable
    api_key_env: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--llm-endpoint {self.url!r} is not an http(s) URL: give the API's "
                             f"base, e.g. http://localhost:8000/v1")
        if self.api not in APIS:
            raise ValueError(f"--llm-api {self.api!r}: one of {', '.join(APIS)}")
        if not self.timeout_s > 0:
            raise ValueError(f"--llm-request-timeout must be > 0 seconds, got {self.timeout_s}")
        owned = sorted(set(self.extra_body) & set(OWNED_FIELDS))
        if owned:
            raise ValueError(f"--llm-extra-body sets {', '.join(owned)}: the client sets "
                             f"{', '.join(OWNED_FIELDS)} itself (every request greedy, streamed "
                             f"with its usage; --llm-ignore-eos asks for ignore_eos): leave "
                             f"those out")
        self.authorization  # noqa: B018 - a missing or malformed key now, not at the first request

    @property
    def authorization(self) -> str:
        """The request's Authorization header line, "" without ``api_key_env``."""
        if self.api_key_env is None:
            return ""
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ValueError(f"--llm-api-key-env {self.api_key_env}: ${self.api_key_env} is not "
                             f"set or empty: export the server's API key in it")
        if not _TOKEN.fullmatch(key):  # a line break would end the header early
            raise ValueError(f"--llm-api-key-env {self.api_key_env}: ${self.api_key_env} holds "
                             f"characters an HTTP header cannot carry (spaces, line breaks, "
                             f"non-ASCII): give the key alone")
        return f"Authorization: Bearer {key}\r\n"

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
        body.update(self.extra_body)
        return body


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
                 on_piece: Callable[[str, int], None], on_sent: Callable[[int], None],
                 history: tuple[str, ...] = ()) -> Reply:
    """Ask ``endpoint`` for ``prompt``'s completion (after a conversation's
    ``history``, as Endpoint.body) over one of ``pool``'s connections;
    ``on_sent(at_ns)`` is called as the request is written, ``at_ns`` when it
    was written or, on a connection made for it, when the connect began (again
    where it is sent again), ``on_piece(text, at_ns)`` for each chunk of the answer: its text
    and when it arrived (time.perf_counter_ns both)."""
    try:
        async with asyncio.timeout(endpoint.timeout_s):
            return await _stream(endpoint, pool, prompt, max_tokens, on_piece, on_sent, history)
    except TimeoutError:
        raise EndpointError(f"no complete answer within {endpoint.timeout_s:g} s (the server "
                            f"stalled or is too slow: raise --llm-request-timeout)") from None
    except (ConnectionError, OSError) as e:
        raise EndpointError(f"connection to {endpoint.url} failed: "
                            f"{type(e).__name__}: {e}") from None


async def _stream(endpoint: Endpoint, pool: "Pool", prompt: str, max_tokens: int,
                  on_piece: Callable[[str, int], None], on_sent: Callable[[int], None],
                  history: tuple[str, ...]) -> Reply:
    parts = urlsplit(endpoint.url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    payload = json.dumps(endpoint.body(prompt, max_tokens, history)).encode()
    request = (f"POST {endpoint.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
               f"{endpoint.authorization}Content-Length: {len(payload)}\r\n\r\n".encode()
               + payload)
    loop = asyncio.get_running_loop()
    fresh = False
    while True:
        connection, reused = await pool.connection(host, port, parts.scheme == "https", fresh)
        response = Answer(endpoint.api, endpoint.path, on_piece, loop.create_future(), pool)
        # A connect made for the request is the server's to answer too (its
        # accept, a TLS handshake): the request went out as it began, as vLLM's
        # bench times a request from before its connection is taken.
        on_sent(time.perf_counter_ns() if reused else connection.connect_ns)
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
        # in this window (lowered by Answer) and the last: the reader's first
        # window (from register) reads as bytes arrive, none measured yet.
        self.shortest_gap_ns = math.inf
        self._shortest_before = 0.0
        self._window: asyncio.TimerHandle | None = None  # the next window's start

    async def connection(self, host: str, port: int, tls: bool, fresh: bool = False
                         ) -> tuple["_Connection", bool]:
        """An idle connection to the server (True), or a new one (False; always
        where ``fresh``), whose ``connect_ns`` says when its connect began."""
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
        connect_ns = time.perf_counter_ns()
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: _Connection(self, (host, port, tls)), host, port,
            ssl=self._tls if tls else None)
        connection.connect_ns = connect_ns
        connection.read_in_c()
        self.opened += 1
        return connection, False

    def close(self) -> None:
        """Closes every connection and the reader; call it on the pool's loop."""
        for connection in list(self._open):
            connection.close()
        if self.reader is not None:
            asyncio.get_running_loop().remove_reader(self.reader.fileno())
            self._window.cancel()
            self.reader.close()
            self.reader = None  # a tick still to come finds none to arm

    def register(self, connection: "_Connection", fd: int) -> tuple[int, int]:
        """The reader reads ``connection``'s socket from now on: its key, and the
        reader's own descriptor of it, which ``unregister`` closes."""
        if self.reader is None:
            self.reader = READER()
            self._window = asyncio.get_running_loop().call_later(GAP_WINDOW_S, self._next_window)
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
        return tick_s(min(self._shortest_before, self.shortest_gap_ns))

    def _next_window(self) -> None:
        """Each GAP_WINDOW_S: what the reader held is parsed, so that its gaps
        count in the window ending and a server's error event fails its request
        within a window (a stream's own reads take what it held at once), and the
        gaps' window moves on."""
        self._take_held()
        self._shortest_before, self.shortest_gap_ns = self.shortest_gap_ns, math.inf
        self._window = asyncio.get_running_loop().call_later(GAP_WINDOW_S, self._next_window)

    def take_reads(self) -> int:
        """Hands each connection of the reader's what it read of it; how many
        reads that was, those the reader held too."""
        if self.reader is None:
            return 0
        before = self.reader.reads
        for key, at_ns, data in self.reader.read():
            connection = self._reading.get(key)
            if connection is None:  # closed by an earlier read of this batch
                continue
            if data.__class__ is bytes and data:
                connection.received(data, at_ns)
            else:  # b"": the server closed it; an int: the read failed (errno)
                connection.ended(OSError(data, os.strerror(data)) if data else None)
        reads = self.reader.reads - before
        self.reads += reads
        return reads

    def _take_held(self) -> None:
        """Hands each connection what the reader held of it."""
        for key, events, times in self.reader.take_all():
            self._reading[key].replay(events, times)

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
        self.response: Answer | None = None  # the answer being read
        self.lost = False
        self.read = memoryview(bytearray(READ_SIZE))
        self.reader_key: int | None = None  # the pool's C reader reads it: its key, descriptor
        self.reader_fd = -1
        self._ended: Exception | None = None  # why the C reader's reads ended
        self.connect_ns = 0  # when the connect began (time.perf_counter_ns)

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

    def send(self, request: bytes, response: "Answer") -> None:
        self.response = response
        self.transport.write(request)

    def settle(self, response: "Answer") -> None:
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
        self._take_held()  # held before this read: parsed before it
        response = self.response
        if response is None:  # bytes no request asked for: not a connection to reuse
            self.close()
            return
        response.feed(data, at_ns)
        self._parsed(response)

    def replay(self, events: list[bytes], times: list[int]) -> None:
        """The C reader held these one-event chunks of the answer (Answer.replay)."""
        response = self.response
        response.replay(events, times)
        self._parsed(response)

    def _take_held(self) -> None:
        if self.reader_key is not None and (held := self.pool.reader.take(self.reader_fd)):
            self.replay(*held)

    def _parsed(self, response: Answer) -> None:
        """After ``response`` parsed more: the connection idles where its body
        ended, closes where it broke, else the C reader holds its next
        one-event chunks where the answer is at a chunk's start."""
        if response.whole:
            self.response = None
            if response.keep_alive:
                self.pool._idled(self)
            else:
                self.close()
        elif response.failed:
            self.close()
        elif self.reader_key is not None and response.holdable:
            self.pool.reader.hold(self.reader_fd)

    def ended(self, exc: Exception | None) -> None:
        """The C reader read the server's close (None) or a failed read: lost now,
        not at connection_lost, which the loop calls later (an idle connection
        is not to be taken meanwhile)."""
        self._take_held()  # an error event before the close is the answer's reason
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
