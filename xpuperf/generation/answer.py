"""One streamed answer of an OpenAI-compatible server, parsed as its bytes
arrive (``Answer``): the HTTP/1.1 status, headers and body framing, the
server-sent events, and OpenAI's events in them (a chunk's text, the usage). No
I/O: xpuperf.generation.openai_client's connections hand it what they read.
Every way an answer can be wrong is an EndpointError naming it, and no part of
an answer is kept past MAX_LINE: the bytes are a server's, not to be trusted.
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

MAX_ERROR_BODY = 2048  # bytes of an HTTP error's body quoted in the message
MAX_LINE = 1 << 20  # a header or SSE line longer than this is not a server's
# A server's 404: a URL without the API's base path, or a model it does not serve.
NOT_FOUND = (" (--llm-endpoint is the API's base, e.g. http://host:8000/v1, and --llm-model "
             "a name the server serves: its /v1/models lists them)")
_JSON = json.JSONDecoder().decode
# One chunk of a chunked body (its size, hex) that is one server-sent event of
# one data line: Answer.feed's fast path, a third of the parse's time a chunk
# (benchmarks/llm_client_overhead.py).
_ONE_EVENT = re.compile(rb"([0-9a-fA-F]{1,8})\r\ndata:([^\n]*)\n\n\r\n")


def decode_stdlib(data: bytes) -> Any:
    """An event's JSON by the standard library: where orjson is not installed."""
    return _JSON(data.decode())  # from str: json.loads(bytes) sniffs the encoding


try:  # extra `client`: the event's JSON from its bytes, in a third of json's time
    from orjson import loads as decode
except ImportError:
    decode = decode_stdlib


class Gaps(Protocol):
    """Where an answer leaves the shortest gap between two of its chunks (ns,
    their arrivals) when shorter: openai_client's Pool, whose C reader's tick
    follows it."""

    shortest_gap_ns: float


class EndpointError(RuntimeError):
    """The server failed one request; the message says how."""


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


class Answer:
    """One answer, parsed as its connection hands it bytes: the status and
    headers, the body's framing (chunked, a length, or until the connection
    closes), then server-sent events, each handed on at once. ``done`` holds
    the Reply (from ``data: [DONE]`` or the body's end); ``whole`` says the
    body has ended, ``keep_alive`` that the connection may carry another."""

    def __init__(self, api: str, path: str, on_piece: Callable[[str, int], None],
                 done: "asyncio.Future[Reply]", gaps: Gaps):
        self.api, self.path, self.on_piece, self.done, self.gaps = api, path, on_piece, done, gaps
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

    @property
    def holdable(self) -> bool:
        """At a chunk's start in a 200 chunked body, nothing of an event pending
        and not done: where the next chunk, if it is one event (a token's, a
        server's usual read), is that event alone, whoever reads it (``feed``'s
        fast path, the C reader's hold: ``replay``)."""
        return (self.status == 200 and self.framing == "chunked"
                and not (self.left or self.buffer or self.events or self.done.done()))

    def feed(self, data: memoryview | bytes, at_ns: int) -> None:
        """``data``, read at ``at_ns``: each chunk it completes is handed on with that time."""
        self.at_ns = at_ns
        self.received += len(data)
        try:
            # A server's usual read: one whole chunk of the body holding one whole
            # event (a token's), taken in one match; anything else (split reads,
            # several events, comments) goes through the framing below, as all did.
            if (self.holdable and (one := _ONE_EVENT.fullmatch(data))
                    and int(one[1], 16) == len(data) - one.end(1) - 4):  # less the two CRLFs
                self._event(one[2].strip())
                return
            self.buffer += data
            if self.status is None:
                self._head()
            if self.status is not None:
                self._body()
        except Exception as e:  # noqa: BLE001 - a server's bytes fail this answer, never the reads
            self._fail(e)

    def replay(self, events: list[bytes], times: list[int]) -> None:
        """Events the C reader held while ``holdable`` (each a read of one
        chunk: its data line, stripped) and their reads' times, in order: as
        ``feed`` would have handed them on."""
        self.received += sum(map(len, events))
        try:
            for data, self.at_ns in zip(events, times):
                if self.done.done():
                    return
                self._event(data)
        except Exception as e:  # noqa: BLE001 - as feed's
            self._fail(e)

    def _fail(self, e: Exception) -> None:
        """``e``, raised parsing the server's bytes, fails this answer."""
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
            if not isinstance(choice, dict):
                raise EndpointError(f"an event whose choices are not JSON objects: {data[:200]!r}")
            # Servers send a chunk a token, its text possibly empty (a partial
            # character, the end of sequence): each is an arrival, as vLLM's bench
            # counts them, but a chat's first chunk, the role's.
            if self.api == "chat":
                delta = choice.get("delta") or {}
                if not isinstance(delta, dict):
                    raise EndpointError(f"an event whose choices are not JSON objects: "
                                        f"{data[:200]!r}")
                piece = None if "role" in delta else delta.get("content") or ""
            else:
                piece = choice.get("text") or ""
            if piece is not None:
                if not isinstance(piece, str):
                    raise EndpointError(f"an event whose text is not a string: {data[:200]!r}")
                self.pieces.append(piece)
                self.on_piece(piece, self.at_ns)
                # The gap from the last chunk, for the C reader's tick; 0 where
                # both came in one read (the client late, or sent as one): no gap
                # measured. The first's, from 0, is longer than any.
                gap = self.at_ns - self.piece_ns
                if 0 < gap < self.gaps.shortest_gap_ns:
                    self.gaps.shortest_gap_ns = gap
                self.piece_ns = self.at_ns
            if not self.finished:
                self.finished = bool(choice.get("finish_reason"))
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
            raise EndpointError(f"HTTP {self.status} from {self.path}: "
                                f"{self.error_body[:MAX_ERROR_BODY].decode('utf-8', 'replace').strip()}"
                                + (NOT_FOUND if self.status == 404 else ""))
        if not self.finished:
            raise EndpointError(f"the stream ended before its finish_reason or data: [DONE] "
                                f"(after {len(self.pieces)} chunks)")
        self.done.set_result(Reply(tuple(self.pieces), self.usage, self.cached))
