"""A lean HTTP/1.1 client for the model servers: pooled keep-alive connections, nothing else.

InvokeEndpoint sends every request through here, so it does only what that needs: POST with a
Content-Length body to a loopback server that answers with Content-Length (the model server always
does), TCP_NODELAY, and one retry on a fresh connection when a pooled one turns out closed before
any of the answer arrived (the server may close idle connections). General clients spend most of
a sub-millisecond request on machinery this does not need.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import socket


class UpstreamError(Exception):
    """The model server could not be reached or sent something that is not an HTTP answer."""


@dataclasses.dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class UpstreamPool:
    def __init__(self, *, max_idle_per_server: int = 64, timeout: float = 60.0) -> None:
        self._idle: dict[tuple[str, int], collections.deque[_Connection]] = collections.defaultdict(
            collections.deque
        )
        self._max_idle = max_idle_per_server
        self._timeout = timeout

    async def post(
        self, host: str, port: int, path: str, body: bytes, headers: dict[str, str]
    ) -> UpstreamResponse:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        idle = self._idle[(host, port)]
        try:
            async with asyncio.timeout(self._timeout):
                while idle:  # a pooled connection, if one is still open
                    connection = idle.pop()
                    try:
                        response, reusable = await self._exchange(connection, request)
                    except _ClosedBeforeAnswer:
                        continue
                    self._release(idle, connection, reusable)
                    return response
                connection = await self._connect(host, port)
                try:
                    response, reusable = await self._exchange(connection, request)
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

    async def _exchange(self, connection: _Connection, request: bytes) -> tuple[UpstreamResponse, bool]:
        reader, writer = connection
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            writer.close()
            if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise UpstreamError("the model server's answer was cut off") from None
            raise _ClosedBeforeAnswer from None
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            writer.close()
            raise UpstreamError(f"not an HTTP answer: {lines[0][:80]!r}") from None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        try:
            body = await reader.readexactly(length) if length else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            raise UpstreamError("the model server's answer was cut off") from None
        reusable = headers.get("connection", "").lower() != "close" and lines[0].startswith("HTTP/1.1")
        return UpstreamResponse(status, headers, body), reusable

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
