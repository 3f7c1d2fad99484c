"""The web console at ``/ui``: static pages whose script reads the native API (``/api/v1``) with the
same authentication as any other client, and changes state only through its explicit calls.

The page is ``static/index.html``; ``static/console.js`` renders every view in the browser from
the API's JSON, building the DOM with text nodes only (names, log lines and tags are user input:
nothing is parsed as HTML). Charts use uPlot, installed from the npm registry by
``scripts/build-ui`` into ``static/vendor`` (not committed). Every answer forbids framing and
inline scripts (Content-Security-Policy).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


class ConsoleApp:
    """``/ui`` (the page) and ``/ui/static/...`` (its script, styles and vendored libraries)."""

    def __init__(self) -> None:
        self._app = Starlette(
            routes=[
                Route("/ui", _index),
                Route("/ui/", _index),
                Mount("/ui/static", StaticFiles(directory=STATIC)),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, with_headers)
