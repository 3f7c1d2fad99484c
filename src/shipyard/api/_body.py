"""Request bodies read within a limit, and replayed to the app that reads them next.

A :class:`Body` wraps one request's ASGI ``receive``. Whoever reads through it (the signature
check, a protocol handler, the native FastAPI app) reads at most ``limit`` bytes: a declared
``Content-Length`` above the limit is refused before a byte is read, and a chunked body is refused
as soon as it passes the limit, so nothing larger is ever held. What was read is kept and handed
again to the next reader, so checking a signature over the body does not leave the app waiting
for a body that was already consumed.

The limits are AWS's where AWS documents one, and otherwise bound the largest member a request can
carry (see each constant).
"""

from __future__ import annotations

from starlette.types import Message, Receive, Scope

from shipyard.errors import PayloadTooLarge

MiB = 1024 * 1024

# SageMaker's largest request member is a pipeline definition, 1,048,576 characters
# (CreatePipeline / UpdatePipeline); sent as a JSON string with every character escaped
# (``\uXXXX``, 6 bytes) it comes to 6 MiB, so 8 MiB holds any valid request.
SAGEMAKER_JSON_LIMIT = 8 * MiB
# CloudWatch Logs: a PutLogEvents batch is at most 1,048,576 bytes of messages plus 26 bytes per
# event; escaped as JSON, the same 6x bound.
LOGS_JSON_LIMIT = 8 * MiB
# CloudWatch metrics and Application Auto Scaling carry small documents (PutMetricData: 1 MB).
SMALL_JSON_LIMIT = 1 * MiB
# InvokeEndpoint: SageMaker's documented payload limit, 6 MB.
INVOCATION_LIMIT = 6 * MiB
# STS and IAM (query protocol): a form of a few parameters; the largest, a policy, is 10,240.
QUERY_LIMIT = 64 * 1024
# The native API takes small JSON documents (budgets, estimates, approvals); it has no uploads.
NATIVE_JSON_LIMIT = 4 * MiB


class Body:
    """One request's body, read through ``receive`` at most ``limit`` bytes, kept once read.

    ``what`` names the body in errors (e.g. ``"SageMaker request"``).
    """

    def __init__(self, scope: Scope, receive: Receive, limit: int, what: str) -> None:
        self._receive = receive
        self.limit = limit
        self.what = what
        self._declared = _content_length(scope)
        self._seen = 0
        self._kept: list[bytes] = []
        self._done = False

    @property
    def declared_length(self) -> int | None:
        """The request's ``Content-Length``, when it sent one."""
        return self._declared

    def check_declared(self) -> None:
        """Refuse at once a body whose declared length is over the limit (nothing is read)."""
        if self._declared is not None and self._declared > self.limit:
            raise PayloadTooLarge(self.what, self.limit, declared=self._declared)

    async def read(self) -> bytes:
        """The whole body (at most ``limit`` bytes); PayloadTooLarge as soon as it passes."""
        self.check_declared()
        while not self._done:
            await self._pull()
        return b"".join(self._kept)

    def replay(self) -> Receive:
        """A fresh ``receive`` for the next reader: what was read so far, then the rest."""
        index = 0

        async def receive() -> Message:
            nonlocal index
            if index < len(self._kept):
                chunk = self._kept[index]
                index += 1
                more = index < len(self._kept) or not self._done
                return {"type": "http.request", "body": chunk, "more_body": more}
            if self._done:
                return await self._receive()  # http.disconnect, when the client goes
            message = await self._pull()
            if message["type"] == "http.request":
                index += 1
            return message

        return receive

    async def _pull(self) -> Message:
        self.check_declared()
        message = await self._receive()
        if message["type"] != "http.request":
            self._done = True  # the client went away: there is no more body
            return message
        chunk: bytes = message.get("body", b"")
        self._seen += len(chunk)
        if self._seen > self.limit:
            raise PayloadTooLarge(self.what, self.limit)
        self._kept.append(chunk)
        if not message.get("more_body", False):
            self._done = True
        return {"type": "http.request", "body": chunk, "more_body": not self._done}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses these before the app sees them
    return None
