"""One streamed answer's parse (xpuperf/generation/answer.py), on the bytes
alone: however its reads split them, by either JSON parser, and every way its
bytes can be wrong or endless failing the request with the reason. The client
that reads them from servers is test_llm_endpoint.py's."""
from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from xpuperf.generation.answer import Answer, EndpointError
from xpuperf.generation.openai_client import Pool


def answer_bytes(api: str, tokens: int) -> bytes:
    """An answer as the instant server writes it: headers, a chunk an event (a
    chat's opening with the role's), the usage, [DONE], the body's last chunk."""
    from xpuperf.generation.instant_server import _chunk, _event
    chat = api == "chat"
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}] * chat
    events += [{"choices": [{"index": 0, "finish_reason": "length" if i == tokens - 1 else None,
                             **({"delta": {"content": f" t{i}"}} if chat else {"text": f" t{i}"})}]}
               for i in range(tokens)]
    events.append({"choices": [], "usage": {"completion_tokens": tokens,
                                            "prompt_tokens_details": {"cached_tokens": 3}}})
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(map(_event, events))
            + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


def _parsed(api: str, reads: list[bytes | list[bytes]]):
    """What the client makes of an answer that arrives in ``reads``: its Reply
    (or error), the pieces handed on, and whether the body was seen whole. A
    list of events among the reads: ones the C reader held, replayed."""
    loop = asyncio.new_event_loop()
    try:
        pieces: list[str] = []
        response = Answer(api, "/v1/completions", lambda piece, at_ns: pieces.append(piece),
                          loop.create_future(), Pool())
        for read in reads:
            if isinstance(read, list):
                assert response.holdable
                response.replay(read, [0] * len(read))
            else:
                response.feed(memoryview(read), 0)
        done = response.done
        return (done.exception() or done.result()) if done.done() else None, pieces, response.whole
    finally:
        loop.close()


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_an_answer_parses_the_same_however_its_bytes_are_split_into_reads(api):
    whole = answer_bytes(api, 6)
    one_a_chunk = [whole[:whole.index(b"\r\n\r\n") + 4]]  # the server's usual reads
    rest = whole[len(one_a_chunk[0]):]
    while rest:
        size = rest.index(b"\r\n")
        end = size + 2 + int(rest[:size], 16) + 2
        one_a_chunk.append(rest[:end])
        rest = rest[end:]
    rng = np.random.default_rng(0)
    cuts = sorted(rng.choice(np.arange(1, len(whole)), 40, replace=False))
    # The C reader's hold: every token's chunk held, the usage's too, [DONE] read.
    held = [one_a_chunk[0], [c.split(b"data: ", 1)[1].strip() for c in one_a_chunk[1:-2]],
            *one_a_chunk[-2:]]
    assert held[-2] == b"e\r\ndata: [DONE]\n\n\r\n"
    splits = {"whole": [whole], "a chunk a read": one_a_chunk, "held": held,
              "a byte a read": [whole[i:i + 1] for i in range(len(whole))],
              "random": [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)])]}
    results = {name: _parsed(api, reads) for name, reads in splits.items()}
    reply, pieces, whole_seen = results["whole"]
    assert reply.pieces == tuple(f" t{i}" for i in range(6)) and pieces == list(reply.pieces)
    assert (reply.completion_tokens, reply.cached_tokens, whole_seen) == (6, 3, True)
    assert all(r == results["whole"] for r in results.values()), results


@pytest.fixture(params=["orjson", "stdlib"])
def decoder(request, monkeypatch):
    """The events' JSON parsed by orjson (extra `client`) and by the standard
    library (where it is not installed)."""
    from xpuperf.generation import answer
    if request.param == "orjson":
        pytest.importorskip("orjson", reason="orjson is not installed (extra `client`)")
    else:
        monkeypatch.setattr(answer, "decode", answer.decode_stdlib)
    return request.param


