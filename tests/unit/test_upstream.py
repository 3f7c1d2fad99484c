"""The pool that reaches model servers holds no more of an answer than it may: a model is untrusted
code, and an answer past the limit (declared, chunked or one huge chunk) is refused, never read
into memory. A loopback TCP server plays the hostile model server."""

from __future__ import annotations

import asyncio

import pytest

from shipyard.api._upstream import UpstreamError, UpstreamPool


def _answer(head: bytes, body: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + body


async def _ask(answer: bytes, *, limit: int, stream: bool = False) -> bytes:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool(max_answer_bytes=limit, timeout=10)
    try:
        if stream:
            async with pool.stream("127.0.0.1", port, "/invocations", b"{}", {}) as answer:
                return b"".join([part async for part in answer.parts()])
        return (await pool.post("127.0.0.1", port, "/invocations", b"{}", {})).body
    finally:
        await pool.close()
        server.close()


def test_answers_within_the_limit_are_read() -> None:
    assert asyncio.run(_ask(_answer(b"Content-Length: 5\r\n", b"hello"), limit=5)) == b"hello"
    chunked = _answer(b"Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert asyncio.run(_ask(chunked, limit=5)) == b"abcde"
    assert asyncio.run(_ask(chunked, limit=3, stream=True)) == b"abcde"  # a stream bounds each part


@pytest.mark.parametrize(
    ("answer", "stream", "message"),
    [
        (_answer(b"Content-Length: 99999999999\r\n"), False, "answer of 99999999999 bytes is over the 1024"),
        (_answer(b"Content-Length: 99999999999\r\n"), True, "answer of 99999999999 bytes is over the 1024"),
        (  # a declared chunk larger than the limit: refused before it is read
            _answer(b"Transfer-Encoding: chunked\r\n", b"ffffffff\r\n"),
            False,
            f"answer of {0xFFFFFFFF} bytes is over the 1024",
        ),
        (_answer(b"Transfer-Encoding: chunked\r\n", b"ffffffff\r\n"), True, "is over the 1024"),
        (  # small chunks adding up past the limit
            _answer(b"Transfer-Encoding: chunked\r\n", b"400\r\n" + b"x" * 1024 + b"\r\n1\r\ny\r\n0\r\n\r\n"),
            False,
            "answer is over the 1024 bytes",
        ),
    ],
)
def test_an_answer_past_the_limit_is_refused(answer: bytes, stream: bool, message: str) -> None:
    with pytest.raises(UpstreamError, match=message):
        asyncio.run(_ask(answer, limit=1024, stream=stream))
