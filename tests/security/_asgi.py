"""Calling the ASGI app directly, to see what it read: how many body chunks it pulled from the
client before answering (what an HTTP client cannot show)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    pulled: int  # body chunks the app asked for
    offered: int  # body chunks the client had

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    app: ASGIApp,
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: Iterable[bytes] = (),
    *,
    query: str = "",
) -> Answer:
    """One request to ``app``; ``chunks`` are the body as the client sends it (chunked, unless the
    headers declare a Content-Length)."""
    parts = list(chunks)
    pulled = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal pulled
        if pulled < len(parts):
            pulled += 1
            return {"type": "http.request", "body": parts[pulled - 1], "more_body": pulled < len(parts)}
        if pulled == 0 and not parts:
            pulled = -1  # an empty body is one empty message
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # the client waits: a request without more body
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8300),
    }

    async def run() -> None:
        await asyncio.wait_for(app(scope, receive, send), timeout=60)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(
        start["status"],
        {k.decode().lower(): v.decode() for k, v in start["headers"]},
        body,
        max(pulled, 0),
        len(parts),
    )