def test_either_json_parser_reads_the_same_answer(decoder):
    whole = answer_bytes("chat", 4)
    reply, pieces, whole_seen = _parsed("chat", [whole[:len(whole) // 3], whole[len(whole) // 3:]])
    assert reply.pieces == tuple(pieces) == tuple(f" t{i}" for i in range(4))
    assert (reply.completion_tokens, reply.cached_tokens, whole_seen) == (4, 3, True)


@pytest.mark.parametrize("api, event, message", [
    ("completions", b'{"choices": [', "not JSON"),
    ("completions", b'{"choices": [], "x": "\xff"}', "not JSON"),  # not UTF-8
    ("completions", b"[" * 5000 + b"]" * 5000, "not JSON"),  # past either parser's depth
    ("completions", b"[1, 2]", "not a JSON object"),
    ("completions", b'{"choices": [1]}', "choices are not JSON objects"),
    ("completions", b'{"choices": {"0": {}}}', "choices are not JSON objects"),
    ("completions", b'{"choices": [{"text": 5}]}', "text is not a string"),
    ("chat", b'{"choices": [1]}', "choices are not JSON objects"),
    ("chat", b'{"choices": [{"delta": [" t0"]}]}', "choices are not JSON objects"),
    ("chat", b'{"choices": [{"delta": {"content": 5}}]}', "text is not a string"),
])
@pytest.mark.parametrize("read", ["fed", "held"])
def test_a_bad_event_fails_its_request_by_either_json_parser(decoder, api, event, message, read):
    """Each fails its request with its reason (never an exception out of the
    parse, which would end the C reader's ticks for every stream), read with
    the headers or held by the C reader and replayed."""
    from xpuperf.generation.instant_server import _chunk
    head = answer_bytes(api, 1).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    if read == "fed":
        reply, _, _ = _parsed(api, [head + _chunk(b"data: " + event + b"\n\n")])
    else:
        loop = asyncio.new_event_loop()
        response = Answer(api, "/v1/completions", lambda piece, at_ns: None,
                          loop.create_future(), Pool())
        response.feed(head, 0)
        assert response.holdable
        response.replay([event], [0])
        reply = response.done.exception()
        loop.close()
        assert response.failed
    assert isinstance(reply, Exception) and message in str(reply), reply


def test_a_header_no_check_foresaw_fails_the_request_with_what_broke():
    reply, _, _ = _parsed("completions", [b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n"])
    assert isinstance(reply, EndpointError) and "cannot read: ValueError" in str(reply), reply


def test_a_chunk_longer_than_any_event_is_read_as_it_arrives_and_what_never_ends_is_refused():
    """The parse keeps no more than a read and a line: a 2.9 MiB chunk of 40,000
    events (a server or proxy that sends the answer at once) is handed on as
    its reads arrive; a size line, headers or trailers that never end fail the
    request past MAX_LINE (1 MiB), as an event that never ends does."""
    from xpuperf.generation.instant_server import _chunk
    from xpuperf.generation.answer import MAX_LINE
    from xpuperf.generation.openai_client import READ_SIZE
    head, body = answer_bytes("completions", 40_000).split(b"\r\n\r\n", 1)
    events = b"".join(re.findall(rb"\r\n(data: [^\n]*\n\n)\r\n", body))  # unchunked
    assert len(events) > 2 * MAX_LINE
    one_chunk = head + b"\r\n\r\n" + _chunk(events) + b"0\r\n\r\n"
    loop = asyncio.new_event_loop()
    try:
        response = Answer("completions", "/v1/completions", lambda piece, at_ns: None,
                          loop.create_future(), Pool())
        kept = 0
        for at in range(0, len(one_chunk), READ_SIZE):
            response.feed(one_chunk[at:at + READ_SIZE], 0)
            kept = max(kept, len(response.buffer) + len(response.events))
        reply = response.done.result()
    finally:
        loop.close()
    assert len(reply.pieces) == 40_000 and reply.completion_tokens == 40_000
    assert kept <= READ_SIZE + 200, kept
    endless = b"a" * (MAX_LINE + 1)
    for bytes_, what in [(head + b"\r\n\r\n" + endless, "a chunk's size line"),
                         (endless, "the response's headers"),
                         (head + b"\r\n\r\n0\r\n" + endless, "the body's trailers")]:
        error, _, _ = _parsed("completions", [bytes_])
        assert isinstance(error, EndpointError) and f"{what} longer than" in str(error), error


def test_a_chunk_whose_size_disagrees_with_its_bytes_is_refused():
    head, body = answer_bytes("completions", 3).split(b"\r\n\r\n", 1)
    size = body.index(b"\r\n")
    first = body[:size + 2 + int(body[:size], 16) + 2]  # the first chunk, in a read of its own
    wrong = b"%x" % (int(first[:size], 16) - 2) + first[size:]  # its event two bytes longer
    reply, _, _ = _parsed("completions", [head + b"\r\n\r\n", wrong])
    assert isinstance(reply, Exception) and "malformed chunk size" in str(reply)


@pytest.mark.parametrize("status, hint", [(404, True), (500, False)])
def test_an_http_error_fails_with_the_servers_words_and_a_404_says_what_to_check(status, hint):
    body = b'{"object":"error","message":"The model `llama` does not exist."}'
    error, pieces, whole = _parsed("completions", [
        b"HTTP/1.1 %d Nope\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (status, len(body), body)])
    assert isinstance(error, EndpointError) and whole and pieces == []
    assert str(error).startswith(f"HTTP {status} from /v1/completions: {body.decode()}")
    assert ("--llm-endpoint is the API's base, e.g. http://host:8000/v1, and --llm-model a name "
            "the server serves" in str(error)) is hint
