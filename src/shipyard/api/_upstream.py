"""A lean HTTP/1.1 client for the model servers: pooled keep-alive connections, nothing else.

InvokeEndpoint sends every request through here, so it does only what that needs: POST with a
Content-Length body to a loopback server that answers with Content-Length, or in chunks when its
handler streams (InvokeEndpointWithResponseStream reads them as they come, :meth:`UpstreamPool.stream`;
InvokeEndpoint joins them), TCP_NODELAY, and one retry on a fresh connection when a pooled one
turns out closed before any of the answer arrived (the server may close idle connections).
General clients spend most of a sub-millisecond request on machinery this does not need.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import re
import socket
from collections.abc import AsyncIterator


class UpstreamError(Exception):
    """The model server could not be reached or sent something that is not an HTTP answer."""


class UpstreamStreamError(UpstreamError):
    """A streamed answer whose handler failed midway (the model server's message)."""


STREAM_ERROR = "x-shipyard-stream-error"  # the trailer a model server ends a failed stream with


@dataclasses.dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


MAX_ANSWER = 64 * 2**20  # an InvokeEndpoint answer (SageMaker's requests stop at 6 MB); a stream's chunk


class UpstreamPool:
    def __init__(
        self, *, max_idle_per_server: int = 64, timeout: float = 60.0, max_answer_bytes: int = MAX_ANSWER
    ) -> None:
        self._idle: dict[tuple[str, int], collections.deque[_Connection]] = collections.defaultdict(
            collections.deque
        )
        self._max_idle = max_idle_per_server
        self._timeout = timeout
        self._max_answer = max_answer_bytes

    async def post(
        self,
        host: str,
        port: int,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        max_bytes: int | None = None,
    ) -> UpstreamResponse:
        """The whole answer (a streamed one joined; one that failed midway answers 500 with the
        handler's message), at most ``max_bytes`` (the pool's limit by default): a model is
        untrusted code, and an answer is held in memory."""
        limit = max_bytes or self._max_answer
        request = _request(host, port, path, body, headers)
        idle = self._idle[(host, port)]
        try:
            async with asyncio.timeout(self._timeout):
                while idle:  # a pooled connection, if one is still open
                    connection = idle.pop()
                    try:
                        response, reusable = await self._exchange(connection, request, limit)
                    except _ClosedBeforeAnswer:
                        continue
                    self._release(idle, connection, reusable)
                    return response
                connection = await self._connect(host, port)
                try:
                    response, reusable = await self._exchange(connection, request, limit)
                except _ClosedBeforeAnswer:
                    raise UpstreamError(f"{host}:{port} closed the connection without answering") from None
                self._release(idle, connection, reusable)
                return response
        except TimeoutError:
            raise UpstreamError(f"{host}:{port} did not answer in {self._timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"{host}:{port}: {exc}") from None

    async def _connect(self, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def _exchange(
        self, connection: _Connection, request: bytes, limit: int
    ) -> tuple[UpstreamResponse, bool]:
        status, headers, reusable = await _head(connection, request)
        reader, writer = connection
        if _chunked(headers):
            parts, total = [], 0
            try:
                async for part in _read_chunks(reader, headers, max_chunk=limit):
                    total += len(part)
                    if total > limit:
                        raise UpstreamError(_too_large(limit))
                    parts.append(part)
            except UpstreamStreamError as exc:  # the handler failed midway
                writer.close()
                return UpstreamResponse(500, {"content-type": "text/plain"}, str(exc).encode()), False
            except BaseException:
                writer.close()
                raise
            return UpstreamResponse(status, headers, b"".join(parts)), reusable
        length = int(headers.get("content-length", "0"))
        if length > limit:
            writer.close()
            raise UpstreamError(_too_large(limit, length))
        try:
            body = await reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            raise UpstreamError("the model server's answer was cut off") from None
        return UpstreamResponse(status, headers, body), reusable

    @contextlib.asynccontextmanager
    async def stream(
        self, host: str, port: int, path: str, body: bytes, headers: dict[str, str]
    ) -> AsyncIterator[UpstreamStream]:
        """The answer's head, and its body as the model server sends it (one part when it
        answers with a Content-Length). The connection goes back to the pool only when the body
        was read to its end; each read has the pool's timeout, not the whole stream."""
        request = _request(host, port, path, body, headers)
        idle = self._idle[(host, port)]
        try:
            async with asyncio.timeout(self._timeout):
                connection = None
                while idle:
                    candidate = idle.pop()
                    try:
                        status, answer_headers, reusable = await _head(candidate, request)
                    except _ClosedBeforeAnswer:
                        continue
                    connection = candidate
                    break
                if connection is None:
                    connection = await self._connect(host, port)
                    try:
                        status, answer_headers, reusable = await _head(connection, request)
                    except _ClosedBeforeAnswer:
                        raise UpstreamError(
                            f"{host}:{port} closed the connection without answering"
                        ) from None
        except TimeoutError:
            raise UpstreamError(f"{host}:{port} did not answer in {self._timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"{host}:{port}: {exc}") from None
        answer = UpstreamStream(status, answer_headers, connection[0], self._timeout, self._max_answer)
        try:
            yield answer
        finally:
            if answer.finished:
                self._release(idle, connection, reusable)
            else:
                connection[1].close()

    def _release(self, idle: collections.deque[_Connection], connection: _Connection, reusable: bool) -> None:
        if reusable and len(idle) < self._max_idle:
            idle.append(connection)
        else:
            connection[1].close()

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop()[1].close()


class _ClosedBeforeAnswer(Exception):
    pass


class UpstreamStream:
    """A streamed answer (:meth:`UpstreamPool.stream`): its status and headers, then its parts."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        timeout: float,
        max_bytes: int = MAX_ANSWER,
    ):
        self.status = status
        self.headers = headers
        self._reader = reader
        self._timeout = timeout
        self._max = max_bytes  # of a part: a stream may go on, each part is held in memory
        self.finished = False  # the body was read to its end (the connection may be reused)

    async def parts(self) -> AsyncIterator[bytes]:
        """The body's parts as they arrive. Raises UpstreamStreamError when the model server's
        handler failed midway (its message), UpstreamError when the answer was cut off."""
        if _chunked(self.headers):
            async for part in _read_chunks(self._reader, self.headers, self._timeout, max_chunk=self._max):
                yield part
        else:
            length = int(self.headers.get("content-length", "0"))
            if length > self._max:
                raise UpstreamError(_too_large(self._max, length))
            try:
                async with asyncio.timeout(self._timeout):
                    body = await self._reader.readexactly(length) if length else b""
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                raise UpstreamError("the model server's answer was cut off") from None
            if body:
                yield body
        self.finished = True

    async def read(self) -> bytes:
        return b"".join([part async for part in self.parts()])


@functools.lru_cache(maxsize=1024)
def _request_line(host: str, port: int, path: str) -> bytes:
    """The request line and Host header, the same for every request to one model server."""
    return f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode("latin-1")


def _request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    return b"%sContent-Length: %d\r\n%s\r\n%s" % (
        _request_line(host, port, path),
        len(body),
        fields.encode("latin-1"),
        body,
    )


async def _head(connection: _Connection, request: bytes) -> tuple[int, dict[str, str], bool]:
    """Send ``request`` and read the answer's status line and headers."""
    reader, writer = connection
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        writer.close()
        if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
            raise UpstreamError("the model server's answer was cut off") from None
        raise _ClosedBeforeAnswer from None
    text = head.decode("latin-1")
    status_line = text[: text.index("\r\n")]
    try:
        status = int(status_line.split(" ", 2)[1])
    except (IndexError, ValueError):
        writer.close()
        raise UpstreamError(f"not an HTTP answer: {status_line[:80]!r}") from None
    headers = {name.strip().lower(): value for name, value in _FIELD.findall(text)}
    reusable = headers.get("connection", "").lower() != "close" and status_line.startswith("HTTP/1.1")
    return status, headers, reusable


# A header line of an answer's head (which ends with an empty line): its name and its value,
# without the whitespace around it.
_FIELD = re.compile(r"\r\n([^:\r\n]+):[ \t]*([^\r\n]*?)[ \t]*(?=\r\n)")


def _chunked(headers: dict[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _too_large(limit: int, length: int | None = None) -> str:
    size = f"of {length} bytes " if length is not None else ""
    return f"the model's answer {size}is over the {limit} bytes an answer may have here"


async def _read_chunks(
    reader: asyncio.StreamReader,
    headers: dict[str, str],
    timeout: float | None = None,
    *,
    max_chunk: int = 0,
) -> AsyncIterator[bytes]:
    """The chunks of a chunked body, then its trailer read (UpstreamStreamError with the model
    server's message when it ended the stream with :data:`STREAM_ERROR`)."""
    try:
        while True:
            async with asyncio.timeout(timeout):
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    break
                if max_chunk and size > max_chunk:
                    raise UpstreamError(_too_large(max_chunk, size))
                chunk = await reader.readexactly(size + 2)
            yield chunk[:-2]
        error = None
        while True:  # the trailer
            async with asyncio.timeout(timeout):
                line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("utf-8", "replace").partition(":")
            if name.strip().lower() == STREAM_ERROR:
                error = value.strip()
    except (
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ConnectionError,
        TimeoutError,
        ValueError,
    ):
        raise UpstreamError("the model server's answer was cut off") from None
    if error is not None:
        raise UpstreamStreamError(error)
